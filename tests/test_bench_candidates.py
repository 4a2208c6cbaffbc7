"""benchmarks/candidates.py: the per-task table it chooses the embedded tasks from (accuracy, best single, oracle,
disagreement, speed) on a hand-made log."""

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "candidates.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_candidates", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def _log() -> pd.DataFrame:
    # task t: 4 queries; a right on q1, q2; b right on q2, q3; q4 nobody -> best a (0.5), oracle 0.75, disagree 0.5
    right = {("q1", "a"): 1, ("q2", "a"): 1, ("q2", "b"): 1, ("q3", "b"): 1}
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    rows = []
    for c in ("a", "b"):
        for i, q in enumerate(("q1", "q2", "q3", "q4")):
            rows.append({"query_id": q, "task": "t", "candidate": c, "performance": float(right.get((q, c), 0)),
                         "output_tokens": 10 if c == "a" else 30,
                         # a's two batches took 2 s and 6 s; b's one batch of four 4 s
                         "latency_s": (2.0 if i < 2 else 6.0) if c == "a" else 4.0,
                         "collected_at": (t0 if i < 2 else t1) if c == "a" else t0})
    return pd.DataFrame(rows)


def test_table_gives_best_single_oracle_and_disagreement(bench):
    log = _log()
    rows = bench.table(log, {"q1": "k1", "q2": "k1", "q3": "k2", "q4": "k2"})
    every = next(r for r in rows if r["kind"] == "(all)")
    assert every["queries"] == 4 and every["acc:a"] == every["acc:b"] == 0.5
    assert every["oracle"] == 0.75 and every["disagree"] == 0.5
    assert every["best_single_acc"] == 0.5 and every["tokens:a"] == 10 and every["tokens:b"] == 30
    k1 = next(r for r in rows if r["kind"] == "k1")  # q1 (only a), q2 (both): oracle 1, disagree 0.5
    assert k1["queries"] == 2 and k1["oracle"] == 1.0 and k1["disagree"] == 0.5 and k1["best_single"] == "a"
    speed = bench.seconds_per_answer(log)
    assert speed == {"a": pytest.approx(2.0), "b": pytest.approx(1.0)}  # (2 + 6) / 4 and 4 / 4
    md = bench.markdown(rows, ["a", "b"], speed)
    assert "| t | (all) | 4 | 0.50 | 0.50 | 0.50 (b) | 0.75 | 0.50 |" in md  # a tie goes to the later name
