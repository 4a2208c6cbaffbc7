"""The torch routers ``mf`` (matrix factorisation) and ``graph`` (GraphRouter) on small synthetic logs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from routing_fixtures import cluster_log, task_log

from fusion.levels.query import build_routing_data, load_router, make_router
from fusion.levels.query.evaluation import evaluate_router
from fusion.levels.query.torch_fit import fold_splits

# small and single-threaded: every fit here takes well under a few seconds
FAST = {
    "mf": {"epochs": 40, "patience": 10, "num_threads": 1},
    "graph": {"epochs": 25, "patience": 8, "hidden": 16, "num_threads": 1},
}
ROUTERS = sorted(FAST)


def _cluster_data():
    log, emb = cluster_log()
    data = build_routing_data(log, emb, 1.0, 0.0)
    return data.split("train"), data.split("test")


@pytest.mark.parametrize("name", ROUTERS)
def test_routes_clusters_beats_best_single(name):
    train, test = _cluster_data()
    router = make_router(name, **FAST[name]).fit(train)
    u = router.predict_utility(test.X, test.tasks)
    assert u.shape == (len(test), 2) and np.isfinite(u).all()
    assert router.route(test.X, test.tasks).shape == (len(test),)
    m = evaluate_router(router, train, test)
    assert m["overall"]["best-single"]["performance"] == pytest.approx(0.5)
    assert m["overall"]["router"]["performance"] == pytest.approx(1.0)
    assert router.meta["selected"]["epoch"] >= 1  # the embedding carries the signal: training beat the prior


@pytest.mark.parametrize("name", ROUTERS)
def test_same_seed_same_utilities_and_save_load(name, tmp_path):
    train, test = _cluster_data()
    a = make_router(name, seed=3, **FAST[name]).fit(train)
    b = make_router(name, seed=3, **FAST[name]).fit(train)
    ua = a.predict_utility(test.X, test.tasks)
    np.testing.assert_array_equal(ua, b.predict_utility(test.X, test.tasks))
    c = make_router(name, seed=4, **FAST[name]).fit(train)
    assert not np.array_equal(ua, c.predict_utility(test.X, test.tasks))
    reloaded = load_router(a.save(tmp_path / name))
    assert type(reloaded) is type(a) and reloaded.candidates == ["A:direct", "B:direct"]
    np.testing.assert_allclose(reloaded.predict_utility(test.X, test.tasks), ua, rtol=0, atol=1e-12)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("name", ROUTERS)
def test_uses_task_and_survives_unseen_task(name, residual):
    log, emb = task_log(n_per_task=24)
    data = build_routing_data(log, emb, 1.0, 0.0)
    train, test = data.split("train"), data.split("test")
    params = {**FAST[name], "residual": residual, "lr": 1e-2}
    router = make_router(name, **params).fit(train)
    m = evaluate_router(router, train, test)
    assert m["overall"]["best-single"]["performance"] == pytest.approx(0.5)
    assert m["overall"]["router"]["performance"] == pytest.approx(1.0)
    for tasks in (np.array(["never-seen"] * len(test)), None):
        u = router.predict_utility(test.X, tasks)
        assert u.shape == (len(test), 2) and np.isfinite(u).all()


@pytest.mark.parametrize("name", ROUTERS)
def test_refit_and_given_validation_split(name):
    train, test = _cluster_data()
    fit, val = train.validation_split(0.25, 0)
    router = make_router(name, **FAST[name]).fit(fit, val)  # an explicit validation split is used as is
    assert router.meta["n_train"] == len(fit)
    assert evaluate_router(router, fit, test)["overall"]["router"]["performance"] == pytest.approx(1.0)
    refit = make_router(name, refit=True, folds=1, **FAST[name]).fit(train)
    assert evaluate_router(refit, train, test)["overall"]["router"]["performance"] == pytest.approx(1.0)
    assert len(refit.state["members"]) == 1
    ensemble = make_router(name, refit=False, folds=3, **FAST[name]).fit(train)
    assert len(ensemble.state["members"]) == 3 and len(ensemble.meta["selected"]["epochs"]) == 3
    assert evaluate_router(ensemble, train, test)["overall"]["router"]["performance"] == pytest.approx(1.0)


def test_fold_splits_are_disjoint_and_stratified():
    train, _ = _cluster_data()
    one = train.subset(np.arange(len(train)) < 1)
    data = train.subset(np.ones(len(train), dtype=bool))
    data.tasks = np.where(np.arange(len(data)) < 3, "small", data.tasks).astype(object)
    data.tasks[3] = "single"
    splits = fold_splits(data, 4, seed=0)
    assert len(splits) == 4
    seen = np.concatenate([val.query_ids for _, val in splits])
    assert len(seen) == len(set(seen))  # every query validates at most once
    assert "single" not in set(np.concatenate([val.tasks for _, val in splits]))
    assert sum((val.tasks == "small").sum() for _, val in splits) == 2  # one small-task query always trains
    for fit, val in splits:
        assert not set(fit.query_ids) & set(val.query_ids) and len(fit) + len(val) == len(data)
    with pytest.raises(ValueError):
        fold_splits(one, 3, seed=0)


def test_bad_input_is_refused():
    train, test = _cluster_data()
    router = make_router("mf", **FAST["mf"]).fit(train)
    with pytest.raises(ValueError, match="embeddings of shape"):
        router.predict_utility(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="loss"):
        make_router("mf", loss="hinge").fit(train)
    with pytest.raises(ValueError, match="mask_fraction"):
        make_router("graph", mask_fraction=1.5).fit(train)


def test_import_does_not_load_torch():
    code = ("import sys, fusion.levels.query.mf, fusion.levels.query.graph, fusion.levels.query.torch_fit; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _torch_utilities(router, X, tasks):
    """The members' torch modules run directly (what prediction computed before it moved to numpy)."""
    import torch

    from fusion.levels.query.features import TaskPrior, task_index

    tt = torch.from_numpy(task_index(tasks, router.task_vocab, len(X)))
    total = np.zeros((len(X), len(router.candidates)))
    for member, module in zip(router.state["members"], router.modules(), strict=True):
        xt = torch.from_numpy((np.asarray(X, dtype=np.float32) - member["mu"]) / member["sd"])
        with torch.no_grad():
            if router.name == "mf":
                u = module(xt, tt)
            else:
                u = module.predict(xt, tt, torch.from_numpy(member["task_state"]),
                                   torch.from_numpy(member["cand_state"]))
        total += u.numpy().astype(np.float64)
        if member["prior"] is not None:
            total += TaskPrior.from_dict(member["prior"])(tasks, len(X))
    return total / len(router.state["members"])


@pytest.mark.parametrize("name", ROUTERS)
@pytest.mark.parametrize("variant", [{}, {"residual": False, "folds": 2}])
def test_numpy_prediction_matches_the_torch_modules(name, variant):
    log, emb = task_log()
    data = build_routing_data(log, emb, 1.0, 0.0)
    train, test = data.split("train"), data.split("test")
    params = {**FAST[name], "epochs": 5, **variant}
    if name == "mf":
        params["task_embedding"] = not variant
    router = make_router(name, **params).fit(train)
    tasks = test.tasks.copy()
    tasks[0] = "zzz"
    for t in (tasks, None):
        np.testing.assert_allclose(router._utility(test.X, t), _torch_utilities(router, test.X, t),
                                   rtol=1e-5, atol=1e-5)
