"""The label-free ``cluster`` router and the stacked ``ensemble`` (beyond the family tests they share)."""

import numpy as np
import pytest
from routing_fixtures import separable_task_log

from fusion.levels.query import build_routing_data, make_router
from fusion.levels.query.base import RouterParamError
from fusion.levels.query.features import routed_value


@pytest.fixture(scope="module")
def data():
    log, emb = separable_task_log(n_per_task=60)
    d = build_routing_data(log, emb, 1.0, 0.0)
    return d.split("train"), d.split("test")


def test_cluster_chooses_k_on_validation_and_needs_no_label(data):
    train, test = data
    router = make_router("cluster", seed=0).fit(train)
    k = router.meta["selected"]["k"]
    assert k >= 6  # 3 tasks x 2 sides: fewer clusters cannot separate the right candidates
    U, paths = router.predict(test.X, None)
    assert set(paths) == {"text-only"}
    np.testing.assert_array_equal(U, router.predict(test.X, test.tasks)[0])  # labels change nothing
    assert routed_value(U, test.rewards_filled()) == pytest.approx(1.0)
    # the table is the per-cluster mean reward, shrunk towards the overall mean
    fixed = make_router("cluster", k=1, shrinkage=0.0).fit(train)
    np.testing.assert_allclose(fixed.predict_utility(test.X[:1])[0], train.rewards_filled().mean(0))


def test_ensemble_selects_members_on_validation(data):
    train, test = data
    router = make_router("ensemble", members=["cluster", "knn", "best-single"], seed=0).fit(train)
    chosen = router.meta["selected"]["members"]
    assert "best-single" not in chosen  # it never improves the validation value
    assert sum(router.state["weights"]) == pytest.approx(1.0)
    assert len(router.members) == len(chosen)
    U, paths = router.predict(test.X, None)
    assert routed_value(U, test.rewards_filled()) == pytest.approx(1.0)
    assert set(paths) <= {"inferred", "text-only"} if "knn" in chosen else set(paths) == {"text-only"}


def test_ensemble_parameters_are_checked_before_training():
    with pytest.raises(RouterParamError, match="cannot be members: ensemble"):
        make_router("ensemble", members=["knn", "ensemble"])
    with pytest.raises(RouterParamError, match="'svm' is not a member"):
        make_router("ensemble", members=["knn"], member_params={"svm": {}})
    with pytest.raises(RouterParamError, match="member 'knn'"):
        make_router("ensemble", members=["knn"], member_params={"knn": {"kk": 3}})
