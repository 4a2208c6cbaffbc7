"""Stage ``evaluate``: the router against random, best-single and oracle on held-out queries.

Per task and overall: raw performance (errors count as 0), cost in USD per query, and the scenario's reward.
``random`` is the expectation over a uniformly random candidate (no sampling noise); ``best_single`` is the
candidate with the highest mean reward on the training split; ``oracle`` takes the best candidate per query.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from fusion.routers.base import Router
from fusion.routers.data import RoutingData

logger = logging.getLogger(__name__)

METHODS = ("random", "best_single", "router", "oracle")


def best_single_index(train: RoutingData) -> int:
    return int(np.argmax(np.nanmean(np.nan_to_num(train.reward, nan=np.nan), axis=0)))


def _pick(m: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return m[np.arange(len(idx)), idx]


def _summary(perf: np.ndarray, cost: np.ndarray, rew: np.ndarray) -> dict[str, float]:
    return {"performance": float(np.mean(perf)), "cost": float(np.mean(cost)), "reward": float(np.mean(rew))}


def evaluate_router(router: Router, train: RoutingData, test: RoutingData) -> dict:
    perf = np.nan_to_num(test.perf, nan=0.0)
    rew = np.nan_to_num(test.reward, nan=float(np.nanmin(test.reward)) if np.isfinite(test.reward).any() else 0.0)
    cost = test.cost
    n = len(test)
    choice = {
        "best_single": np.full(n, best_single_index(train)),
        "router": np.argmax(router.predict_data(test), axis=1),
        "oracle": np.argmax(rew + 1e-9 * perf - 1e-12 * cost, axis=1),  # ties: higher perf, then cheaper
    }

    def methods(mask: np.ndarray) -> dict[str, dict[str, float]]:
        out = {"random": _summary(perf[mask].mean(1), cost[mask].mean(1), rew[mask].mean(1))}
        for name, idx in choice.items():
            out[name] = _summary(_pick(perf[mask], idx[mask]), _pick(cost[mask], idx[mask]), _pick(rew[mask], idx[mask]))
        return {m: out[m] for m in METHODS}

    overall = methods(np.ones(n, dtype=bool))
    per_task = {t: methods(test.tasks == t) for t in sorted(set(test.tasks))}
    bs, orc, rt = (overall[m]["reward"] for m in ("best_single", "oracle", "router"))
    dist = np.bincount(choice["router"], minlength=len(test.candidates)) / max(n, 1)
    return {
        "n_queries": int(n),
        "candidates": list(test.candidates),
        "scenario": {"alpha": test.alpha, "beta": test.beta},
        "best_single": test.candidates[best_single_index(train)],
        "overall": overall,
        "per_task": per_task,
        "gap_recovered": float((rt - bs) / (orc - bs)) if orc - bs > 1e-12 else None,
        "routing_distribution": {c: float(s) for c, s in zip(test.candidates, dist, strict=True)},
    }


def render_markdown(metrics: dict) -> str:
    lines = [
        f"Evaluation on {metrics['n_queries']} held-out queries; scenario alpha={metrics['scenario']['alpha']}, "
        f"beta={metrics['scenario']['beta']}; best single candidate (chosen on train): `{metrics['best_single']}`.",
        "",
        "| task | method | performance | cost (USD/query) | reward |",
        "|---|---|---|---|---|",
    ]
    for task, block in [("**overall**", metrics["overall"]), *metrics["per_task"].items()]:
        for m in METHODS:
            v = block[m]
            lines.append(f"| {task} | {m} | {v['performance']:.3f} | {v['cost']:.6f} | {v['reward']:.3f} |")
    gr = metrics["gap_recovered"]
    lines += ["", f"Oracle gap recovered by the router: {'n/a' if gr is None else f'{gr:.3f}'}.",
              "Routing distribution: " + ", ".join(f"`{c}` {s:.0%}" for c, s in metrics["routing_distribution"].items())]
    return "\n".join(lines) + "\n"


def rich_table(metrics: dict):
    from rich.table import Table

    t = Table(title=f"Router evaluation ({metrics['n_queries']} test queries, best single: {metrics['best_single']})")
    for col in ("task", "method", "performance", "cost $/q", "reward"):
        t.add_column(col, justify="right" if col not in ("task", "method") else "left")
    for task, block in [("overall", metrics["overall"]), *metrics["per_task"].items()]:
        for i, m in enumerate(METHODS):
            v = block[m]
            t.add_row(task if i == 0 else "", m, f"{v['performance']:.3f}", f"{v['cost']:.6f}", f"{v['reward']:.3f}",
                      end_section=i == len(METHODS) - 1)
    return t


def plot_cost_quality(metrics: dict, test: RoutingData, path: Path) -> Path:
    """Cost vs performance of every single candidate and every method, on the test split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perf = np.nan_to_num(test.perf, nan=0.0)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter(test.cost.mean(0), perf.mean(0), c="lightgray", edgecolor="gray", label="single candidates")
    for c, x, y in zip(test.candidates, test.cost.mean(0), perf.mean(0), strict=True):
        ax.annotate(c, (x, y), fontsize=7, color="gray", xytext=(3, 3), textcoords="offset points")
    markers = {"random": "x", "best_single": "s", "router": "*", "oracle": "^"}
    for m in METHODS:
        v = metrics["overall"][m]
        ax.scatter(v["cost"], v["performance"], marker=markers[m], s=140 if m == "router" else 70, label=m, zorder=3)
    ax.set_xlabel("mean cost per query (USD)")
    ax.set_ylabel("mean performance")
    ax.set_title("Cost vs quality on the test split")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_metrics(metrics: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path
