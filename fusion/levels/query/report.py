"""Presentation of router evaluations and benchmarks: Markdown, rich tables and the cost-quality plots. The numbers
come from :mod:`fusion.levels.query.evaluation` and :mod:`fusion.levels.query.benchmark`; nothing here computes a metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusion.levels.query.data import RoutingData
from fusion.levels.query.plots import plot_cost_quality_plane


def evaluation_markdown(metrics: dict) -> str:
    sc = metrics["scenario"]
    lines = [
        f"Evaluation on {metrics['n_queries']} held-out queries (split `{metrics['split_fingerprint']}`); scenario "
        f"alpha={sc['alpha']}, beta={sc['beta']}; best single candidate (chosen on train): "
        f"`{metrics['best_single']}`; best router: `{metrics['best_router']}`.",
        "",
        "| task | method | performance | cost (USD/query) | reward |",
        "|---|---|---|---|---|",
    ]
    for task, block in [("**overall**", metrics["overall"]), *metrics["per_task"].items()]:
        for m in metrics["methods"]:
            v = block[m]
            lines.append(f"| {task} | {m} | {v['performance']:.3f} | {v['cost']:.6f} | {v['reward']:.3f} |")
    lines += ["", "| router | reward − best-single (95% CI) | | gain over task-best | oracle gap recovered | routing |",
              "|---|---|---|---|---|---|"]
    for m in metrics["routers"]:
        gr = metrics["gap_recovered"][m]
        dist = ", ".join(f"`{c}` {s:.0%}" for c, s in metrics["routing_distribution"][m].items() if s > 0)
        vs = metrics.get("vs_best_single", {}).get(m)
        gain = format_ci(vs) or f"{metrics['gain_over_best_single'][m]:+.3f}"
        lines.append(f"| {m} | {gain} | "
                     f"{vs['word'] if vs else ''} | {metrics['gain_over_task_best'][m]:+.3f} "
                     f"| {'n/a' if gr is None else f'{gr:.3f}'} | {dist} |")
    if metrics.get("task_blind"):
        lines += ["", "Served without the queries' task (as a client that sends none; the routers infer it):", "",
                  "| router | performance | cost (USD/query) | reward | Δ reward vs task given | paths |",
                  "|---|---|---|---|---|---|"]
        for m, v in metrics["task_blind"].items():
            lines.append(f"| {m} | {v['performance']:.3f} | {v['cost']:.6f} | {v['reward']:.3f} | "
                         f"{v['reward'] - metrics['overall'][m]['reward']:+.3f} | {format_paths(v['route_paths'])} |")
    return "\n".join(lines) + "\n"


def evaluation_table(metrics: dict):
    from rich.table import Table

    t = Table(title=f"Router evaluation ({metrics['n_queries']} test queries, best single: {metrics['best_single']},"
                    f" best router: {metrics['best_router']})")
    for col in ("task", "method", "performance", "cost $/q", "reward", "reward − best-single (95% CI)", "gap recovered"):
        t.add_column(col, justify="right" if col not in ("task", "method") else "left")
    methods = metrics["methods"]
    vs_best = metrics.get("vs_best_single", {})
    for task, block in [("overall", metrics["overall"]), *metrics["per_task"].items()]:
        for i, m in enumerate(methods):
            v = block[m]
            gr = metrics["gap_recovered"].get(m) if task == "overall" else None
            vs = vs_best.get(m) if task == "overall" else None
            t.add_row(task if i == 0 else "", m, f"{v['performance']:.3f}", f"{v['cost']:.6f}", f"{v['reward']:.3f}",
                      f"{format_ci(vs)} {vs['word']}" if vs else "", "" if gr is None else f"{gr:.3f}",
                      end_section=i == len(methods) - 1)
    return t


def plot_evaluation(metrics: dict, test: RoutingData, path: Path) -> Path:
    """Cost vs performance of every single candidate, every baseline and every router, on the test split."""
    perf = np.nan_to_num(test.perf, nan=0.0)
    singles = {c: (float(x), float(y)) for c, x, y in zip(test.candidates, test.cost.mean(0), perf.mean(0),
                                                               strict=True)}
    points = {m: (metrics["overall"][m]["cost"], metrics["overall"][m]["performance"]) for m in metrics["methods"]}
    return plot_cost_quality_plane({}, singles, path, title="Cost vs quality on the test split", points=points)


def plot_benchmark(result: dict, path: Path) -> Path | None:
    """The benchmark's cost-quality plane: each learned router's cost-weight sweep and its AIQ, the single
    candidates, oracle and random (None when the benchmark has no sweep)."""
    curves = result.get("curves")
    if not curves:
        return None
    return plot_cost_quality_plane(
        {n: (np.array(c["cost"]), np.array(c["performance"])) for n, c in curves["routers"].items()},
        {n: (v["cost"], v["performance"]) for n, v in curves["singles"].items()},
        path, title=f"Cost-quality plane ({result['evaluation']})",
        points={r["router"]: (r["cost"], r["performance"]) for r in result["records"]
                if r["scenario"] == "performance_first" and r["router"] in ("oracle", "random")},
    )


def benchmark_table(result: dict):
    from rich.table import Table

    t = Table(title=f"Routers on {result['n_queries']} queries × {len(result['candidates'])} candidates "
                    f"({result['evaluation']})")
    for col in ("scenario", "router", "performance", "cost $/q", "reward", "Δ perf best-single [95% CI]",
                "Δ perf task-best [95% CI]", "gap recovered", "AIQ", "paths"):
        t.add_column(col, justify="left" if col in ("scenario", "router", "paths") else "right")
    curves = (result.get("curves") or {}).get("routers", {})
    last = None
    for r in result["records"]:
        sd = f"±{r['performance_std']:.3f}" if "performance_std" in r else ""
        gr = "—" if r["gap_recovered"] is None else f"{r['gap_recovered']:.3f}"
        a = curves.get(r["router"], {}).get("aiq") if r["scenario"] == "performance_first" else None
        name = r["router"] + (" (labels)" if r.get("needs_labels") else "")
        t.add_row(r["scenario"] if r["scenario"] != last else "", name, f"{r['performance']:.3f}{sd}",
                  f"{r['cost']:.6f}", f"{r['reward']:.3f}", _ci(r, "performance_vs_best-single"),
                  _ci(r, "performance_vs_task-best"), gr, "" if a is None else f"{a:.3f}",
                  format_paths(r.get("route_paths", {})))
        last = r["scenario"]
    return t


def _ci(rec: dict, key: str) -> str:
    """A record's bootstrap interval ``key`` (``0`` for the baseline itself)."""
    ci = rec.get("ci95", {}).get(key)
    if ci is None:
        return "0" if key.endswith(rec["router"]) else "—"
    return format_ci(ci)


def format_ci(ci: dict | None) -> str:
    """``+0.012 [-0.004, +0.027]``: a difference and its 95% interval (empty when there is none)."""
    return "" if not ci else f"{ci['mean']:+.3f} [{ci['lo']:+.3f}, {ci['hi']:+.3f}]"


def format_paths(shares: dict[str, float]) -> str:
    """``inferred 95%, text-only 5%``: the share of queries routed by each path (those that occur)."""
    return ", ".join(f"{p} {v:.0%}" for p, v in shares.items() if v > 0)
