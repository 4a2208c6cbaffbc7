"""A real kill: `fusion collect` (and `fusion judge`) in a subprocess, SIGKILLed once some parts are durable, then
run again, equals an uninterrupted run row for row (responses, scores, tokens, cost; verdicts), with no duplicate
and no missing row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

FUSION = [sys.executable, "-c", "from fusion.cli import main; main()"]
N_PARTS = 24  # 12 queries x 2 modes, batch 1


def _project(root: Path, model: Path, *, judge: bool = False) -> Path:
    root.mkdir(parents=True)
    params = {
        "pool": [{"name": "tiny", "backend": "transformers", "model": str(model), "modes": ["direct", "think"],
                  "input_price": 1.0, "output_price": 2.0}],
        "queries": {"seed": 0, "test_fraction": 0.3, "sources": [
            {"task": "arith_word", "source": "synthetic", "limit": 6},
            {"task": "mc_reasoning", "source": "synthetic", "limit": 6}]},
        "collect": {"batch_size": 1, "max_new_tokens": {"direct": 40, "think": 40}, "sandbox_workers": 1},
        "tracking": {"enabled": False},
    }
    if judge:
        params["collect"]["batch_size"] = 8
        params["judge"] = {"enabled": True, "batch_size": 1, "max_new_tokens": 24,
                           "llm": {"name": "tiny-judge", "backend": "transformers", "model": str(model),
                                   "input_price": 1.0, "output_price": 1.0}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _fusion(root: Path, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.Popen([*FUSION, *args, "--params", str(root / "params.yaml")], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _run(root: Path, *args: str) -> str:
    proc = _fusion(root, *args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def _parts(root: Path, folder: str = "collect_parts") -> list[Path]:
    return sorted((root / "data" / folder).rglob("part-*.parquet"))


def _kill_when(proc: subprocess.Popen, root: Path, folder: str, n: int) -> int:
    """SIGKILL ``proc`` once ``n`` parts are durable; the number of parts then."""
    deadline = time.monotonic() + 300
    while len(_parts(root, folder)) < n:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return len(_parts(root, folder))


def _stable(path: Path) -> pd.DataFrame:
    log = pd.read_parquet(path)
    return log.drop(columns=["collected_at", "latency_s"]).sort_values(["query_id", "candidate"]).reset_index(drop=True)


@pytest.mark.slow
def test_sigkilled_collection_resumes_to_the_uninterrupted_log(tiny_llama, tmp_path):
    ref = _project(tmp_path / "ref", tiny_llama)
    _run(ref, "queries")
    _run(ref, "collect")
    assert len(_parts(ref)) == N_PARTS

    run = _project(tmp_path / "run", tiny_llama)
    _run(run, "queries")
    killed_at = _kill_when(_fusion(run, "collect"), run, "collect_parts", 3)
    assert 3 <= killed_at < N_PARTS, killed_at  # killed mid-run
    assert not (run / "data" / "collected.parquet").exists()

    out = _run(run, "collect")
    assert "wrote" in out
    assert len(_parts(run)) == N_PARTS  # only the missing parts were generated
    resumed, reference = _stable(run / "data" / "collected.parquet"), _stable(ref / "data" / "collected.parquet")
    assert not resumed.duplicated(["query_id", "candidate"]).any() and len(resumed) == N_PARTS
    pd.testing.assert_frame_equal(resumed, reference)


def _verdicts(root: Path) -> pd.DataFrame:
    v = pd.read_parquet(root / "data" / "judge_verdicts.parquet")
    return v.sort_values(["query_id", "candidate"]).reset_index(drop=True)


@pytest.mark.slow
def test_sigkilled_judge_resumes_to_the_uninterrupted_verdicts(tiny_llama, tmp_path):
    ref = _project(tmp_path / "ref", tiny_llama, judge=True)
    run = _project(tmp_path / "run", tiny_llama, judge=True)
    for root in (ref, run):
        _run(root, "queries")
        _run(root, "collect")
    _run(ref, "judge")
    assert len(_parts(ref, "judge_parts")) == N_PARTS  # batch 1: one part per answer

    killed_at = _kill_when(_fusion(run, "judge"), run, "judge_parts", 3)
    assert 3 <= killed_at < N_PARTS, killed_at
    _run(run, "judge")
    assert len(_parts(run, "judge_parts")) == N_PARTS
    resumed, reference = _verdicts(run), _verdicts(ref)
    assert len(resumed) == N_PARTS and not resumed.duplicated(["query_id", "candidate"]).any()
    pd.testing.assert_frame_equal(resumed, reference)
    assert resumed["verdict"].str.startswith("Score:").all()  # the reply continues the prefill
    pd.testing.assert_frame_equal(_stable(run / "data" / "judged.parquet"),
                                  _stable(ref / "data" / "judged.parquet"))
