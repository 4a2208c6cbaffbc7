"""Every deployable router survives the trip through MLflow: logged as a pyfunc model, registered, reloaded by
version, and routing real texts (MiniLM embeddings) exactly as the in-memory router does."""

import numpy as np
import pandas as pd
import pytest
from routing_fixtures import cluster_log, minilm_data, sqlite_tracking, with_cluster_texts
from test_router_encoder import tiny_bert  # noqa: F401  (fixture)

from fusion.levels.query import make_router
from fusion.levels.query.base import router_names
from fusion.levels.query.serving import log_router_model, predict_frame, predict_registered
from fusion.tracking import stage_run

pytestmark = pytest.mark.slow

FAST = {
    "mf": {"epochs": 30}, "graph": {"epochs": 30},
    "budget": {"base": "knn", "base_params": {"k": 3}, "target_cost": 0.004},
    "ensemble": {"members": ["knn", "cluster", "mlp"]},
    "encoder": {"epochs": 2, "batch_size": 8, "max_length": 16, "progress": False, "num_threads": 2},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rt")
    # words the tiny BERT's vocabulary knows, for the encoder router
    log = with_cluster_texts(cluster_log(n_per_cluster=20)[0], ("add {i} and {j}", "write a poem about the sea {i}"))
    enc, data = minilm_data(log, tmp / "cache")
    return tmp, sqlite_tracking(tmp, "rt", "rt"), enc, data


def test_the_list_is_complete():
    assert set(router_names(deployable_only=True)) == {"random", "best-single", "task-best", "knn", "mlp", "svm", "mf",
                                                       "graph", "encoder", "budget", "cluster", "ensemble"}


@pytest.mark.parametrize("name", sorted(set(router_names(deployable_only=True))))
def test_router_round_trips_through_mlflow(name, store, tiny_bert):  # noqa: F811
    import mlflow

    tmp, cfg, enc, data = store
    params = dict(FAST.get(name, {}))
    if name == "encoder":
        params["model"] = tiny_bert
    router = make_router(name, seed=1, **params).fit(data.split("train"))
    router.meta["encoder"] = enc.ref
    test = data.split("test")
    frame = pd.DataFrame({"query": list(test.texts), "task": list(test.tasks)})
    with stage_run(cfg, f"train-{name}"):
        version = log_router_model(router.save(tmp / name), cfg, list(test.texts))
    mv = mlflow.MlflowClient(cfg.uri).get_model_version("rt", version)
    assert mv.tags["router"] == name and mv.tags["candidates"] == "A:direct,B:direct"
    got = predict_registered(f"models:/rt/{version}", frame)
    want = predict_frame(router, enc, frame)
    assert list(got["candidate"]) == list(want["candidate"])
    assert list(got["route_path"]) == list(want["route_path"])
    np.testing.assert_allclose(got.filter(like="utility:").to_numpy(), want.filter(like="utility:").to_numpy(),
                               rtol=1e-5, atol=1e-6)
    # served without `task` (as most clients send it): the same path column through MLflow, never silent
    blind = frame[["query"]]
    got, want = predict_registered(f"models:/rt/{version}", blind), predict_frame(router, enc, blind)
    assert list(got["route_path"]) == list(want["route_path"])
    assert set(got["route_path"]) <= ({"inferred", "text-only"} if router.uses_tasks or name in ("budget", "ensemble") else
                                      {"prior"} if name == "task-best" else {"text-only"})
    np.testing.assert_allclose(got.filter(like="utility:").to_numpy(), want.filter(like="utility:").to_numpy(),
                               rtol=1e-5, atol=1e-6)
