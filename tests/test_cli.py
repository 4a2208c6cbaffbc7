"""The `fusion` CLI drivers: import a real log, refuse a bad one, and name a bad parameter."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from fusion.cli import app
from fusion.log.schema import read_log

runner = CliRunner()


def test_data_import_real_routerbench_file(shared_data, tmp_path):
    out = tmp_path / "rb.parquet"
    src = shared_data / "routing" / "routerbench_zs" / "mbpp_test.csv"
    res = runner.invoke(app, ["data", "import", str(src), "--format", "routerbench", "--out", str(out)])
    assert res.exit_code == 0, res.output
    log = read_log(out)
    assert log["candidate"].nunique() == 11
    assert set(log["split"]) == {"test"}
    assert "wrote" in res.output


def test_data_import_refuses_bad_file(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"query_id": ["a"], "task": ["gsm8k"], "query": ["q"], "llm": ["m"], "performance": [1.7],
                  "split": ["train"], "backend": ["x"], "surprise": [1]}).to_csv(bad, index=False)
    res = runner.invoke(app, ["data", "import", str(bad), "--format", "long", "--out", str(tmp_path / "o.parquet")])
    assert res.exit_code == 1
    assert "surprise" in res.output
    assert not (tmp_path / "o.parquet").exists()


def test_unknown_format_lists_known(tmp_path):
    res = runner.invoke(app, ["data", "import", str(tmp_path), "--format", "nope", "--out", str(tmp_path / "o")])
    assert res.exit_code == 1
    assert "routerbench" in res.output


def test_bad_params_exit_2_naming_the_key(tmp_path, repo_root):
    p = tmp_path / "params.yaml"
    p.write_text((repo_root / "params.yaml").read_text().replace("batch_size: 8", "batch_sise: 8"))
    res = runner.invoke(app, ["queries", "--params", str(p)])
    assert res.exit_code == 2
    assert "collect.batch_sise" in res.output


def test_tables_printed_to_a_pipe_are_whole(tmp_path, repo_root):
    """`fusion report > file` keeps every column and number: no cut to 80 columns when stdout is not a terminal."""
    import json
    import subprocess
    import sys

    from routing_fixtures import cluster_log

    from fusion.core.heldout import write_per_query
    from fusion.levels.query import build_routing_data, make_router
    from fusion.levels.query.evaluation import evaluate_routers, per_query_frame

    log, emb = cluster_log(n_per_cluster=20)
    data = build_routing_data(log, emb, 1.0, 0.0)
    name = "a-router-with-a-rather-long-name-to-widen-the-table"
    values: dict = {}
    metrics = evaluate_routers({name: make_router("knn", k=3).fit(data.split("train"))}, data.split("train"),
                               data.split("test"), values=values)
    (tmp_path / "params.yaml").write_text((repo_root / "params.yaml").read_text())
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "eval.json").write_text(json.dumps(metrics))
    write_per_query(per_query_frame(data.split("test"), values), tmp_path / "reports" / "heldout" / "query.parquet")
    cmd = [sys.executable, "-c", "from fusion.cli import main; main()", "report", "--params", str(tmp_path / "params.yaml")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert name in out and "…" not in out
    assert f"{metrics['overall'][name]['performance']:.3f}" in out
    assert max(len(line) for line in out.splitlines()) > 80
    # the summary closes the report; --json prints it alone, as one object
    assert "Fusion summary" in out and f"routed ({name})" in out
    summary = json.loads(subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout)
    routed = summary["rows"][1]
    assert summary["n_queries"] == metrics["n_queries"] and routed["system"] == f"routed ({name})"
    vs = metrics["vs_best_single"][name]
    assert routed["difference"] == pytest.approx(metrics["overall"][name]["performance"]
                                                 - metrics["overall"]["best-single"]["performance"])
    assert vs["word"] == routed["word"] == ("gain" if vs["lo"] > 0 else "no evidence")


def test_data_validate_quarantines_a_bad_row_of_a_file(tmp_path):
    import json

    from routing_fixtures import cluster_log

    from fusion.importers import write_long

    log, _ = cluster_log(n_per_cluster=4)
    src = tmp_path / "drop.jsonl"
    write_long(log, src)
    lines = src.read_text().splitlines()
    row = json.loads(lines[0])
    row["performance"] = "lots"  # a wrong type in one row of the file
    src.write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    q, out = tmp_path / "q.parquet", tmp_path / "clean.parquet"
    res = runner.invoke(app, ["data", "validate", str(src), "--quarantine", str(q), "--out", str(out)])
    assert res.exit_code == 0, res.output
    quarantined = pd.read_parquet(q)
    assert len(quarantined) == 1 and "performance is a number" in quarantined["failed_expectations"].iloc[0]
    assert quarantined["_source"].iloc[0] == str(src.resolve())
    assert len(read_log(out)) == len(log) - 1
    assert "performance is a number" in res.output


def test_collect_dry_run_prints_the_plan_and_generates_nothing(tmp_path, tiny_llama):
    from tests.profiles import write_tiny_profile

    params = write_tiny_profile(tmp_path, tiny_llama)
    assert runner.invoke(app, ["queries", "--params", str(params)]).exit_code == 0
    res = runner.invoke(app, ["collect", "--dry-run", "--params", str(params)])
    assert res.exit_code == 0, res.output
    assert "tiny-a:direct" in res.output and "tiny-a:think" in res.output and "calls, estimated $" in res.output
    assert not list((tmp_path / "data" / "collect_parts").rglob("part-*.parquet"))


def test_every_driver_sets_the_passive_wait_before_torch_loads():
    """OpenMP reads its wait policy when torch loads: the CLI and the flow set it first (benchmarks/contention.py)."""
    import os
    import subprocess
    import sys

    probe = ("import os, sys; import {mod}; "
             "print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "FUSION_OMP_POLICY")}
    for mod in ("fusion.cli", "flows.pipeline"):
        out = subprocess.run([sys.executable, "-c", probe.format(mod=mod)], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        assert out == ["False", "PASSIVE"], mod
    mine = subprocess.run([sys.executable, "-c", probe.format(mod="fusion.cli")], capture_output=True, text=True,
                          env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, check=True).stdout.split()
    off = subprocess.run([sys.executable, "-c", probe.format(mod="fusion.cli")], capture_output=True, text=True,
                         env={**env, "FUSION_OMP_POLICY": "off"}, check=True).stdout.split()
    assert mine[1] == "ACTIVE" and off[1] == "None"  # the user's setting wins; off leaves OpenMP's default
