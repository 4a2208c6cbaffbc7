"""The whole pipeline on a tiny profile: as a Prefect flow in the test harness, and as `dvc repro`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.profiles import REPO_ROOT, write_tiny_profile

pytestmark = pytest.mark.slow


def test_prefect_flow_runs_every_stage(tmp_path, tiny_llama):
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import fusion_pipeline

    params = write_tiny_profile(tmp_path, tiny_llama)
    with prefect_test_harness(server_startup_timeout=120):
        metrics = fusion_pipeline(params_path=str(params))
    assert set(metrics["overall"]) == {"random", "best_single", "router", "oracle"}
    assert metrics["n_queries"] == 4  # 2 tasks x round(0.34 * 6) test queries
    o = metrics["overall"]
    assert o["oracle"]["reward"] >= o["router"]["reward"] - 1e-9
    assert o["oracle"]["reward"] >= o["best_single"]["reward"] - 1e-9
    for f in ("data/routing_log.parquet", "data/embeddings.parquet", "models/router/router.json",
              "metrics/eval.json", "reports/eval.md", "reports/eval.png", "reports/validation.json"):
        assert (tmp_path / f).is_file(), f
    # every stage run is in MLflow with its parameters, metrics and artifacts; the router is registered
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = {r.data.tags["fusion.stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"queries", "collect", "validate", "embed", "train", "evaluate"}
    for stage, run in runs.items():
        assert run.info.status == "FINISHED", stage
        assert run.data.params, stage
        if stage != "train":
            assert run.data.metrics, stage
            assert client.list_artifacts(run.info.run_id), stage
    assert "overall.router.reward" in runs["evaluate"].data.metrics
    version = client.get_model_version("tiny-router", "1")
    assert version.run_id == runs["train"].info.run_id


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def test_dvc_repro_is_incremental(tmp_path, tiny_llama):
    work = tmp_path / "proj"
    work.mkdir()
    shutil.copy(REPO_ROOT / "dvc.yaml", work / "dvc.yaml")
    shutil.copytree(REPO_ROOT / "fusion", work / "fusion", ignore=shutil.ignore_patterns("__pycache__"))
    params = write_tiny_profile(work, tiny_llama)
    _run(["git", "init", "-q"], work)
    _run(["dvc", "init", "-q"], work)

    first = _run(["dvc", "repro"], work)
    for stage in ("queries", "collect", "validate", "embed", "train", "evaluate"):
        assert f"Running stage '{stage}'" in first
    metrics = json.loads((work / "metrics/eval.json").read_text())
    assert metrics["router"] == "knn"

    second = _run(["dvc", "repro"], work)
    assert "Running stage" not in second

    p = yaml.safe_load(params.read_text())
    p["router"]["params"]["k"] = 2
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    third = _run(["dvc", "repro"], work)
    ran = {s for s in ("queries", "collect", "validate", "embed", "train", "evaluate")
           if f"Running stage '{s}'" in third}
    assert ran == {"train", "evaluate"}
    assert json.loads((work / "models/router/router.json").read_text())["params"]["k"] == 2
