"""Evaluating routers: the trained routers against the baselines on held-out queries (the numbers only; their
presentation is :mod:`fusion.levels.query.report`).

Per task and overall: raw performance (errors count as 0), cost in USD per query, and the scenario's reward
(errors count as the lowest reward, :meth:`RoutingData.rewards_filled`). The baselines are the registry's own
routers fitted on the training split: ``best-single``, ``task-best`` (the dataset oracle strong routers must
beat) and ``oracle`` (per-query best, an upper bound); ``random`` is the *expectation* over a uniformly random
candidate (no sampling noise; the benchmark's ``random`` is the seeded router). :func:`outcome` is the one scoring of a routing decision, shared with
``fusion route benchmark``.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np
import pandas as pd

from fusion.core.heldout import per_query_table
from fusion.core.stats import difference
from fusion.levels.query.base import Router, make_router
from fusion.levels.query.baselines import BASELINES
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import choose
from fusion.levels.query.metrics import gap_recovered
from fusion.levels.query.task_inference import path_shares

logger = logging.getLogger(__name__)

MEASURES = ("performance", "cost", "reward")


def per_query(test: RoutingData, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Performance, cost and reward of choosing candidate ``idx[i]`` for query ``i`` (one value per query)."""
    rows = np.arange(len(idx))
    return {"performance": np.nan_to_num(test.perf, nan=0.0)[rows, idx], "cost": test.cost[rows, idx],
            "reward": test.rewards_filled()[rows, idx]}


def outcome(test: RoutingData, idx: np.ndarray) -> dict:
    """Mean performance, cost and reward of choosing candidate ``idx[i]`` for query ``i``; per task too, and the
    share of queries sent to each candidate."""
    share = np.bincount(idx, minlength=len(test.candidates)) / max(len(idx), 1)
    return _summary(per_query(test, idx), test, share)


def per_query_frame(test: RoutingData, values: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """The held-out rows of every method (``values``: method -> :func:`per_query`), in the layout every level's
    evaluation writes (:data:`fusion.core.heldout.PER_QUERY_COLUMNS`; no token counts here)."""
    return per_query_table("query", {
        m: pd.DataFrame({"query_id": [str(q) for q in test.query_ids], "task": [str(t) for t in test.tasks],
                         "performance": v["performance"], "cost": v["cost"], "reward": v["reward"]})
        for m, v in values.items()})


def _random_values(test: RoutingData) -> dict[str, np.ndarray]:
    return {"performance": np.nan_to_num(test.perf, nan=0.0).mean(1), "cost": test.cost.mean(1),
            "reward": test.rewards_filled().mean(1)}


def _expected_random(test: RoutingData) -> dict:
    return _summary(_random_values(test), test, np.full(len(test.candidates), 1.0 / len(test.candidates)))


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


def evaluate_routers(routers: dict[str, Router], train: RoutingData, test: RoutingData,
                     task_blind: bool = False, values: dict | None = None) -> dict:
    """Every router in ``routers`` (name -> fitted router) and the baselines on ``test``.

    Returns ``overall`` and ``per_task`` blocks (method -> performance, cost, reward), the methods in order
    (baselines first), per-router ``gap_recovered`` and gains over best-single / task-best, each method's reward
    against best-single per query (``vs_best_single``: the mean difference, its 95% interval and its word), each method's
    ``routing_distribution``, and ``best_router``: the learned router with the highest mean reward; ``values``, when
    given, receives each method's per-query values (:func:`per_query`: what :func:`per_query_frame` writes). With
    ``task_blind``, also ``task_blind``: each learned router served without the queries' task (performance, cost,
    reward and ``route_paths``, the share of queries routed by each path)."""
    if len(test) == 0:
        raise ValueError("evaluation split has no queries")
    values = {} if values is None else values
    values["random"] = _random_values(test)
    results = {"random": _expected_random(test)}
    fitted = {name: make_router(name).fit(train) for name in BASELINES[1:]}
    chosen = {name: choose(base.predict_data(test)) for name, base in fitted.items()}
    for name, router in routers.items():  # a trained baseline (e.g. task-best) replaces its twin: the same fit
        if list(router.candidates) != list(test.candidates):
            raise ValueError(f"router {name!r} was trained on candidates {router.candidates}, the evaluation log "
                             f"has {test.candidates}")
        chosen[name] = choose(router.predict_data(test))
    for name, idx in chosen.items():
        results[name], values[name] = outcome(test, idx), per_query(test, idx)
    blind = {name: served_without_task(router, test) for name, router in routers.items()} if task_blind else {}
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
        "vs_best_single": {m: against(values[m]["reward"], values["best-single"]["reward"])
                           for m in methods if m != "best-single"},
        "gain_over_task_best": {m: results[m]["reward"] - tb for m in learned},
        "routing_distribution": {m: results[m]["routing_distribution"] for m in methods},
        **({"task_blind": blind} if task_blind else {}),
    }


def against(values: np.ndarray, baseline: np.ndarray, n_boot: int = 1000, seed: int = 0) -> dict:
    """The mean per-query difference ``values - baseline`` with its paired-bootstrap 95% interval and its word
    (gain / loss / no evidence)."""
    return difference(values, baseline, n_boot=n_boot, seed=seed)


def served_without_task(router: Router, test: RoutingData) -> dict:
    """``router`` on ``test`` called without the queries' tasks, as a client that sends none: performance, cost,
    reward and ``route_paths`` (the share of queries routed by each path)."""
    U, paths = router.predict(test.X, None, test.texts)
    res = outcome(test, choose(U))
    return {**{k: res[k] for k in MEASURES}, "route_paths": path_shares(paths)}


def evaluate_router(router: Router, train: RoutingData, test: RoutingData, name: str = "router") -> dict:
    """:func:`evaluate_routers` for one router, under ``name``."""
    return evaluate_routers({name: router}, train, test)
