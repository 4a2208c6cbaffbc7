"""Which embedded tasks give fusion room: the embedded pool's candidates (``params.yaml``: SmolLM2-135M-Instruct and
Gemma-3-270M, each direct and think) on every task the embedded default can draw offline, per task and per
synthetic problem kind.

For each (task, kind): each candidate's accuracy, the best single candidate, the oracle (a query counts when any
candidate gets it), the share of queries where the candidates disagree (some right, some wrong: the per-query signal
a router can learn), answer tokens and seconds per answer. The product's own collector does the generation
(``fusion.data.collect.collect``, the pool and collect settings of ``params.yaml``; ``--max-new-tokens`` sets the
token budgets), so what is measured is what ``make demo`` would collect; answers are kept under ``<work>/parts``
and a killed run resumes.

    python benchmarks/candidates.py [--work .bench/candidates] [--synthetic 32] [--human-eval 16]
                                    [--max-new-tokens DIRECT THINK]

Writes <work>/candidates.json and <work>/candidates.md (the table in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def kinds_of(queries, sources: list[dict]) -> list[str]:
    """The synthetic problem kind of each query (the kind of the generator's item it came from: the loader drew
    ``limit`` items with seed 0 from the source's part of the space), else the task's name."""
    from fusion.tasks import synthetic

    lookup: dict[tuple[str, str], str] = {}
    for src in sources:
        make = getattr(synthetic, f"make_{src['task']}", None)
        if src["source"] == "synthetic" and make is not None:
            for item in make(src["limit"], 0, src.get("split", "test")):
                lookup[(src["task"], item.query)] = item.kind
    return [lookup.get((t, q), t) for t, q in zip(queries["task"], queries["query"], strict=True)]


def table(log, kinds: dict[str, str]) -> list[dict]:
    log = log.assign(kind=log["query_id"].map(kinds))
    rows = []
    groups = [(t, k, g) for (t, k), g in log.groupby(["task", "kind"])] + [(t, "(all)", g) for t, g in log.groupby("task")]
    for task, kind, g in groups:
        wide = g.pivot_table(index="query_id", columns="candidate", values="performance", aggfunc="first")
        wide = wide.fillna(0.0)
        right = wide >= 1.0
        acc = wide.mean().to_dict()
        best = max(acc, key=lambda c: (acc[c], c))
        some = right.any(axis=1)
        rows.append({
            "task": task, "kind": kind, "queries": int(len(wide)),
            **{f"acc:{c}": round(float(v), 3) for c, v in sorted(acc.items())},
            "best_single": best, "best_single_acc": round(float(acc[best]), 3),
            "oracle": round(float(some.mean()), 3),
            "disagree": round(float((some & ~right.all(axis=1)).mean()), 3),
            **{f"tokens:{c}": round(float(v), 1) for c, v in g.groupby("candidate")["output_tokens"].mean().items()},
        })
    return sorted(rows, key=lambda r: (r["task"], r["kind"] != "(all)", r["kind"]))


def seconds_per_answer(log) -> dict[str, float]:
    """Per candidate: the generation time of its batches (one ``latency_s`` per batch, repeated on its rows;
    a batch's rows share ``collected_at``) over its answers."""
    batches = log.drop_duplicates(["candidate", "collected_at"])
    return {c: float(batches.loc[batches["candidate"] == c, "latency_s"].sum() / n)
            for c, n in log["candidate"].value_counts().sort_index().items()}


def markdown(rows: list[dict], cands: list[str], speed: dict[str, float]) -> str:
    head = ["task", "kind", "n", *cands, "best single", "oracle", "disagree"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            r["task"], r["kind"], str(r["queries"]), *(f"{r.get('acc:' + c, float('nan')):.2f}" for c in cands),
            f"{r['best_single_acc']:.2f} ({r['best_single']})", f"{r['oracle']:.2f}", f"{r['disagree']:.2f}"]) + " |")
    lines += ["", "answer tokens (mean):", ""]
    lines += ["| task | kind | " + " | ".join(cands) + " |", "|---|---|" + "---|" * len(cands)]
    for r in rows:
        lines.append("| " + " | ".join([r["task"], r["kind"], *(
            f"{r.get('tokens:' + c, float('nan')):.0f}" for c in cands)]) + " |")
    lines += ["", "generation seconds per answer (each batch's time over its answers; batches mix tasks): " + ", ".join(
        f"{c} {v:.2f}" for c, v in speed.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=".bench/candidates")
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--synthetic", type=int, default=32, help="queries per synthetic task")
    ap.add_argument("--human-eval", type=int, default=16, help="HumanEval problems (0: leave the task out)")
    ap.add_argument("--max-new-tokens", type=int, nargs=2, metavar=("DIRECT", "THINK"), default=None,
                    help="token budgets of the two modes (default: params.yaml's collect.max_new_tokens)")
    args = ap.parse_args()
    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    import logging

    from fusion.cli_base import apply_thread_policy
    from fusion.config import load_params
    from fusion.data.collect import collect
    from fusion.data.config import QueriesConfig
    from fusion.data.queries import build_queries

    apply_thread_policy()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    params = load_params(args.params)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # world_capitals draws from its generator's train part (80% of 243 questions; its test part holds 13):
    # no expert trains on it
    sources = [{"task": t, "source": "synthetic", "limit": args.synthetic, "split": split}
               for t, split in (("arith_word", "test"), ("mc_reasoning", "test"), ("mental_math", "test"),
                                ("world_capitals", "train"))]
    if args.human_eval:
        sources.append({"task": "human_eval", "source": "package", "limit": args.human_eval})
    queries = build_queries(QueriesConfig(seed=0, test_fraction=0.3, sources=sources))
    kinds = dict(zip(queries["query_id"], kinds_of(queries, sources), strict=True))
    cfg = params.collect
    if args.max_new_tokens:
        cfg = cfg.model_copy(update={"max_new_tokens": dict(zip(("direct", "think"), args.max_new_tokens, strict=True))})
    t0 = time.perf_counter()
    log = collect(queries, params.pool, cfg, work / "parts", model_cache=params.paths.model_cache)
    wall = time.perf_counter() - t0
    cands = sorted(log["candidate"].unique())
    rows = table(log, kinds)
    speed = seconds_per_answer(log)
    out = {"command": " ".join(["python", *sys.argv]), "queries": int(len(queries)), "wall_s": round(wall, 1),
           "collect": cfg.model_dump(mode="json"), "pool": [s.model_dump(mode="json") for s in params.pool],
           "rows": rows,
           "errors": int(log["error"].notna().sum()),
           "seconds_per_answer": speed}
    (work / "candidates.json").write_text(json.dumps(out, indent=2))
    (work / "candidates.md").write_text(markdown(rows, cands, speed))
    print(markdown(rows, cands, speed))
    print(f"{len(queries)} queries x {len(cands)} candidates, {wall:.0f} s (0 when every answer was cached)")


if __name__ == "__main__":
    main()
