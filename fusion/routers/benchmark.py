"""``fusion route benchmark``: every router under every scenario on one routing log, honestly evaluated.

Routers are fitted on the training split (model selection on the log's ``val`` split when it has one, else on a
validation split carved from train) and scored on the test split; with ``cv=K`` the queries are instead split
into K folds stratified by task, and each metric is reported as mean and standard deviation over the folds.
For every learned router a sweep of the cost weight (``argmax(perf_hat - lam * cost_hat)``, the budget router's
rule) traces its cost-quality curve, summarised by its non-decreasing convex hull and AIQ; on a two-candidate
pool also APGR and CPT(50%/80%).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from fusion.rewards import resolve_scenario
from fusion.routers.base import make_router
from fusion.routers.baselines import BASELINES
from fusion.routers.budget import CostModel, lambda_scale, penalised
from fusion.routers.data import RoutingData
from fusion.routers.evaluation import outcome
from fusion.routers.metrics import aiq, apgr, cpt, gap_recovered, non_decreasing_convex_hull

logger = logging.getLogger(__name__)

SWEEP_POINTS = 25


@dataclass
class BenchConfig:
    routers: dict[str, dict] = field(default_factory=lambda: {"knn": {}, "mlp": {}, "svm": {}})
    scenarios: tuple[str, ...] = ("performance_first", "balance", "cost_first")
    cv: int | None = None
    seed: int = 0
    sweep: bool = True


def _one_split(data: RoutingData, train_mask: np.ndarray, test_mask: np.ndarray, cfg: BenchConfig,
               val_mask: np.ndarray | None = None) -> tuple[list[dict], dict]:
    """Records for every (router, scenario) on one train/test split, and the sweep curves."""
    records, sweeps = [], {}
    names = [*BASELINES, *[r for r in cfg.routers if r not in BASELINES]]
    for scenario in cfg.scenarios:
        d = data.under(resolve_scenario(scenario), fit_mask=train_mask)
        train, test = d.subset(train_mask), d.subset(test_mask)
        val = d.subset(val_mask) if val_mask is not None and val_mask.any() else None
        results = {}
        for name in names:
            t0 = time.perf_counter()
            router = make_router(name, seed=cfg.seed, **cfg.routers.get(name, {})).fit(train, val)
            fit_s = time.perf_counter() - t0
            idx = np.argmax(router.predict_data(test), axis=1)
            results[name] = {**outcome(test, idx), "fit_s": fit_s}
            if cfg.sweep and scenario == "performance_first" and name not in ("random", "oracle"):
                sweeps[name] = _sweep(router, train, test)
        bs, tb, orc = (results[n]["reward"] for n in ("best-single", "task-best", "oracle"))
        for name in names:
            r = results[name]
            records.append({
                "router": name, "scenario": scenario, **r,
                "gain_over_best_single": r["reward"] - bs, "gain_over_task_best": r["reward"] - tb,
                "performance_gain_over_best_single": r["performance"] - results["best-single"]["performance"],
                "gap_recovered": gap_recovered(r["reward"], bs, orc),
            })
    return records, sweeps


def _sweep(router, train: RoutingData, test: RoutingData) -> dict:
    """Cost-quality points of ``argmax(perf_hat - lam * cost_hat)`` over a grid of cost weights."""
    U = router.predict_data(test)
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


def run_benchmark(data: RoutingData, cfg: BenchConfig) -> dict:
    """All records (one per router x scenario) and the cost-quality curves, on ``data`` (all splits)."""
    for s in cfg.scenarios:
        resolve_scenario(s)  # an unknown name fails here, before any fit
    result: dict = {"candidates": list(data.candidates), "n_queries": len(data), "config": {
        "routers": cfg.routers, "scenarios": list(cfg.scenarios), "cv": cfg.cv, "seed": cfg.seed}}
    if cfg.cv:
        folds = data.fold_ids(int(cfg.cv), cfg.seed)
        per_fold, curves = [], None
        for f in range(int(cfg.cv)):
            logger.info("fold %d/%d", f + 1, cfg.cv)
            recs, sweeps = _one_split(data, folds != f, folds == f, cfg)
            per_fold.append(recs)
            if f == 0 and sweeps:
                curves = _curve_summaries(sweeps, data.subset(folds == f), data.subset(folds != f))
        result["records"] = _aggregate(per_fold)
        result["evaluation"] = f"{cfg.cv}-fold cross-validation stratified by task (seed {cfg.seed})"
        result["curves"] = curves
        return result
    if not (data.splits == "test").any():
        raise ValueError("the log has no test split: pass cv=K (--cv K) to cross-validate instead")
    train_mask, test_mask, val_mask = data.splits == "train", data.splits == "test", data.splits == "val"
    train_texts = set(data.texts[train_mask])
    overlap = np.array([t in train_texts for t in data.texts[test_mask]])
    recs, sweeps = _one_split(data, train_mask, test_mask, cfg, val_mask if val_mask.any() else None)
    result.update(records=recs, evaluation="official test split", n_train=int(train_mask.sum()),
                  n_test=int(test_mask.sum()), n_test_seen_in_train=int(overlap.sum()))
    result["curves"] = _curve_summaries(sweeps, data.subset(test_mask), data.subset(train_mask)) if sweeps else None
    return result
