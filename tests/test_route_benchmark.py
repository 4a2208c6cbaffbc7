"""`fusion route benchmark` / `route train` / `route predict` on a FusionBench-schema CSV built from real rows."""

import json
import re
from pathlib import Path

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
    assert sum(bool(re.search(re.escape(c) + r"\s+Write a python", res.output)) for c in meta["candidates"]) == 1


def test_benchmark_refuses_bad_input(fb_csv, cache, tmp_path):
    res = runner.invoke(app, ["route", "benchmark", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--scenarios", "nonsense", "--routers", "knn"])
    assert res.exit_code == 1 and "unknown scenario" in res.output
    res = runner.invoke(app, ["route", "train", str(fb_csv), "--format", "fusionbench", "--cache", str(cache),
                              "--router", "oracle", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "evaluation only" in res.output
