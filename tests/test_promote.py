"""The promotion gate: decisions, and champion/challenger aliases on a real MLflow registry (SQLite)."""

import pytest
from routing_fixtures import cluster_log, minilm_data, sqlite_tracking, with_cluster_texts

from fusion.core.promotion import CHALLENGER, CHAMPION, decide
from fusion.levels.query import make_router
from fusion.levels.query.promotion import promote
from fusion.levels.query.serving import log_router_model
from fusion.tracking import alias_version, registry_client, stage_run


def test_decide_promotes_on_the_interval_not_on_the_mean():
    import numpy as np

    ok, why, adv = decide(np.full(20, 0.6), None, 0.01, "reward")
    assert ok and "no champion yet" in why and adv is None
    better = np.r_[np.ones(10), np.zeros(10)]
    ok, why, adv = decide(better, np.zeros(20), 0.01, "reward")  # 10 of 20 queries better, none worse
    assert ok and "lower bound is above the margin 0.01: promoted" in why
    assert adv["mean"] == 0.5 and 0.2 < adv["lo"] < 0.5 < adv["hi"] and adv["n"] == 20
    # one query of 20 better: the mean (+0.05) beats the margin, the interval does not exclude it
    one = np.r_[1.0, np.zeros(19)]
    ok, why, adv = decide(one, np.zeros(20), 0.01, "reward")
    assert not ok and adv["mean"] == 0.05 and adv["lo"] <= 0.01 and "champion kept" in why
    ok, why, _ = decide(np.zeros(20), better, 0.0, "reward", "base")  # a loss: not promoted
    assert not ok and "not promoted" in why
    ok, _, _ = decide(better, better, 0.0, "reward")  # a tie never moves the champion
    assert not ok
    with pytest.raises(ValueError, match="different queries"):
        decide(np.ones(3), np.ones(4), 0.0, "reward")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A cluster log with real texts and MiniLM embeddings; knn (good) and best-single (weak) registered."""
    tmp = tmp_path_factory.mktemp("reg")
    log = with_cluster_texts(cluster_log(n_per_cluster=10)[0])
    enc, data = minilm_data(log, tmp / "cache")
    cfg = sqlite_tracking(tmp, "t", "gate")
    versions = {}
    with stage_run(cfg, "train"):
        for name in ("best-single", "knn", "task-best"):
            r = make_router(name, **({"k": 3} if name == "knn" else {})).fit(data.split("train"))
            r.meta["encoder"] = enc.ref
            versions[name] = log_router_model(r.save(tmp / name), cfg, log["query"].unique().tolist(), name=name)
    return cfg, data.split("test"), versions


@pytest.mark.slow
def test_champion_moves_only_past_the_margin(registry):
    cfg, test, v = registry
    client = registry_client(cfg)
    assert alias_version(client, "gate", CHAMPION) is None

    first = promote(client, "gate", v["best-single"], test)
    assert first.promoted and first.champion_before is None and "no champion yet" in first.reason
    assert alias_version(client, "gate", CHAMPION) == v["best-single"]
    assert first.challenger_score == pytest.approx(0.5)  # one cluster right, one wrong

    # knn routes both clusters right, but a margin larger than its gain keeps the champion
    held = promote(client, "gate", v["knn"], test, margin=0.6)
    assert not held.promoted and "champion kept" in held.reason
    assert held.challenger_score == pytest.approx(1.0) and held.champion_score == pytest.approx(0.5)
    assert held.advantage["mean"] == pytest.approx(0.5) and held.advantage["lo"] <= 0.6  # decided on the interval
    assert alias_version(client, "gate", CHAMPION) == v["best-single"]
    assert alias_version(client, "gate", CHALLENGER) == v["knn"]
    assert client.get_model_version("gate", v["knn"]).tags["promotion"] == held.reason

    moved = promote(client, "gate", v["knn"], test, margin=0.1)
    assert moved.promoted and moved.champion_before == v["best-single"] and moved.champion_after == v["knn"]
    assert moved.advantage["lo"] > 0.1 and "lower bound is above the margin 0.1" in moved.reason
    assert alias_version(client, "gate", CHAMPION) == v["knn"]
    assert moved.split_fingerprint == first.split_fingerprint and moved.n_queries == len(test)

    # a weaker challenger does not displace it; nor does the champion itself
    weak = promote(client, "gate", v["task-best"], test)
    assert not weak.promoted and alias_version(client, "gate", CHAMPION) == v["knn"]
    same = promote(client, "gate", v["knn"], test)
    assert not same.promoted and "already the champion" in same.reason


@pytest.mark.slow
def test_registered_model_reads_the_optional_task_column(tmp_path):
    """Task identity reaches a registered router through the pyfunc signature (task-best needs it)."""
    import pandas as pd
    from routing_fixtures import task_log

    from fusion.levels.query.serving import predict_registered

    log, _ = task_log(n_per_task=8)
    log["query"] = ("Question " + log["query_id"].astype(str)).astype("string")
    enc, data = minilm_data(log, tmp_path / "cache")
    cfg = sqlite_tracking(tmp_path, "t", "by-task")
    r = make_router("task-best").fit(data.split("train"))
    r.meta["encoder"] = enc.ref
    with stage_run(cfg, "train"):
        version = log_router_model(r.save(tmp_path / "tb"), cfg, ["a question"])
    got = predict_registered(f"models:/by-task/{version}", pd.DataFrame({"query": ["x", "y"], "task": ["a", "b"]}))
    assert list(got["candidate"]) == ["A:direct", "B:direct"]
    assert len(predict_registered(f"models:/by-task/{version}", pd.DataFrame({"query": ["x"]}))) == 1


@pytest.mark.slow
def test_mlflow_ui_server_shows_the_champion(registry, tmp_path):
    """The MLflow server (what `make ui` starts) serves the registered router with its aliases."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    cfg, test, v = registry
    promote(registry_client(cfg), "gate", v["knn"], test, margin=0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    proc = subprocess.Popen([mlflow_bin, "server", "--backend-store-uri", cfg.uri, "--host", "127.0.0.1", "--port",
                             str(port), "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(180):
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.5)
        assert "<html" in httpx.get(url, timeout=10).text.lower()  # the UI itself
        model = httpx.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": "gate"},
                          timeout=10).json()["registered_model"]
        aliases = {a["alias"]: a["version"] for a in model["aliases"]}
        assert aliases["champion"] == v["knn"]
        assert CHALLENGER in aliases
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_a_champion_that_cannot_be_loaded_is_replaced(registry, tmp_path):
    import shutil
    from pathlib import Path
    from urllib.parse import urlparse

    cfg, test, _ = registry
    cfg = cfg.model_copy(update={"registered_router": "gate2"})
    client = registry_client(cfg)
    from fusion.levels.query import load_router

    versions = []
    with stage_run(cfg, "train"):
        for name in ("best-single", "knn"):
            folder = Path(str(cfg.artifact_root)).parent / name  # saved by the registry fixture
            versions.append(log_router_model(folder, cfg, ["a question"], name=name))
            assert load_router(folder).name == name
    assert promote(client, "gate2", versions[0], test).promoted
    gone = Path(urlparse(client.get_model_version_download_uri("gate2", versions[0])).path)
    assert gone.is_dir()
    shutil.rmtree(gone)  # the champion's artifacts are lost
    d = promote(client, "gate2", versions[1], test, margin=10.0)  # no margin can hold a champion that is gone
    assert d.promoted and d.champion_score is None and "cannot be scored" in d.reason
    assert alias_version(client, "gate2", CHAMPION) == versions[1]
