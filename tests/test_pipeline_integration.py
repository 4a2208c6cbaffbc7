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

from tests.profiles import REPO_ROOT, write_oracle_log, write_tiny_profile

pytestmark = pytest.mark.slow


def test_prefect_flow_runs_every_stage(tmp_path, tiny_llama):
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import fusion_pipeline

    params = write_tiny_profile(tmp_path, tiny_llama)
    write_oracle_log(tmp_path, params)  # an imported log with correct answers: what the levels learn from
    with prefect_test_harness(server_startup_timeout=120):
        result = fusion_pipeline(params_path=str(params))
    metrics, decision = result["evaluate"], result["promote"]
    assert metrics["methods"] == ["random", "best-single", "task-best", "knn", "oracle"]
    assert metrics["routers"] == ["knn", "best-single"]
    assert metrics["n_queries"] == 4  # 2 tasks x round(0.34 * 6) test queries
    o = metrics["overall"]
    for m in metrics["methods"]:
        assert o["oracle"]["reward"] >= o[m]["reward"] - 1e-9, m
    for f in ("data/collected.parquet", "data/routing_log.parquet", "data/judge_verdicts.parquet",
              "reports/judge.json", "data/ingested.parquet", "data/quarantine.parquet",
              "reports/data_docs/index.html", "data/embeddings.parquet", "models/routers/knn/router.json",
              "models/routers/best-single/router.json", "models/routers/manifest.json", "metrics/eval.json",
              "reports/eval.md", "reports/eval.png", "reports/validation.json", "reports/promotion.json",
              "data/templates/bank.parquet", "reports/templates.json", "metrics/thought_eval.json",
              "reports/thought_eval.png", "data/sft/distilled.jsonl", "data/sft/label-only.jsonl",
              "models/distilled/manifest.json", "models/distilled/distilled/adapter/adapter_config.json",
              "metrics/distill_eval.json", "reports/distill_eval.png", "reports/distill_promotion.json",
              "reports/heldout/query.parquet", "reports/heldout/thought.parquet", "reports/heldout/model.parquet",
              "reports/heldout/token.parquet"):
        assert (tmp_path / f).is_file(), f
    # the levels ran on the same held-out queries as the routers, each arm paired
    thought, distilled, gate = result["thought_eval"], result["distill_eval"], result["promote_distilled"]
    assert set(thought["arms"]) == {"zero-shot", "few-shot", "templates"} and thought["n_queries"] == 4
    assert set(distilled["arms"]) == {"base", "distilled", "label-only"} and distilled["n_queries"] == 4
    assert {(d["arm"], d["baseline"]) for d in distilled["differences"]} >= {("distilled", "base"),
                                                                              ("distilled", "label-only")}
    assert gate["challenger"] == "1" and gate["compared_with"] == "base" and gate["advantage"]["n"] == 4
    # `fusion report`'s summary: every level on the same 4 held-out queries against the same best-single
    from fusion.cli import _summary
    from fusion.config import load_params

    summary = _summary(load_params(params))
    assert [r["level"] for r in summary["rows"]] == ["query", "query", "thought", "model", "token"]
    assert summary["n_queries"] == 4 and summary["note"] is None
    assert all(r["word"] in {"gain", "loss", "no evidence"} for r in summary["rows"][1:])
    # every stage run is in MLflow with its parameters, metrics and artifacts; both routers are registered
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = {r.data.tags["fusion.stage"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"queries", "collect", "judge", "ingest", "validate", "embed", "train", "evaluate", "promote",
                         "templates", "thought_eval", "sft_data", "distill-distilled", "distill-label-only",
                         "distill_eval", "promote_distilled", "expert-math", "expert-reasoning", "tokenroute_data",
                         "tokenroute-router", "tokenroute-plain", "tokenroute_eval"}
    for stage, run in runs.items():
        assert run.info.status == "FINISHED", stage
        assert run.data.params, stage
        assert run.data.metrics, stage
        if stage not in ("train", "distill-label-only", "tokenroute-plain"):
            assert client.list_artifacts(run.info.run_id), stage
    # the template bank is an artifact; the distilled model a registered version with its adapter beside it
    assert [a.path for a in client.list_artifacts(runs["templates"].info.run_id, "template_bank")] == [
        "template_bank/bank.parquet"]
    mv = client.get_model_version("tiny-distilled", "1")
    assert mv.run_id == runs["distill-distilled"].info.run_id and mv.tags["eval.performance"] is not None
    assert "adapter" in {a.path for a in client.list_artifacts(mv.run_id)}
    assert str(client.get_model_version_by_alias("tiny-distilled", "challenger").version) == "1"
    assert "overall.knn.reward" in runs["evaluate"].data.metrics
    # the token level: trained on the experts of the stage experts, registered with them, evaluated on the same
    # held-out queries against the paper's baselines
    token = result["tokenroute_eval"]
    assert set(token["arms"]) == {"fusionroute", "fusionroute-sft", "routing-only", "sequence-selection", "fine-tuned",
                                  "expert-base", "expert-math", "expert-reasoning"} and token["n_queries"] == 4
    assert token["routing_only_router"] == "after SFT"  # the paper's ablation: the router as SFT left it
    assert {d["baseline"] for d in token["differences"]} == set(token["arms"]) - {"fusionroute"}
    shares = token["routing"]["fusionroute"]["all"]["shares"]
    assert set(shares) == {"base", "math", "reasoning"} and abs(sum(shares.values()) - 1) < 1e-9
    mv = client.get_model_version_by_alias("tiny-tokenroute", "challenger")
    assert mv.run_id == runs["tokenroute-router"].info.run_id and mv.tags["fusion.experts"] == "base,math,reasoning"
    assert mv.tags["eval.performance"] is not None
    assert runs["tokenroute-router"].data.metrics["pairs"] >= 1  # preference pairs from the oracle log
    for f in ("data/tokenroute/sequences.parquet", "data/tokenroute/stats/math.parquet",
              "models/tokenroute/router/routing_head.safetensors", "models/tokenroute/plain/config.json",
              "models/tokenroute/router_sft/routing_head.safetensors",
              "metrics/tokenroute_eval.json", "reports/tokenroute_eval.png", "reports/tokenroute_routing.png"):
        assert (tmp_path / f).is_file(), f
    versions = {client.get_model_version("tiny-router", v).tags["router"]: v for v in ("1", "2")}
    assert set(versions) == {"knn", "best-single"}
    for v in versions.values():
        mv = client.get_model_version("tiny-router", v)
        assert mv.run_id == runs["train"].info.run_id
        assert mv.tags["eval.split"] == f"test:{metrics['split_fingerprint']}"
    # the first run has no champion: the best router becomes champion and challenger, and the run says why
    best = metrics["best_router"]
    assert decision["promoted"] and decision["challenger"] == versions[best] and "no champion yet" in decision["reason"]
    assert str(client.get_model_version_by_alias("tiny-router", "champion").version) == versions[best]
    assert str(client.get_model_version_by_alias("tiny-router", "challenger").version) == versions[best]
    assert runs["promote"].data.tags["fusion.promotion.decision"] == "promoted"
    assert decision["challenger_score"] == pytest.approx(o[best]["reward"])  # the registered model scores the same


def _run(cmd: list[str], cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout + res.stderr


def _lock_md5(work: Path, out: str) -> str:
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    return next(o["md5"] for st in lock["stages"].values() for o in st.get("outs", []) if o["path"] == out)


ROUTING_STAGES = ("queries", "collect", "judge", "ingest", "validate", "embed", "train", "evaluate", "promote")
LEVEL_STAGES = ("templates", "thought_eval", "sft_data", "distill", "distill_eval", "promote_distilled", "experts",
                "tokenroute_data", "tokenroute_train", "tokenroute_eval")
ALL_STAGES = (*ROUTING_STAGES, *LEVEL_STAGES)


def _ran(out: str) -> set[str]:
    return {s for s in ALL_STAGES if f"Running stage '{s}'" in out}


@pytest.mark.timeout(1800)  # five tiny repros: 11 min alone on 2 cores; past 900 s when other jobs share the cores
def test_dvc_repro_is_incremental_and_the_distilled_model_joins_the_pool(tmp_path, tiny_llama):
    """`dvc repro` runs every level; a second run does nothing; a parameter re-runs only its stages and what follows;
    a pool entry naming the registered distilled model is collected and routed by the next repro; a production log
    dropped in `incoming/` re-runs from ingest, and the router versions it registers carry the new data version.
    (One project for all of it: each full repro of the tiny profile costs minutes of CI.)"""
    import mlflow
    import pandas as pd

    from fusion.importers import write_long

    work = tmp_path / "proj"
    work.mkdir()
    shutil.copy(REPO_ROOT / "dvc.yaml", work / "dvc.yaml")
    shutil.copytree(REPO_ROOT / "fusion", work / "fusion", ignore=shutil.ignore_patterns("__pycache__"))
    params = write_tiny_profile(work, tiny_llama)
    write_oracle_log(work, params)
    _run(["git", "init", "-q"], work)
    _run(["dvc", "init", "-q"], work)
    assert _ran(_run(["dvc", "repro"], work)) == set(ALL_STAGES)
    metrics = json.loads((work / "metrics/eval.json").read_text())
    assert metrics["routers"] == ["knn", "best-single"]
    assert json.loads((work / "reports/promotion.json").read_text())["promoted"]
    bank = pd.read_parquet(work / "data/templates/bank.parquet")
    assert len(bank) == 8 and set(bank["task"]) == {"arith_word", "mc_reasoning"}  # the training queries
    sft = json.loads((work / "data/sft/report.json").read_text())
    assert sft["distilled"]["examples"] == 8 and sft["distilled"]["per_source"] == {"oracle": 8}
    assert json.loads((work / "reports/distill_promotion.json").read_text())["challenger"] == "1"
    assert "Running stage" not in _run(["dvc", "repro"], work)  # nothing changed: no work

    # a router parameter reruns the query level's training and what follows; the model level's training setting
    # reruns the model level only (the experts train with tokenroute.expert_train)
    p = yaml.safe_load(params.read_text())
    p["routers"][0]["params"]["k"] = 2
    p["distill"]["train"]["max_steps"] = 6
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    assert _ran(_run(["dvc", "repro"], work)) == {"train", "evaluate", "promote", "distill", "distill_eval",
                                                  "promote_distilled"}
    assert json.loads((work / "models/routers/knn/router.json").read_text())["params"]["k"] == 2
    # the retrained routers are new versions; the gate compared the new challenger with the champion
    decision = json.loads((work / "reports/promotion.json").read_text())
    assert decision["champion_before"] is not None and decision["challenger"] in {"3", "4"}
    assert ("lower bound is above the margin" in decision["reason"]) == decision["promoted"]
    assert decision["advantage"]["n"] == metrics["n_queries"]  # decided on the interval over the test queries
    manifest = json.loads((work / "models/distilled/manifest.json").read_text())
    assert manifest["models"]["distilled"]["steps"] == 6 and manifest["models"]["distilled"]["version"] == "2"

    # the loop closes: the registered distilled model is a candidate of the next collection, and the routers
    # learn when to call it
    p["pool"].append({"name": "distilled", "backend": "transformers", "model": "models:/tiny-distilled@challenger",
                      "modes": ["direct"], "input_price": 0.05, "output_price": 0.1})
    # from here on the routing side is under test: the levels (which ran above) are switched off, else each of the
    # next repros would run them all again on the new log (minutes of CI); a disabled level's stages are no-ops
    for level in ("thought", "distill", "tokenroute"):
        p[level]["enabled"] = False
    params.write_text(yaml.safe_dump(p, sort_keys=False))
    assert {"collect", "validate", "train", "evaluate"} <= _ran(_run(["dvc", "repro"], work))
    log = pd.read_parquet(work / "data/routing_log.parquet")
    rows = log[log["candidate"] == "distilled:direct"]
    assert rows["query_id"].nunique() == log["query_id"].nunique() and rows["error"].isna().all()
    router = json.loads((work / "models/routers/knn/router.json").read_text())
    assert "distilled:direct" in router["candidates"]
    metrics = json.loads((work / "metrics/eval.json").read_text())
    assert "distilled:direct" in metrics["routing_distribution"]["knn"]  # a candidate the router may route to

    # a new production log in the drop folder: the pipeline re-runs from ingest, and the router versions it
    # registers are tagged with the new data version (the md5 DVC records for the routing log)
    old_md5 = _lock_md5(work, "data/routing_log.parquet")
    drop = log.assign(query_id="prod-" + log["query_id"], query="production: " + log["query"], backend="production")
    write_long(drop, work / "incoming" / "2026-12-01.jsonl")
    ran = _ran(_run(["dvc", "repro"], work))
    assert ran & set(ROUTING_STAGES) == {"ingest", "validate", "embed", "train", "evaluate", "promote"}
    new_md5 = _lock_md5(work, "data/routing_log.parquet")
    assert new_md5 != old_md5 and len(pd.read_parquet(work / "data/routing_log.parquet")) == 2 * len(log)
    client = mlflow.MlflowClient(f"sqlite:///{work}/mlflow.db")
    for version in ("7", "8"):
        tags = client.get_model_version("tiny-router", version).tags
        assert tags["fusion.data.md5"] == new_md5 and tags["fusion.data.rows"] == str(2 * len(log)), tags
    assert client.get_model_version("tiny-router", "5").tags["fusion.data.md5"] == old_md5
    assert "Running stage" not in _run(["dvc", "repro"], work)  # nothing new: no work
