"""The torch routers' one training loop and its one early-stopping rule: ``patience`` evaluations without
improvement are tolerated and the next one stops (0: the first; None: never), and the best evaluation is kept."""

from __future__ import annotations

import pytest
from routing_fixtures import cluster_log

from fusion.levels.query import build_routing_data, make_router
from fusion.levels.query.torch_fit import EarlyStopping, fit_loop


def _run(scores: list[float], patience, epochs: int = 10, batches_per_epoch: int = 1, eval_every=None):
    """fit_loop with scripted validation scores (the first is the untrained model); returns the stopper, the
    steps taken and the restored state."""
    it = iter(scores)
    state = {"steps": 0, "restored": None}

    def step(_batch) -> float:
        state["steps"] += 1
        return 0.0

    stopper = fit_loop(epochs=epochs, batches=lambda: list(range(batches_per_epoch)), step=step,
                       set_training=lambda on: None, evaluate=lambda: (next(it), 0.0),
                       snapshot=lambda: state["steps"], restore=lambda s: state.update(restored=s),
                       patience=patience, eval_every=eval_every)
    return stopper, state["steps"], state["restored"]


def test_patience_zero_stops_at_the_first_evaluation_that_does_not_improve():
    stopper, steps, restored = _run([0.5, 0.6, 0.55, 0.9, 0.9], patience=0)
    assert steps == 2 and len(stopper.history) == 3  # start, 0.6 (better), 0.55 (not): stop
    assert stopper.best[0] == 0.6 and stopper.best_epoch == 1 and restored == 1


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_patience_n_tolerates_n_evaluations_without_improvement(patience):
    scores = [0.5, 0.6] + [0.4] * patience + [0.3, 0.9]
    stopper, steps, restored = _run(scores, patience=patience)
    assert steps == 1 + patience + 1  # the (patience + 1)-th evaluation without improvement stops
    assert stopper.best[0] == 0.6 and restored == 1


def test_an_improvement_resets_the_count_and_none_never_stops():
    stopper, steps, restored = _run([0.5, 0.4, 0.6, 0.4, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1], patience=1)
    assert stopper.best[0] == 0.7 and steps == 6 and restored == 4
    stopper, steps, restored = _run([0.5] + [0.1] * 10, patience=None)
    assert steps == 10 and stopper.best_epoch == 0 and restored == 0  # ran every epoch, kept the untrained model


def test_evaluation_every_k_batches_and_at_each_epoch_end():
    stopper, steps, _ = _run([0.1 * i for i in range(1, 20)], patience=None, epochs=2, batches_per_epoch=5,
                             eval_every=2)
    assert [h["step"] for h in stopper.history] == [0, 2, 4, 5, 7, 9, 10]
    assert stopper.history[3]["epoch"] == 1.0 and stopper.best_step == 10


def test_negative_patience_is_refused():
    with pytest.raises(ValueError, match="patience"):
        EarlyStopping(-1)


@pytest.mark.parametrize("name", ["mf", "graph"])
@pytest.mark.parametrize("patience", [0, 4])
def test_torch_routers_stop_by_the_rule(name, patience):
    """mf and graph train in the same loop: each member stops ``patience + 1`` epochs after its best one."""
    log, emb = cluster_log(n_per_cluster=40)
    data = build_routing_data(log, emb, 1.0, 0.0)
    r = make_router(name, epochs=60, patience=patience, folds=2, refit=False, num_threads=1).fit(data.split("train"))
    sel = r.meta["selected"]
    for best, ran in zip(sel["epochs"], sel["epochs_run"], strict=True):
        assert ran == min(60, best + patience + 1), sel
