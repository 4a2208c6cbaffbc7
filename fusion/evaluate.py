"""Stage ``evaluate``: the trained routers against the baselines on held-out queries.

Per task and overall: raw performance (errors count as 0), cost in USD per query, and the scenario's reward
(errors count as the lowest reward, :meth:`RoutingData.rewards_filled`). The baselines are the registry's own
routers fitted on the training split: ``best-single``, ``task-best`` (the dataset oracle strong routers must
beat) and ``oracle`` (per-query best, an upper bound); ``random`` is the *expectation* over a uniformly random
candidate (no sampling noise; the benchmark's ``random`` is the seeded router). :func:`outcome` is the one scoring of a routing decision, shared with
``fusion route benchmark``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from fusion.route_metrics import gap_recovered
from fusion.routers.base import Router, make_router
from fusion.routers.data import RoutingData

logger = logging.getLogger(__name__)

BASELINES = ("random", "best-single", "task-best", "oracle")
MEASURES = ("performance", "cost", "reward")


def outcome(test: RoutingData, idx: np.ndarray) -> dict:
    """Mean performance, cost and reward of choosing candidate ``idx[i]`` for query ``i``; per task too, and the
    share of queries sent to each candidate."""
    rows = np.arange(len(idx))
    chosen = {"performance": np.nan_to_num(test.perf, nan=0.0)[rows, idx], "cost": test.cost[rows, idx],
              "reward": test.rewards_filled()[rows, idx]}
    share = np.bincount(idx, minlength=len(test.candidates)) / max(len(idx), 1)
    return _summary(chosen, test, share)


def _expected_random(test: RoutingData) -> dict:
    vals = {"performance": np.nan_to_num(test.perf, nan=0.0).mean(1), "cost": test.cost.mean(1),
            "reward": test.rewards_filled().mean(1)}
    return _summary(vals, test, np.full(len(test.candidates), 1.0 / len(test.candidates)))


def _summary(per_query: dict[str, np.ndarray], test: RoutingData, share: np.ndarray) -> dict:
    """Means overall and per task of per-query values, and the share of queries per candidate."""
    out: dict = {m: float(v.mean()) for m, v in per_query.items()}
    out["per_task"] = {t: {m: float(v[test.tasks == t].mean()) for m, v in per_query.items()}
                       for t in sorted(set(test.tasks))}
    out["routing_distribution"] = {c: float(s) for c, s in zip(test.candidates, share, strict=True)}
    return out


def split_fingerprint(data: RoutingData) -> str:
    """A short hash of the query ids of a split: two evaluations with the same fingerprint saw the same queries."""
    return hashlib.sha1("\n".join(sorted(map(str, data.query_ids))).encode()).hexdigest()[:12]


def evaluate_routers(routers: dict[str, Router], train: RoutingData, test: RoutingData) -> dict:
    """Every router in ``routers`` (name -> fitted router) and the baselines on ``test``.

    Returns ``overall`` and ``per_task`` blocks (method -> performance, cost, reward), the methods in order
    (baselines first), per-router ``gap_recovered`` and gains over best-single / task-best, each method's
    ``routing_distribution``, and ``best_router``: the learned router with the highest mean reward."""
    if len(test) == 0:
        raise ValueError("evaluation split has no queries")
    results = {"random": _expected_random(test)}
    fitted = {name: make_router(name).fit(train) for name in BASELINES[1:]}
    for name, base in fitted.items():
        results[name] = outcome(test, np.argmax(base.predict_data(test), axis=1))
    for name, router in routers.items():  # a trained baseline (e.g. task-best) replaces its twin: the same fit
        if list(router.candidates) != list(test.candidates):
            raise ValueError(f"router {name!r} was trained on candidates {router.candidates}, the evaluation log "
                             f"has {test.candidates}")
        results[name] = outcome(test, np.argmax(router.predict_data(test), axis=1))
    methods = [*BASELINES[:-1], *[r for r in routers if r not in BASELINES], "oracle"]
    bs, tb, orc = (results[m]["reward"] for m in BASELINES[1:])
    learned = list(routers)
    return {
        "n_queries": len(test),
        "split_fingerprint": split_fingerprint(test),
        "candidates": list(test.candidates),
        "scenario": {"alpha": test.alpha, "beta": test.beta, "objective": test.objective},
        "best_single": test.candidates[int(np.argmax(fitted["best-single"].state["mean"]))],
        "methods": methods,
        "routers": learned,
        "best_router": max(learned, key=lambda n: results[n]["reward"]) if learned else None,
        "overall": {m: {k: results[m][k] for k in MEASURES} for m in methods},
        "per_task": {t: {m: results[m]["per_task"][t] for m in methods} for t in sorted(set(test.tasks))},
        "gap_recovered": {m: gap_recovered(results[m]["reward"], bs, orc) for m in learned},
        "gain_over_best_single": {m: results[m]["reward"] - bs for m in learned},
        "gain_over_task_best": {m: results[m]["reward"] - tb for m in learned},
        "routing_distribution": {m: results[m]["routing_distribution"] for m in methods},
    }


def evaluate_router(router: Router, train: RoutingData, test: RoutingData, name: str = "router") -> dict:
    """:func:`evaluate_routers` for one router, under ``name``."""
    return evaluate_routers({name: router}, train, test)


def render_markdown(metrics: dict) -> str:
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
    lines += ["", "| router | gain over best-single | gain over task-best | oracle gap recovered | routing |",
              "|---|---|---|---|---|"]
    for m in metrics["routers"]:
        gr = metrics["gap_recovered"][m]
        dist = ", ".join(f"`{c}` {s:.0%}" for c, s in metrics["routing_distribution"][m].items() if s > 0)
        lines.append(f"| {m} | {metrics['gain_over_best_single'][m]:+.3f} | {metrics['gain_over_task_best'][m]:+.3f} "
                     f"| {'n/a' if gr is None else f'{gr:.3f}'} | {dist} |")
    return "\n".join(lines) + "\n"


def rich_table(metrics: dict):
    from rich.table import Table

    t = Table(title=f"Router evaluation ({metrics['n_queries']} test queries, best single: {metrics['best_single']},"
                    f" best router: {metrics['best_router']})")
    for col in ("task", "method", "performance", "cost $/q", "reward", "gap recovered"):
        t.add_column(col, justify="right" if col not in ("task", "method") else "left")
    methods = metrics["methods"]
    for task, block in [("overall", metrics["overall"]), *metrics["per_task"].items()]:
        for i, m in enumerate(methods):
            v = block[m]
            gr = metrics["gap_recovered"].get(m) if task == "overall" else None
            t.add_row(task if i == 0 else "", m, f"{v['performance']:.3f}", f"{v['cost']:.6f}", f"{v['reward']:.3f}",
                      "" if gr is None else f"{gr:.3f}", end_section=i == len(methods) - 1)
    return t


def plot_cost_quality(metrics: dict, test: RoutingData, path: Path) -> Path:
    """Cost vs performance of every single candidate, every baseline and every router, on the test split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    perf = np.nan_to_num(test.perf, nan=0.0)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter(test.cost.mean(0), perf.mean(0), c="lightgray", edgecolor="gray", label="single candidates")
    for c, x, y in zip(test.candidates, test.cost.mean(0), perf.mean(0), strict=True):
        ax.annotate(c, (x, y), fontsize=7, color="gray", xytext=(3, 3), textcoords="offset points")
    markers = {"random": "x", "best-single": "s", "task-best": "D", "oracle": "^"}
    for m in metrics["methods"]:
        v = metrics["overall"][m]
        learned = m in metrics["routers"]
        ax.scatter(v["cost"], v["performance"], marker=markers.get(m, "*"), s=140 if learned else 70, label=m,
                   zorder=3)
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
