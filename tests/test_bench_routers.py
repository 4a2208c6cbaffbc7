"""benchmarks/routers.py: its core on a tiny synthetic log records quality, repeats and speed."""

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from routing_fixtures import cluster_log

from fusion.levels.query import build_routing_data
from fusion.levels.query.base import json_default

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "routers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_routers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


class FakeEncoder:
    """Deterministic 8-d unit vectors per text (stands in for MiniLM)."""

    def encode(self, texts):
        rng = np.random.default_rng(len(texts))
        v = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _data_with_one_repeat():
    log, emb = cluster_log(n_per_cluster=24)
    train_text = log.loc[log["split"] == "train", "query"].iloc[0]
    test_qid = log.loc[log["split"] == "test", "query_id"].iloc[0]
    log["query"] = log["query"].astype(str)
    log.loc[log["query_id"] == test_qid, "query"] = train_text  # one test query repeats a training query
    return build_routing_data(log, emb, 1.0, 0.0)


def test_run_records_quality_repeats_and_speed(bench):
    data = _data_with_one_repeat()
    settings = bench.BenchSettings(
        logs=("toy",), routers={"knn": {}, "svm": {}, "mf": {"epochs": 5}}, speed_log="toy",
        speed_routers=("knn", "svm", "mf"), fit_routers=("knn", "svm", "mf"), single_repeats=30, batch_size=500,
        batch_repeats=2, e2e_texts=10, e2e_repeats=2)
    result = bench.run({"toy": data}, settings, FakeEncoder())

    q = result["logs"]["toy"]
    assert q["n_test_seen_in_train"] == 1 == q["with_repeats"]["n_test_seen_in_train"]
    n_test = int((data.splits == "test").sum())
    assert q["with_repeats"]["n_test"] == n_test and q["without_repeats"]["n_test"] == n_test - 1
    assert q["without_repeats"]["n_test_seen_in_train"] == 0
    pairs = {(r["router"], r["scenario"]) for r in q["with_repeats"]["records"]}
    for router in ("knn", "svm", "mf", "best-single", "task-best", "oracle", "random"):
        assert {(router, "performance_first"), (router, "balance")} <= pairs
    s = q["summary"]["with_repeats"]
    # the clusters are learnable: the best learned router is perfect, best-single half right
    assert s["pf_best_performance"] == pytest.approx(1.0) and s["pf_best_single_performance"] == pytest.approx(0.5)
    assert s["pf_beats_best_single"] is True and s["pf_best_router"] in ("knn", "svm", "mf")
    assert isinstance(s["balance_matches_best_single_cheaper"], bool) and s["balance_router"] in ("knn", "svm", "mf")

    sp = result["speed"]
    assert set(sp["fit_s"]) == {"knn", "svm", "mf"} and all(v > 0 for v in sp["fit_s"].values())
    for name in ("knn", "svm", "mf"):
        one = sp["single"][name]
        assert one["repeats"] == 30 and 0 < one["p50_ms"] <= one["p90_ms"] <= one["p99_ms"]
        assert sp["batch"][name]["size"] == 500 and sp["batch"][name]["median_s"] > 0
        e2e = sp["end_to_end"]["routers"][name]
        assert e2e["e2e_qps"] > 0 and e2e["ratio"] > 0 and e2e["route_ms"] > 0
        assert set(sp["targets"][name]) == {"single_p50", "batch_10k", "e2e", "fit"}
    assert sp["end_to_end"]["texts"] == 10 and sp["end_to_end"]["encoder_qps"] > 0

    json.dumps(result, default=json_default)  # the script writes it as JSON
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    for t in bench.tables(result):
        console.print(t)
    text = console.file.getvalue()
    assert "test repeats removed" in text and "Speed on toy" in text
    assert any(line.startswith("speed knn:") for line in bench.verdicts(result))


def test_balance_target_needs_best_single_performance_at_lower_cost(bench):
    def rec(router, scenario, perf, cost):
        return {"router": router, "scenario": scenario, "performance": perf, "cost": cost, "reward": perf - cost}

    base = [rec("best-single", "performance_first", 0.6, 1.0), rec("task-best", "performance_first", 0.62, 1.0),
            rec("oracle", "performance_first", 0.9, 1.0), rec("knn", "performance_first", 0.63, 1.0),
            rec("best-single", "balance", 0.5, 0.2)]
    met = bench.quality_summary({"records": [*base, rec("knn", "balance", 0.61, 0.5)], "n_test": 100}, ["knn"])
    assert met["balance_matches_best_single_cheaper"] and met["balance_cost_saving"] == pytest.approx(0.5)
    assert met["pf_beats_best_single"] and met["pf_beats_task_best"]
    for perf, cost in ((0.59, 0.5), (0.7, 1.0)):  # too weak / not cheaper
        s = bench.quality_summary({"records": [*base, rec("knn", "balance", perf, cost)], "n_test": 100}, ["knn"])
        assert not s["balance_matches_best_single_cheaper"]


def test_repeats_mask_counts_test_texts_seen_in_train(bench):
    data = _data_with_one_repeat()
    mask = bench.repeats_mask(data)
    assert mask.sum() == 1 and (data.splits[mask] == "test").all()
    assert isinstance(pd.Series(data.texts[mask]).iloc[0], str)
