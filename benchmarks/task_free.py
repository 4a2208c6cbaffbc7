"""Routing without task labels (issue 12): task inference, unseen tasks, and a quality floor at the least cost.

On the LLMRouter 14-task log and the RouterBench 0-shot 3-task log (MiniLM embeddings; logs and embeddings cached
as in ``benchmarks/routers.py``), with :func:`fusion.levels.query.benchmark.run_benchmark`:

1. **served without task**: the official split, each learned router trained with labels and scored twice (tasks
   given / tasks absent, as a pyfunc client sends them: the router infers them), and the same routers trained
   with no labels at all (``--task-blind --blind-training``). Target: served without task within 0.005 of the
   lower of the other two;
2. **task-blind**: the best router with the tasks hidden against task-best *with* labels, on the official split
   and (LLMRouter) 5-fold cross-validation;
3. **leave-task-out**: each task held out in turn; every learned router against best-single on the mean over the
   held-out tasks;
4. **floor**: each router in the budget router's floor mode (cost weight chosen on the training queries only);
   target: >= 50% cheaper than best-single at >= 99% of its performance;
5. **speed**: routing one query with a precomputed embedding and *no* task (inference included), p50 < 0.2 ms.

Every difference comes with its paired-bootstrap 95% interval.

    python benchmarks/task_free.py [--logs llmrouter,routerbench] [--quick] [--out reports/bench]

Results: ``<out>/task_free_<log>.json`` and the tables printed; docs/benchmarks.md records them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routers import _loadavg, load_or_build, machine, single_latency  # noqa: E402

logger = logging.getLogger("benchmarks.task_free")

LEARNED = ("knn", "mlp", "svm", "mf", "graph", "cluster", "ensemble")
LTO_ROUTERS = ("knn", "mlp", "mf", "graph", "cluster", "ensemble")
FLOOR_ROUTERS = ("knn", "mlp", "mf", "cluster")
FLOOR = 0.99  # the floor scenario's quality floor (a share of best-single's cross-fitted performance)
TARGETS = {"served_without_task_tolerance": 0.005, "floor_cost_saving": 0.5, "floor_performance_share": 0.99,
           "single_p50_ms": 0.2}


def _bench(data, routers, scenarios=("performance_first",), **kw) -> dict:
    from fusion.levels.query.benchmark import BenchConfig, run_benchmark

    t0 = time.perf_counter()
    cfg = BenchConfig(routers={r: {} for r in routers}, scenarios=tuple(scenarios), sweep=False, **kw)
    out = run_benchmark(data, cfg)
    out["wall_s"] = time.perf_counter() - t0
    logger.info("%s: %.0f s", out["evaluation"], out["wall_s"])
    return out


def _recs(result: dict, scenario: str = "performance_first") -> dict[str, dict]:
    return {r["router"]: r for r in result["records"] if r["scenario"] == scenario}


PARTS = ("standard", "blind", "cv", "lto", "floor", "speed")


def run_log(name: str, data, *, quick: bool, seed: int = 0, parts: tuple[str, ...] = PARTS,
            out: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every part of ``parts`` on one log; ``out``: an earlier result whose other parts are kept."""
    learned = ("knn", "mlp", "cluster", "ensemble") if quick else LEARNED
    lto = ("knn", "mlp", "cluster") if quick else LTO_ROUTERS
    floor = ("knn", "cluster") if quick else FLOOR_ROUTERS
    out = dict(out or {})
    out.update({"log": name, "n_queries": len(data), "tasks": sorted(set(data.tasks))})
    if "standard" in parts:
        out["standard"] = _bench(data, learned, seed=seed)
    if "blind" in parts:
        out["blind_trained"] = _bench(data, learned, protocol="task-blind", blind_training=True, seed=seed)
    if "cv" in parts and name == "llmrouter" and not quick:
        out["task_blind_cv"] = _bench(data, learned, protocol="task-blind", cv=5, seed=seed)
        out["standard_cv"] = _bench(data, (), cv=5, seed=seed)  # task-best with labels on the same folds
    if "lto" in parts:
        out["leave_task_out"] = _bench(data, lto, protocol="leave-task-out", seed=seed)
    if "floor" in parts:  # the target is >= 99% of best-single's performance: the floor is set there
        out["floor"] = _bench(data, floor, scenarios=("floor",), seed=seed, floor=FLOOR)
    if "speed" in parts:
        out["speed"] = speed_without_task(data, ("knn", "mlp", "mf", "cluster") if not quick else ("knn", "cluster"),
                                          seed, repeats=300 if quick else 2000)
    out["summary"] = summary(out)
    return out


def speed_without_task(data, names, seed: int, repeats: int) -> dict:
    from fusion.levels.query import make_router

    train, test = data.split("train"), data.split("test")
    out = {}
    for n in names:
        r = make_router(n, seed=seed).fit(train)
        none = np.array([None] * len(test), dtype=object)  # no task: the router infers it
        out[n] = {"without_task": single_latency(r, test.X, none, repeats),
                  "with_task": single_latency(r, test.X, test.tasks, repeats)}
        logger.info("%s: one query p50 %.3f ms without task, %.3f ms with", n, out[n]["without_task"]["p50_ms"],
                    out[n]["with_task"]["p50_ms"])
    return out


def summary(out: dict) -> dict:
    """Each target of the issue on this log, with the numbers it was judged on (PF performance)."""
    std, blind_tr = _recs(out["standard"]), _recs(out["blind_trained"])
    s: dict[str, Any] = {"served_without_task": {}}
    for r, rec in std.items():
        if "without_task" not in rec:
            continue
        given, served, trained_blind = rec["performance"], rec["without_task"]["performance"], \
            blind_tr[r]["performance"]
        ref = min(given, trained_blind)
        s["served_without_task"][r] = {
            "given": given, "served_without_task": served, "blind_trained": trained_blind,
            "paths": {k[5:]: v for k, v in rec["without_task"].items() if k.startswith("path_")},
            "met": served >= ref - TARGETS["served_without_task_tolerance"]}
    tb = std["task-best"]["performance"]
    best = max((r for r in std if "without_task" in std[r]), key=lambda r: std[r]["without_task"]["performance"])
    s["task_blind_official"] = {"best_router": best, "performance": std[best]["without_task"]["performance"],
                                "task_best_with_labels": tb, "best_single": std["best-single"]["performance"],
                                "met": std[best]["without_task"]["performance"] >= tb}
    if "task_blind_cv" in out:
        cv, cvstd = _recs(out["task_blind_cv"]), _recs(out["standard_cv"])
        learned = [r for r in cv if r not in ("random", "best-single", "task-best", "oracle")]
        best = max(learned, key=lambda r: cv[r]["performance"])
        s["task_blind_cv"] = {"best_router": best, "performance": cv[best]["performance"],
                              "performance_std": cv[best]["performance_std"],
                              "task_best_with_labels": cvstd["task-best"]["performance"],
                              "met": cv[best]["performance"] >= cvstd["task-best"]["performance"]}
    lto = _recs(out["leave_task_out"])
    bs = lto["best-single"]["performance"]
    s["leave_task_out"] = {r: {"performance": v["performance"], "best_single": bs,
                               "ci95_vs_best_single": v["ci95"]["performance_vs_best-single"],
                               "met": v["performance"] >= bs}
                           for r, v in lto.items() if r not in ("random", "best-single", "task-best", "oracle")}
    fl = _recs(out["floor"], "floor")
    rows = {r: {"performance": v["performance"], "cost": v["cost"], "cost_saving": v["cost_saving_vs_best_single"],
                "performance_share": v["performance_share_of_best_single"],
                "ci95_performance_vs_best_single": v["ci95"]["performance_vs_best-single"],
                "met": (v["cost_saving_vs_best_single"] or 0) >= TARGETS["floor_cost_saving"]
                and (v["performance_share_of_best_single"] or 0) >= TARGETS["floor_performance_share"]}
            for r, v in fl.items() if r not in ("random", "best-single", "task-best", "oracle")}
    s["floor"] = {"routers": rows, "best_single": {"performance": fl["best-single"]["performance"],
                                                   "cost": fl["best-single"]["cost"]},
                  "met": any(v["met"] for v in rows.values())}
    s["speed"] = {r: {"p50_ms": v["without_task"]["p50_ms"],
                      "met": v["without_task"]["p50_ms"] < TARGETS["single_p50_ms"]} for r, v in out["speed"].items()}
    return s


def print_tables(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from fusion.levels.query.report import format_ci, format_paths

    console = Console(width=160)
    std, bt = _recs(out["standard"]), _recs(out["blind_trained"])
    t = Table(title=f"{out['log']}: official split, Performance First (performance; Δ with 95% CI)")
    for c in ("router", "task given", "served without task", "paths", "trained without labels",
              "trained without labels: Δ vs best-single [95% CI]"):
        t.add_column(c)
    for r, rec in std.items():
        w = rec.get("without_task")
        t.add_row(r, f"{rec['performance']:.3f}", f"{w['performance']:.3f}" if w else "",
                  format_paths({k[5:]: v for k, v in (w or {}).items() if k.startswith("path_")}),
                  f"{bt[r]['performance']:.3f}" + (" (labels)" if bt[r].get("needs_labels") else ""),
                  format_ci(bt[r].get("ci95", {}).get("performance_vs_best-single")))
    console.print(t)
    for key, title in (("leave_task_out", "leave-task-out (mean over held-out tasks)"),
                       ("floor", "floor (least cost at best-single's performance)")):
        res = out[key]
        sc = "floor" if key == "floor" else "performance_first"
        t = Table(title=f"{out['log']}: {title}")
        for c in ("router", "performance", "cost $/q", "Δ perf vs best-single [95% CI]", "cost saving", "paths"):
            t.add_column(c)
        for r, rec in _recs(res, sc).items():
            t.add_row(r, f"{rec['performance']:.3f}", f"{rec['cost']:.6f}",
                      format_ci(rec.get("ci95", {}).get("performance_vs_best-single")),
                      f"{rec['cost_saving_vs_best_single']:.0%}" if rec.get("cost_saving_vs_best_single") is not None
                      else "", format_paths(rec.get("route_paths", {})))
        console.print(t)
    console.print_json(json.dumps(out["summary"], default=float))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--logs", default="llmrouter,routerbench")
    ap.add_argument("--quick", action="store_true", help="fewer routers and protocols (a few minutes)")
    ap.add_argument("--out", type=Path, default=Path("reports/bench"))
    ap.add_argument("--cache", type=Path, default=Path(".cache/bench"))
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data/routing"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-only", action="store_true", help="only the one-query latency (on an idle machine)")
    ap.add_argument("--parts", default=",".join(PARTS), help="what to (re)run, comma-separated from: "
                    + ",".join(PARTS) + "; the other parts of an earlier result file are kept")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for lib in ("fusion", "sklearn"):
        logging.getLogger(lib).setLevel(logging.WARNING)
    from fusion.levels.query.base import json_default

    args.out.mkdir(parents=True, exist_ok=True)
    for name in [s for s in args.logs.split(",") if s]:
        data = load_or_build(name, args.cache, args.data_root)
        if args.speed_only:
            sp = speed_without_task(data, ("knn", "mlp", "svm", "mf", "cluster", "ensemble"), args.seed, repeats=3000)
            path = args.out / f"task_free_speed_{name}.json"
            path.write_text(json.dumps({"speed": sp, "machine": machine(), "loadavg_end": _loadavg(),
                                        "command": f"python benchmarks/task_free.py --logs {name} --speed-only"},
                                       indent=1, default=json_default) + "\n")
            logger.info("wrote %s", path)
            continue
        t0 = time.perf_counter()
        parts = tuple(p for p in args.parts.split(",") if p)
        unknown = set(parts) - set(PARTS)
        if unknown:
            ap.error(f"unknown parts {sorted(unknown)}; known: {', '.join(PARTS)}")
        path = args.out / f"task_free_{name}{'_quick' if args.quick else ''}.json"
        earlier = json.loads(path.read_text()) if path.is_file() and set(parts) != set(PARTS) else None
        out = run_log(name, data, quick=args.quick, seed=args.seed, parts=parts, out=earlier)
        cmd = f"python benchmarks/task_free.py --logs {name}" + (" --quick" if args.quick else "")
        runs = (earlier or {}).get("runs", [])
        out.update(machine=machine(), loadavg_end=_loadavg(), wall_s=time.perf_counter() - t0, targets=TARGETS,
                   command=cmd, runs=[*runs, {"parts": list(parts), "wall_s": time.perf_counter() - t0,
                                              "command": cmd + ("" if set(parts) == set(PARTS)
                                                                else f" --parts {args.parts}")}])
        path.write_text(json.dumps(out, indent=1, default=json_default) + "\n")
        print_tables(out)
        logger.info("wrote %s (%.0f s)", path, out["wall_s"])


if __name__ == "__main__":
    main()
