"""Routing without task labels: the task inferred from the query, the out-of-distribution fallback to the
router's text-only part, the path each query took, and training with no labels at all."""

import numpy as np
import pandas as pd
import pytest
from routing_fixtures import separable_task_log

from fusion.levels.query import load_router, make_router
from fusion.levels.query.data import build_routing_data
from fusion.levels.query.task_inference import TaskModel

FAST = {"mf": {"epochs": 30}, "graph": {"epochs": 30}}


@pytest.fixture(scope="module")
def data():
    log, emb = separable_task_log()
    d = build_routing_data(log, emb, 1.0, 0.0)
    return d.split("train"), d.split("test")


def test_task_model_is_calibrated_and_flags_far_queries(data):
    train, test = data
    tm = TaskModel.fit(train.X, train.tasks, seed=0, ood_quantile=0.02)
    P = tm.posterior(test.X)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-5)
    assert (np.asarray(tm.vocab)[P.argmax(1)] == test.tasks).mean() == 1.0
    assert tm.holdout_accuracy == 1.0 and tm.temperature > 0
    assert tm.is_ood(test.X).mean() <= 0.1  # the test queries are near the known tasks
    far = np.zeros((3, train.X.shape[1]), dtype=np.float32)
    far[:, 8] = 1.0  # an axis no training task uses
    assert tm.is_ood(far).all()
    again = TaskModel.from_dict(tm.to_dict())
    np.testing.assert_array_equal(again.posterior(test.X), P)


@pytest.mark.parametrize("name", ["knn", "mlp", "svm", "mf", "graph"])
def test_served_without_task_matches_the_router_given_it(name, data, tmp_path):
    train, test = data
    router = make_router(name, **FAST.get(name, {})).fit(train)
    U_task, p_task = router.predict(test.X, test.tasks)
    U_blind, p_blind = router.predict(test.X, None)
    assert set(p_task) == {"task"} and set(p_blind) <= {"inferred", "text-only"}
    assert (p_blind == "inferred").mean() >= 0.9
    np.testing.assert_array_equal(U_task.argmax(1), U_blind.argmax(1))  # the same decisions, task or not
    rows = np.arange(len(test))
    assert test.perf[rows, U_blind.argmax(1)].mean() == test.perf[rows, U_task.argmax(1)].mean() == 1.0
    # an unknown label is no label: inferred too
    _, p_unknown = router.predict(test.X, np.array(["never-seen"] * len(test)))
    np.testing.assert_array_equal(p_unknown, p_blind)
    # a query from a task never seen takes the text-only part, never the overall prior
    far = np.zeros((2, train.X.shape[1]), dtype=np.float32)
    far[:, 8], far[:, -1] = 1.0, 0.5
    U_far, p_far = router.predict(far, None)
    assert list(p_far) == ["text-only", "text-only"]
    np.testing.assert_allclose(U_far, router._text_only_utility(far, None))
    # all of it survives saving and loading
    again = load_router(router.save(tmp_path / name))
    U2, p2 = again.predict(np.vstack([test.X, far]), None)
    np.testing.assert_allclose(U2, np.vstack([U_blind, U_far]), rtol=1e-6, atol=1e-9)
    assert list(p2) == [*p_blind, *p_far]


def test_text_only_part_is_a_router_trained_without_labels(data):
    train, test = data
    router = make_router("mlp", residual=False, alpha=0.01).fit(train)
    twin = router.text_only
    assert twin is not None and twin.hp.task_labels is False and twin.task_vocab == ["(no task)"]
    blind = make_router("mlp", residual=False, alpha=0.01, task_labels=False).fit(train)
    np.testing.assert_allclose(twin.predict_utility(test.X), blind.predict_utility(test.X))


def test_training_without_labels(data):
    train, test = data
    router = make_router("knn", task_labels=False).fit(train)
    assert router.task_model is None and router.text_only is None and router.task_vocab == ["(no task)"]
    U, paths = router.predict(test.X, test.tasks)
    assert set(paths) == {"text-only"}
    np.testing.assert_array_equal(U, router.predict(test.X, None)[0])  # labels are ignored


def test_the_baseline_that_needs_labels_says_so(data):
    train, test = data
    tb = make_router("task-best").fit(train)
    assert tb.needs_labels
    assert set(tb.predict(test.X, test.tasks)[1]) == {"task"}
    assert set(tb.predict(test.X, None)[1]) == {"prior"}


def test_predict_frame_has_the_path_column(data):
    from fusion.levels.query.serving import predict_frame

    train, test = data

    class Lookup:  # the test queries' own embeddings, by text
        def __init__(self) -> None:
            self.by_text = dict(zip(test.texts, test.X, strict=True))

        def encode(self, texts):
            return np.stack([self.by_text[t] for t in texts])

    router = make_router("knn").fit(train)
    router.meta["text_prefixes"] = []
    router.task_model.threshold = -np.inf  # no query is flagged as far from the known tasks here
    frame = pd.DataFrame({"query": list(test.texts[:4]), "task": [test.tasks[0], None, "", "never-seen"]})
    out = predict_frame(router, Lookup(), frame)
    assert list(out["route_path"]) == ["task", "inferred", "inferred", "inferred"]
    assert list(out.columns[:2]) == ["candidate", "route_path"]


def test_evaluation_reports_the_routers_served_without_task(data):
    from fusion.levels.query.evaluation import evaluate_routers
    from fusion.levels.query.report import evaluation_markdown

    train, test = data
    routers = {"knn": make_router("knn").fit(train), "task-best": make_router("task-best").fit(train)}
    m = evaluate_routers(routers, train, test, task_blind=True)
    blind = m["task_blind"]
    assert blind["knn"]["performance"] == pytest.approx(m["overall"]["knn"]["performance"])
    assert blind["knn"]["route_paths"].get("inferred", 0) >= 0.9
    assert blind["task-best"]["route_paths"] == {"prior": 1.0}  # the lookup table needs the label
    assert blind["task-best"]["performance"] == m["overall"]["best-single"]["performance"]  # the overall prior
    assert "Served without the queries' task" in evaluation_markdown(m)
    assert "task_blind" not in evaluate_routers(routers, train, test)
