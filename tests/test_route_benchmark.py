"""`fusion route benchmark` / `route train` / `route predict` on a FusionBench-schema CSV built from real rows."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_importers import fusionbench_frame
from typer.testing import CliRunner

from fusion.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def fb_csv(shared_data: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fbbench") / "never_seen.csv"
    fusionbench_frame(shared_data / "routing" / "routerbench_zs").to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embcache")


def test_benchmark_with_cross_validation_on_an_unseen_fusionbench_csv(fb_csv, cache, tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "plane.png"
    res = runner.invoke(app, ["route", "benchmark", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--routers", "knn,svm", "--scenarios", "performance_first,balance,llm_judge",
                              "--cv", "3", "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    recs = {(r["router"], r["scenario"]): r for r in result["records"]}
    for key in [("knn", "performance_first"), ("svm", "balance"), ("task-best", "llm_judge"), ("oracle", "balance")]:
        r = recs[key]
        for field in ("router", "scenario", "performance", "cost", "reward", "gap_recovered", "per_task",
                      "performance_std", "routing_distribution"):
            assert field in r
        assert r["folds"] == 3
    # the oracle bounds every router; best-single closes none of its own gap
    for (_name, scen), r in recs.items():
        assert r["reward"] <= recs[("oracle", scen)]["reward"] + 1e-9
    assert recs[("best-single", "performance_first")]["gap_recovered"] == pytest.approx(0.0)
    assert set(recs[("knn", "performance_first")]["per_task"]) == {"mbpp", "winogrande"}
    curves = result["curves"]["routers"]
    assert {"knn", "svm"} <= set(curves) and 0 < curves["knn"]["aiq"] <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Routers on" in res.output and "cross-validation" in res.output


def test_train_and_predict_from_a_saved_router(fb_csv, cache, tmp_path):
    folder = tmp_path / "r"
    res = runner.invoke(app, ["route", "train", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--router", "mlp", "--scenario", "balance", "--param", "alpha=0.1", "--out",
                              str(folder)])
    assert res.exit_code == 0, res.output
    meta = json.loads((folder / "router.json").read_text())
    assert meta["router"] == "mlp" and meta["params"] == {"alpha": 0.1} and meta["beta"] == 0.5
    res = runner.invoke(app, ["route", "predict", "Write a python function to add two numbers.", "--router",
                              str(folder)])
    assert res.exit_code == 0, res.output
    # no --task: the task is inferred from the query (or, far from every task, the text-only part routes it)
    assert sum(bool(re.search(re.escape(c) + r"\s+(inferred|text-only)\s+Write a python", res.output))
               for c in meta["candidates"]) == 1
    res = runner.invoke(app, ["route", "predict", "Write a python function to add two numbers.", "--router",
                              str(folder), "--task", "mbpp"])
    assert re.search(r"\s+task\s+Write a python", res.output), res.output


def test_benchmark_refuses_bad_input(fb_csv, cache, tmp_path):
    res = runner.invoke(app, ["route", "benchmark", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--scenarios", "nonsense", "--routers", "knn"])
    assert res.exit_code == 1 and "unknown scenario" in res.output
    res = runner.invoke(app, ["route", "train", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--router", "oracle", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "evaluation only" in res.output


def test_task_blind_and_leave_task_out_protocols_with_the_floor(fb_csv, cache, tmp_path):
    """Both protocols run on any importable log (here a FusionBench CSV of two tasks), with the floor scenario,
    bootstrap intervals and the path each query took."""
    out = tmp_path / "lto.json"
    res = runner.invoke(app, ["route", "benchmark", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--routers", "knn,cluster", "--scenarios", "performance_first,floor",
                              "--leave-task-out", "--bootstrap", "200", "--json", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert result["protocol"] == "leave-task-out" and result["held_out_tasks"] == ["mbpp", "winogrande"]
    recs = {(r["router"], r["scenario"]): r for r in result["records"]}
    knn = recs[("knn", "performance_first")]
    assert knn["folds"] == 2 and set(knn["per_task"]) == {"mbpp", "winogrande"}
    # the held-out task is never known: inferred from the query or routed by the text alone
    assert set(knn["route_paths"]) <= {"inferred", "text-only"}
    assert set(recs[("task-best", "performance_first")]["route_paths"]) == {"prior"}
    ci = knn["ci95"]["performance_vs_best-single"]
    assert ci["lo"] <= ci["mean"] <= ci["hi"]
    floor = recs[("knn", "floor")]
    assert "cost_saving_vs_best_single" in floor and "performance_share_of_best_single" in floor
    assert "leave-task-out" in res.output and "[95% CI]" in res.output.replace("\n", "") or "CI" in res.output

    out = tmp_path / "blind.json"
    res = runner.invoke(app, ["route", "benchmark", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--routers", "knn,mlp", "--scenarios", "performance_first", "--cv", "3",
                              "--task-blind", "--bootstrap", "100", "--json", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    recs = {r["router"]: r for r in result["records"]}
    assert result["protocol"] == "task-blind" and "tasks hidden" in result["evaluation"]
    assert recs["task-best"]["needs_labels"] and set(recs["task-best"]["route_paths"]) == {"task"}
    assert set(recs["mlp"]["route_paths"]) <= {"inferred", "text-only"}
    res = runner.invoke(app, ["route", "benchmark", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--task-blind", "--leave-task-out"])
    assert res.exit_code == 2 and "two protocols" in res.output


def test_an_embedding_does_not_depend_on_what_the_cache_held(tmp_path):
    """A benchmark's result is a function of the log and the seed, not of which texts had filled the embedding
    cache: a text embeds bitwise the same alone as in one call with longer and shorter texts (padded to a longer
    one's length, its embedding used to change in the last bits, and so the graph router's result)."""
    from fusion.core.embedding import Encoder
    from fusion.models.refs import MINILM

    texts = ["What is the capital of France?", "What is the capital of Spain?", "Solve 2x + 3 = 11 for x.", "Hi"]
    others = ["Explain step by step how photosynthesis turns light into chemical energy, and which organelles "
              "take part in each of its stages. " * 3, "Why?", "A train leaves at 3pm at 60 km/h; when does it "
              "arrive 150 km away?"]
    first = Encoder(MINILM, tmp_path / "first")
    alone = np.stack([first.encode([t])[0] for t in texts])  # each text in a call of its own: nothing padded
    later = Encoder(MINILM, tmp_path / "later")
    later._model = first.model
    later.encode(others[:1])  # another log's text was embedded first
    np.testing.assert_array_equal(later.encode([*others, *texts])[len(others):], alone)
    np.testing.assert_array_equal(Encoder(MINILM, tmp_path / "later").encode(texts), alone)  # read back from disk
