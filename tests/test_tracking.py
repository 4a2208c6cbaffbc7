"""MLflow on SQLite: stage runs and the registered router reload with the same predictions."""

import numpy as np
import pandas as pd
import pytest
from routing_fixtures import cluster_log as synthetic_log
from routing_fixtures import minilm_data, sqlite_tracking, with_cluster_texts

from fusion.config import TrackingConfig
from fusion.levels.query import make_router
from fusion.levels.query.serving import log_router_model, predict_frame
from fusion.tracking import stage_run


@pytest.mark.slow
def test_registered_router_reloads_and_predicts_the_same(tmp_path):
    import mlflow

    # real texts, real MiniLM embeddings
    log = with_cluster_texts(synthetic_log(n_per_cluster=10)[0])
    texts = dict(zip(log["query_id"], log["query"], strict=True))
    enc, data = minilm_data(log, tmp_path / "cache")
    router = make_router("knn", k=3).fit(data.split("train"))
    router.meta["encoder"] = enc.ref
    rdir = router.save(tmp_path / "router")

    cfg = sqlite_tracking(tmp_path, "t", "test-router")
    with stage_run(cfg, "train", {"router": {"name": "knn", "k": 3}}) as ml:
        version = log_router_model(rdir, cfg, list(texts.values())[:3])
        run_id = ml.active_run().info.run_id
    assert version == "1"
    client = mlflow.MlflowClient(cfg.uri)
    assert client.get_run(run_id).data.params["router.k"] == "3"
    assert client.get_model_version("test-router", "1").run_id == run_id

    frame = pd.DataFrame({"query": list(texts.values())})
    loaded = mlflow.pyfunc.load_model("models:/test-router/1")
    got = loaded.predict(frame)
    expected = predict_frame(router, enc, frame)
    assert list(got["candidate"]) == list(expected["candidate"])
    np.testing.assert_allclose(got.filter(like="utility:").to_numpy(), expected.filter(like="utility:").to_numpy(),
                               atol=1e-6)
    # the router really routes: each cluster goes to its good candidate
    want = ["A:direct" if q.startswith("t-0") else "B:direct" for q in texts]
    assert (got["candidate"].to_numpy() == np.array(want)).mean() >= 0.9


def test_disabled_tracking_is_a_no_op(tmp_path):
    cfg = TrackingConfig(uri=f"sqlite:///{tmp_path}/x.db", enabled=False)
    with stage_run(cfg, "x", {"a": 1}) as ml:
        assert ml is None
    assert not (tmp_path / "x.db").exists()
