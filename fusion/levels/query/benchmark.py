"""``fusion route benchmark``: every router under every scenario on one routing log, honestly evaluated.

Routers are fitted on the training split (model selection on the log's ``val`` split when it has one, else on a
validation split carved from train) and scored on the test split; with ``cv=K`` the queries are instead split
into K folds stratified by task, and each metric is reported as mean and standard deviation over the folds.
For every learned router a sweep of the cost weight (``argmax(perf_hat - lam * cost_hat)``, the budget router's
rule) traces its cost-quality curve, summarised by its non-decreasing convex hull and AIQ; on a two-candidate
pool also APGR and CPT(50%/80%).

Protocols (``BenchConfig.protocol``):

* ``standard``: the routers see the test queries' tasks;
* ``task-blind``: the test queries' tasks are hidden from the routers, which infer them (the baselines that need
  labels, ``task-best``, still get them and are marked ``needs_labels``); with ``blind_training`` the routers
  are also trained without labels (``task_labels: false``);
* ``leave-task-out``: each task is held out in turn (trained on all the queries of the other tasks, tested on
  every query of it, its label hidden); per-task results and their mean.

In the standard protocol each learned router is also scored served without the test queries' tasks (the same
fitted router; ``without_task``: performance, cost, reward and the share of each path), as a client that sends no
task would use it. Every record carries the paired-bootstrap 95% interval of its per-query difference to best-single and to task-best
(performance and reward), pooled over the folds (CV) or stratified by held-out task (leave-task-out), and the share
of queries routed by each path (``route_paths``: ``task``, ``inferred``, ``text-only``, ``prior``).

The ``floor`` scenario wraps each learned router in the budget router's floor mode (the cheapest routing whose
cross-fitted performance stays at or above ``floor`` x best-single's, the cost weight chosen on the training
queries only) and reports the cost saved against best-single and the share of its performance kept.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from fusion.levels.query.base import ROUTERS, make_router
from fusion.levels.query.baselines import BASELINES
from fusion.levels.query.budget import CostModel, lambda_scale, penalised
from fusion.levels.query.data import RoutingData
from fusion.levels.query.evaluation import MEASURES, outcome, served_without_task
from fusion.levels.query.features import choose
from fusion.levels.query.metrics import (
    aiq,
    apgr,
    cpt,
    gap_recovered,
    non_decreasing_convex_hull,
    paired_bootstrap,
)
from fusion.levels.query.rewards import resolve_scenario
from fusion.levels.query.task_inference import path_shares

logger = logging.getLogger(__name__)

SWEEP_POINTS = 25
#: the benchmark-only scenario: each learned router at the least cost that keeps best-single's performance
FLOOR = "floor"
PROTOCOLS = ("standard", "task-blind", "leave-task-out")
#: per-query values kept for the bootstrap intervals
PER_QUERY = ("performance", "reward")


@dataclass
class BenchConfig:
    routers: dict[str, dict] = field(default_factory=lambda: {"knn": {}, "mlp": {}, "svm": {}})
    scenarios: tuple[str, ...] = ("performance_first", "balance", "cost_first")
    cv: int | None = None
    seed: int = 0
    sweep: bool = True
    protocol: str = "standard"
    #: with task-blind: train the routers without task labels too (``task_labels: false``)
    blind_training: bool = False
    #: the floor scenario's quality floor, as a share of best-single's cross-fitted performance
    floor: float = 1.0
    #: bootstrap resamples of each interval (0: none)
    bootstrap: int = 1000


def _params(name: str, cfg: BenchConfig) -> dict:
    params = dict(cfg.routers.get(name, {}))
    if cfg.blind_training and "task_labels" in ROUTERS.get(name).Params.model_fields:
        params["task_labels"] = False
    return params


def _fit_router(name: str, scenario: str, cfg: BenchConfig, train: RoutingData, val: RoutingData | None):
    if scenario == FLOOR and name not in BASELINES:
        router = make_router("budget", seed=cfg.seed, base=name, base_params=_params(name, cfg), floor=cfg.floor)
    else:
        router = make_router(name, seed=cfg.seed, **_params(name, cfg))
    return router.fit(train, val)


def _one_split(data: RoutingData, train_mask: np.ndarray, test_mask: np.ndarray, cfg: BenchConfig,
               val_mask: np.ndarray | None = None, hide_tasks: bool = False) -> tuple[list[dict], dict, dict]:
    """Records for every (router, scenario) on one train/test split, the sweep curves, and the per-query
    values of each (scenario, router) for the intervals. ``hide_tasks``: the routers do not see the test
    queries' tasks (but the baselines that need labels)."""
    records, sweeps, per_query = [], {}, {}
    names = [*BASELINES, *[r for r in cfg.routers if r not in BASELINES]]
    for scenario in cfg.scenarios:
        floor = scenario == FLOOR
        d = data.under(resolve_scenario("performance_first" if floor else scenario), fit_mask=train_mask)
        train, test = d.subset(train_mask), d.subset(test_mask)
        val = d.subset(val_mask) if val_mask is not None and val_mask.any() else None
        rows = np.arange(len(test))
        results = {}
        for name in names:
            t0 = time.perf_counter()
            router = _fit_router(name, scenario, cfg, train, val)
            fit_s = time.perf_counter() - t0
            needs_labels = ROUTERS.get(name).needs_labels
            if name == "oracle":
                U, paths = router.predict_data(test), None
            else:
                U, paths = router.predict(test.X, test.tasks if needs_labels or not hide_tasks else None, test.texts)
            idx = choose(U)
            results[name] = {**outcome(test, idx), "fit_s": fit_s}
            if paths is not None:
                results[name]["route_paths"] = path_shares(paths)
            if hide_tasks and needs_labels:
                results[name]["needs_labels"] = True
            if not hide_tasks and name not in BASELINES and not floor:  # the same router served without task
                w = served_without_task(router, test)  # flat, so that folds average key by key
                results[name]["without_task"] = {**{m: w[m] for m in MEASURES},
                                                 **{f"path_{p}": v for p, v in w["route_paths"].items()}}
            if floor and name not in BASELINES:
                results[name]["floor_calibration"] = router.meta.get("floor", {})
            per_query[(scenario, name)] = {"performance": np.nan_to_num(test.perf, nan=0.0)[rows, idx],
                                           "reward": test.rewards_filled()[rows, idx]}
            if cfg.sweep and scenario == "performance_first" and name not in ("random", "oracle"):
                sweeps[name] = _sweep(router, train, test, None if hide_tasks and not needs_labels else test.tasks)
        bs, tb, orc = (results[n]["reward"] for n in ("best-single", "task-best", "oracle"))
        bsr = results["best-single"]
        for name in names:
            r = results[name]
            rec = {
                "router": name, "scenario": scenario, **r,
                "gain_over_best_single": r["reward"] - bs, "gain_over_task_best": r["reward"] - tb,
                "performance_gain_over_best_single": r["performance"] - bsr["performance"],
                "gap_recovered": gap_recovered(r["reward"], bs, orc),
            }
            if floor:
                rec["cost_saving_vs_best_single"] = 1.0 - r["cost"] / bsr["cost"] if bsr["cost"] > 0 else None
                rec["performance_share_of_best_single"] = (r["performance"] / bsr["performance"]
                                                           if bsr["performance"] > 0 else None)
            records.append(rec)
    return records, sweeps, per_query


def _sweep(router, train: RoutingData, test: RoutingData, tasks: np.ndarray | None) -> dict:
    """Cost-quality points of ``argmax(perf_hat - lam * cost_hat)`` over a grid of cost weights."""
    U = router.predict_utility(test.X, tasks, test.texts)
    C = CostModel.fit(train)(test.tasks, len(test))
    scale = lambda_scale(U, C)
    lams = np.concatenate([[0.0], scale * np.logspace(-2, 3, SWEEP_POINTS - 1)])
    perf = np.nan_to_num(test.perf, nan=0.0)
    rows = np.arange(len(test))
    pts = []
    for lam in lams:
        idx = np.argmax(penalised(U, C, lam), axis=1)
        pts.append((float(test.cost[rows, idx].mean()), float(perf[rows, idx].mean()),
                    (np.bincount(idx, minlength=len(test.candidates)) / len(idx)).tolist()))
    return {"lambda": lams.tolist(), "cost": [p[0] for p in pts], "performance": [p[1] for p in pts],
            "shares": [p[2] for p in pts]}


def _scalar_keys(rec: dict) -> list[str]:
    return [k for k, v in rec.items() if isinstance(v, int | float) and not isinstance(v, bool)]


def _aggregate(fold_records: list[list[dict]]) -> list[dict]:
    """Mean over folds of every scalar, with ``<key>_std``; per-task values are averaged too."""
    out = []
    for group in zip(*fold_records, strict=True):
        rec = dict(group[0])
        for k in _scalar_keys(group[0]):
            vals = np.array([g[k] for g in group if g.get(k) is not None], dtype=float)
            rec[k] = float(vals.mean()) if len(vals) else None
            rec[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        tasks = sorted({t for g in group for t in g["per_task"]})
        rec["per_task"] = {t: {m: float(np.mean([g["per_task"][t][m] for g in group if t in g["per_task"]]))
                               for m in ("performance", "cost", "reward")} for t in tasks}
        rec["routing_distribution"] = {c: float(np.mean([g["routing_distribution"][c] for g in group]))
                                       for c in group[0]["routing_distribution"]}
        for block in ("route_paths", "without_task"):  # shares and means over the folds
            if block in group[0]:
                keys = sorted({p for g in group for p in g.get(block, {})})
                rec[block] = {p: float(np.mean([g.get(block, {}).get(p, 0.0) for g in group])) for p in keys}
        rec["folds"] = len(group)
        out.append(rec)
    return out


def _curve_summaries(sweeps: dict, test: RoutingData, train: RoutingData) -> dict:
    perf = np.nan_to_num(test.perf, nan=0.0)
    singles = {c: (float(test.cost[:, i].mean()), float(perf[:, i].mean())) for i, c in enumerate(test.candidates)}
    costs = [c for c, _ in singles.values()] + [c for s in sweeps.values() for c in s["cost"]]
    rng = (min(costs), max(costs))
    out = {"singles": {c: {"cost": v[0], "performance": v[1]} for c, v in singles.items()}, "cost_range": rng,
           "routers": {}}
    two = len(test.candidates) == 2
    if two:
        strong = int(np.argmax(np.nan_to_num(train.cost, nan=0.0).mean(0)))
        weak_perf, strong_perf = singles[test.candidates[1 - strong]][1], singles[test.candidates[strong]][1]
    for name, s in sweeps.items():
        hc, hq = non_decreasing_convex_hull(s["cost"], s["performance"])
        summary = {"aiq": aiq(s["cost"], s["performance"], rng), "hull_cost": hc.tolist(),
                   "hull_performance": hq.tolist(), **s}
        if two:
            shares = [sh[strong] for sh in s["shares"]]
            summary.update(apgr=apgr(shares, s["performance"], weak_perf, strong_perf),
                           cpt50=cpt(shares, s["performance"], weak_perf, strong_perf, 0.5),
                           cpt80=cpt(shares, s["performance"], weak_perf, strong_perf, 0.8))
        out["routers"][name] = summary
    return out


def _intervals(records: list[dict], per_query: list[dict], groups: np.ndarray | None, cfg: BenchConfig) -> None:
    """Add to each record the paired-bootstrap 95% interval of its per-query difference to best-single and to
    task-best (``ci95``: measure_vs_baseline -> mean, lo, hi), over the queries of every split."""
    if not cfg.bootstrap:
        return
    for rec in records:
        key = (rec["scenario"], rec["router"])
        ci = {}
        for base in ("best-single", "task-best"):
            if rec["router"] == base:
                continue
            for m in PER_QUERY:
                diff = np.concatenate([pq[key][m] - pq[(rec["scenario"], base)][m] for pq in per_query])
                ci[f"{m}_vs_{base}"] = paired_bootstrap(diff, groups, n_boot=cfg.bootstrap, seed=cfg.seed)
        rec["ci95"] = ci


def run_benchmark(data: RoutingData, cfg: BenchConfig) -> dict:
    """All records (one per router x scenario) and the cost-quality curves, on ``data`` (all splits), under the
    protocol of ``cfg`` (see the module doc)."""
    for s in cfg.scenarios:
        if s != FLOOR:
            resolve_scenario(s)  # an unknown name fails here, before any fit
    if cfg.protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {cfg.protocol!r}; known: {', '.join(PROTOCOLS)}")
    if cfg.blind_training and cfg.protocol == "standard":
        raise ValueError("blind_training (--blind-training) goes with the task-blind protocol")
    result: dict = {"candidates": list(data.candidates), "n_queries": len(data), "protocol": cfg.protocol,
                    "config": {"routers": cfg.routers, "scenarios": list(cfg.scenarios), "cv": cfg.cv,
                               "seed": cfg.seed, "protocol": cfg.protocol, "blind_training": cfg.blind_training,
                               "floor": cfg.floor, "bootstrap": cfg.bootstrap}}
    hide = cfg.protocol != "standard"
    blind = " (tasks hidden from the routers" + (", trained without labels)" if cfg.blind_training else ")")
    if cfg.protocol == "leave-task-out":
        tasks = sorted(set(data.tasks))
        if len(tasks) < 2:
            raise ValueError(f"leave-task-out needs at least 2 tasks, the log has {len(tasks)}")
        splits = [(data.tasks != t, data.tasks == t) for t in tasks]
        groups = np.concatenate([np.full(int(test.sum()), t, dtype=object) for (_, test), t in zip(splits, tasks,
                                                                                                   strict=True)])
        result.update(evaluation=f"leave-task-out over {len(tasks)} tasks (each trained on the others)",
                      held_out_tasks=tasks)
    elif cfg.cv:
        folds = data.fold_ids(int(cfg.cv), cfg.seed)
        splits = [(folds != f, folds == f) for f in range(int(cfg.cv))]
        groups = None
        result["evaluation"] = f"{cfg.cv}-fold cross-validation stratified by task (seed {cfg.seed})" + \
            (blind if hide else "")
    else:
        if not (data.splits == "test").any():
            raise ValueError("the log has no test split: pass cv=K (--cv K) to cross-validate instead")
        train_mask, test_mask, val_mask = data.splits == "train", data.splits == "test", data.splits == "val"
        train_texts = set(data.texts[train_mask])
        overlap = np.array([t in train_texts for t in data.texts[test_mask]])
        recs, sweeps, pq = _one_split(data, train_mask, test_mask, cfg, val_mask if val_mask.any() else None, hide)
        _intervals(recs, [pq], None, cfg)
        result.update(records=recs, evaluation="official test split" + (blind if hide else ""),
                      n_train=int(train_mask.sum()), n_test=int(test_mask.sum()),
                      n_test_seen_in_train=int(overlap.sum()))
        result["curves"] = _curve_summaries(sweeps, data.subset(test_mask), data.subset(train_mask)) \
            if sweeps else None
        return result
    per_fold, per_query, curves = [], [], None
    for f, (train_mask, test_mask) in enumerate(splits):
        logger.info("fold %d/%d", f + 1, len(splits))
        recs, sweeps, pq = _one_split(data, train_mask, test_mask, cfg, hide_tasks=hide)
        per_fold.append(recs)
        per_query.append(pq)
        if f == 0 and sweeps:
            curves = _curve_summaries(sweeps, data.subset(test_mask), data.subset(train_mask))
    result["records"] = _aggregate(per_fold)
    _intervals(result["records"], per_query, groups, cfg)
    result["curves"] = curves
    return result
