import numpy as np
import pandas as pd
import pytest
from routing_fixtures import cluster_log as synthetic_log

from fusion.levels.query import build_routing_data, load_router, make_router
from fusion.levels.query.evaluation import evaluate_router
from fusion.levels.query.rewards import TaskNormaliser, reward


def test_task_normaliser_uses_train_ranges():
    tasks = np.array(["a", "a", "b", "b"])
    perf = np.array([[0.0, 1.0], [0.5, 0.5], [0.2, 0.4], [0.2, 0.2]])
    cost = np.array([[1.0, 3.0], [2.0, 2.0], [10.0, 10.0], [10.0, 10.0]])
    n = TaskNormaliser.fit(tasks, perf, cost)
    assert n.perf["a"] == (0.0, 1.0) and n.cost["b"] == (10.0, 10.0)
    p, c = n.transform(tasks, perf, cost)
    np.testing.assert_allclose(p[0], [0.0, 1.0])
    np.testing.assert_allclose(c[0], [0.0, 1.0])
    np.testing.assert_allclose(c[2:], 0.0)  # constant cost within a task carries no signal
    np.testing.assert_allclose(p[2], [0.0, 1.0])
    np.testing.assert_allclose(reward(p, c, 0.5, 0.5)[0], [0.0, 0.0])
    # out-of-range test values are clipped into [0, 1]
    p2, _ = n.transform(np.array(["a"]), np.array([[2.0, -1.0]]), np.array([[1.0, 1.0]]))
    np.testing.assert_allclose(p2, [[1.0, 0.0]])
    assert TaskNormaliser.from_dict(n.to_dict()).perf == n.perf
    # a task whose train performance never varied keeps raw performance on test (nothing to rescale by)
    flat = TaskNormaliser.fit(np.array(["a"]), np.array([[0.0, 0.0]]), np.array([[1.0, 2.0]]))
    p3, _ = flat.transform(np.array(["a"]), np.array([[1.0, 0.0]]), np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(p3, [[1.0, 0.0]])


def test_knn_router_learns_clusters_and_beats_best_single(tmp_path):
    log, emb = synthetic_log()
    data = build_routing_data(log, emb, 1.0, 0.0)
    train, test = data.split("train"), data.split("test")
    router = make_router("knn", k=3).fit(train)
    u = router.predict_utility(test.X)
    assert u.shape == (len(test), 2)
    m = evaluate_router(router, train, test)
    assert m["overall"]["router"]["performance"] == pytest.approx(1.0)
    assert m["overall"]["oracle"]["performance"] == pytest.approx(1.0)
    assert m["overall"]["best-single"]["performance"] == pytest.approx(0.5)
    assert m["overall"]["random"]["performance"] == pytest.approx(0.5)
    assert m["gap_recovered"]["router"] == pytest.approx(1.0)
    # save/load round trip gives the same utilities
    reloaded = load_router(router.save(tmp_path / "r"))
    np.testing.assert_allclose(reloaded.predict_utility(test.X), u)
    assert reloaded.candidates == ["A:direct", "B:direct"]


def test_cost_first_prefers_cheap_candidate():
    log, emb = synthetic_log()
    data = build_routing_data(log, emb, 0.2, 0.8)
    router = make_router("knn", k=3).fit(data.split("train"))
    m = evaluate_router(router, data.split("train"), data.split("test"))
    assert m["routing_distribution"]["router"]["A:direct"] == pytest.approx(1.0)
    assert m["overall"]["router"]["cost"] == pytest.approx(0.001)


def test_error_rows_count_as_worst_and_missing_embedding_is_an_error():
    log, emb = synthetic_log()
    log.loc[0, "performance"] = pd.NA
    log.loc[0, "error"] = "timeout"
    data = build_routing_data(log, emb, 1.0, 0.0)
    assert np.isnan(data.perf).sum() == 1
    router = make_router("knn", k=3).fit(data.split("train"))
    assert np.isfinite(router.predict_utility(data.X)).all()
    with pytest.raises(KeyError, match="no embedding"):
        build_routing_data(log, emb.iloc[1:], 1.0, 0.0)


def test_unknown_router_lists_known():
    with pytest.raises(KeyError, match="knn"):
        make_router("nope")
