"""Budget mode: route under a target mean cost per query, a target share of calls to a named candidate, or at the
least cost that keeps a quality floor.

RouteLLM calibrates one threshold so that a chosen share of queries goes to the strong model; here the same idea
works for N candidates. A base router trained on performance alone (Performance First) gives ``perf_hat`` (n, c);
a cost model gives ``cost_hat`` (n, c) in USD; a cost weight ``lam`` routes to ``argmax(perf_hat - lam * cost_hat)``.
``lam`` is calibrated by bisection on cross-fitted, out-of-fold utilities of the training queries (never the
test split) so that the routed system's mean true cost meets the target. For a share target a bias ``b`` on the named
candidate's utility is calibrated the same way. The chosen cost of ``argmax(u - lam * c)`` never increases with
``lam``, so the bisection is well posed.

The ``floor`` mode (RouteLLM's threshold calibration generalised to N candidates) turns it round: the cheapest
routing whose cross-fitted performance stays at or above ``floor`` times best-single's (best-single also
cross-fitted: the candidate with the best mean performance on each fold's training part, scored on the fold).
Like RouteLLM's threshold on the strong model, a bias on best-single's candidate (the anchor) is calibrated with
the cost weight: a query leaves best-single only when its router margin clears the bias. Performance is not
monotone in either, so a grid is scanned (:func:`calibrate_floor`) and the point with the lowest out-of-fold cost
among those meeting the floor is kept (always best-single meets it, so the floor holds out of fold).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from fusion.core.registry import UnknownNameError
from fusion.levels.query.base import ROUTERS, Router, RouterParamError, RouterParams, load_router, make_router
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import TaskPrior, choose

logger = logging.getLogger(__name__)

BISECTION_STEPS = 60


@dataclass
class CostModel:
    """Mean cost (USD) of each candidate per task on training queries; the overall mean for unseen tasks."""

    prior: TaskPrior

    @classmethod
    def fit(cls, data: RoutingData) -> CostModel:
        return cls(TaskPrior.fit(data.tasks, np.nan_to_num(data.cost, nan=0.0)))

    def __call__(self, tasks: np.ndarray | None, n: int) -> np.ndarray:
        return self.prior(tasks, n)


def _chosen(U: np.ndarray, M: np.ndarray) -> np.ndarray:
    idx = choose(U)
    return M[np.arange(len(idx)), idx]


def penalised(perf_hat: np.ndarray, cost_hat: np.ndarray, lam: float) -> np.ndarray:
    return perf_hat - lam * cost_hat


def lambda_scale(perf_hat: np.ndarray, cost_hat: np.ndarray) -> float:
    """A cost weight at which a typical utility gap equals a typical cost gap (the middle of a sweep)."""
    du = float(np.std(perf_hat)) or 1.0
    dc = float(np.std(cost_hat)) or float(np.mean(np.abs(cost_hat))) or 1.0
    return du / dc


def calibrate_cost_weight(perf_hat: np.ndarray, cost_hat: np.ndarray, true_cost: np.ndarray,
                          target_cost: float) -> float:
    """The smallest cost weight whose routed mean true cost is <= ``target_cost`` (bisection, log scale)."""
    if target_cost <= 0:
        raise ValueError(f"target cost must be positive, got {target_cost}")

    def cost_at(lam: float) -> float:
        return float(_chosen(penalised(perf_hat, cost_hat, lam), true_cost).mean())

    if cost_at(0.0) <= target_cost:
        return 0.0
    lo, hi = 0.0, lambda_scale(perf_hat, cost_hat)
    while cost_at(hi) > target_cost:
        hi *= 4
        if hi > 1e30:
            cheapest = float(np.min(true_cost.mean(0)))
            raise ValueError(f"target cost {target_cost:g} USD/query is below what routing can reach "
                             f"(the cheapest candidate costs {cheapest:g} on average)")
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if cost_at(mid) <= target_cost else (mid, hi)
    return hi


FLOOR_GRID = 60  # cost weights scanned (0 and log-spaced)
ANCHOR_GRID = 41  # biases on the anchor candidate scanned per cost weight (quantiles of its margin)


def calibrate_floor(perf_hat: np.ndarray, cost_hat: np.ndarray, true_perf: np.ndarray, true_cost: np.ndarray,
                    target_performance: float, anchor: int | None = None) -> tuple[float, float, dict]:
    """The routing ``argmax(perf_hat - lam * cost_hat + bias * [candidate == anchor])`` whose mean true cost is
    lowest among those whose mean true performance is at least ``target_performance``.

    RouteLLM's threshold calibration generalised: the anchor (best-single) is the strong model, and the bias is
    the threshold a query's router margin must clear to leave it; ``lam`` trades the cheaper alternatives among
    themselves. Scanned: 0 and ``FLOOR_GRID`` log-spaced cost weights x ``ANCHOR_GRID`` biases (from never to
    always the anchor; none without an anchor). When no point reaches the floor, the one with the best
    performance. Returns the cost weight, the bias and what was reached."""
    rows = np.arange(len(perf_hat))
    scale = lambda_scale(perf_hat, cost_hat)
    best, fallback = None, None
    qs = np.linspace(0.0, 1.0, ANCHOR_GRID)
    if anchor is not None:
        p_anc, c_anc = true_perf[:, anchor], true_cost[:, anchor]
    for lam in np.concatenate([[0.0], scale * np.logspace(-3, 4, FLOOR_GRID)]):
        V = penalised(perf_hat, cost_hat, lam)
        if anchor is None:
            idx = np.argmax(V, axis=1)
            points = [(0.0, float(true_perf[rows, idx].mean()), float(true_cost[rows, idx].mean()))]
        else:
            others = V.copy()
            others[:, anchor] = -np.inf
            alt = np.argmax(others, axis=1)
            margin = V[:, anchor] - others[rows, alt]  # the anchor wins when margin + bias >= 0
            p_alt, c_alt = true_perf[rows, alt], true_cost[rows, alt]
            biases = np.unique(np.concatenate([-np.quantile(margin, qs), [np.inf]]))
            to_anchor = margin[None, :] + biases[:, None] >= 0  # (biases, n)
            perf = np.where(to_anchor, p_anc, p_alt).mean(1)
            cost = np.where(to_anchor, c_anc, c_alt).mean(1)
            points = list(zip(biases.tolist(), perf.tolist(), cost.tolist(), strict=True))
        for bias, p, c in points:
            if p >= target_performance - 1e-12 and (best is None or c < best[3] - 1e-15):
                best = (float(lam), bias, p, c)
            if fallback is None or p > fallback[2] + 1e-12:
                fallback = (float(lam), bias, p, c)
    lam, bias, p, c = best or fallback
    return lam, bias, {"oof_performance": p, "oof_cost": c, "target_performance": float(target_performance),
                       "floor_met": best is not None}


def calibrate_share(U: np.ndarray, index: int, target_share: float) -> float:
    """The bias on candidate ``index`` whose routed share of calls is closest to ``target_share`` from below."""
    if not 0 <= target_share <= 1:
        raise ValueError(f"target share must be in [0, 1], got {target_share}")

    def share_at(b: float) -> float:
        V = U.copy()
        V[:, index] += b
        return float((np.argmax(V, axis=1) == index).mean())

    span = float(np.ptp(U)) + 1.0
    lo, hi = -span, span  # share_at(lo) = 0, share_at(hi) = 1
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share_at(mid) <= target_share else (lo, mid)
    return lo


def fold_of(X: np.ndarray, k: int) -> np.ndarray:
    """A stable fold number per query from its embedding (the same query always goes to the same fold)."""
    X = np.round(np.asarray(X, dtype=np.float32), 4)
    return np.array([zlib.crc32(row.tobytes()) % k for row in X], dtype=int)


class BudgetParams(RouterParams):
    base: str = Field("knn", description="the base router (trained on performance alone)")
    base_params: dict[str, Any] = Field({}, description="the base router's own parameters")
    target_cost: float | None = Field(None, gt=0, description="target mean cost per query (USD)")
    target_share: float | None = Field(None, ge=0, le=1, description="target share of calls to share_candidate")
    share_candidate: str | None = Field(None, description="the candidate whose share of calls is targeted")
    floor: float | None = Field(None, gt=0, description="quality floor: the cheapest routing whose cross-fitted "
                                "performance is at least this share of best-single's (1.0: best-single's)")
    calibration_folds: int = Field(5, ge=2, description="cross-fitted base routers (one per fold)")

    @model_validator(mode="before")
    @classmethod
    def _saved_base_keys(cls, data: Any) -> Any:
        """Routers saved before ``base_params`` gave the base router's parameters as ``base_<key>``."""
        if isinstance(data, dict) and any(k.startswith("base_") and k != "base_params" for k in data):
            data = dict(data)
            old = {k[len("base_"):]: data.pop(k) for k in list(data) if k.startswith("base_") and k != "base_params"}
            data["base_params"] = {**old, **data.get("base_params", {})}
        return data

    @model_validator(mode="after")
    def _one_target(self) -> BudgetParams:
        if sum(x is not None for x in (self.target_cost, self.target_share, self.floor)) != 1:
            raise ValueError("give exactly one of target_cost (USD/query), target_share or floor")
        return self


@ROUTERS.register("budget")
class BudgetRouter(Router):
    """A base router plus a calibrated cost weight (``target_cost`` USD/query) or a calibrated bias for one
    candidate (``target_share`` of calls to ``share_candidate``).

    Cross-fitted: the training queries are split into ``calibration_folds`` folds (by a hash of the query); one
    base router is trained per fold on the other folds, and every training query is scored by the router that
    never saw it. The cost weight is calibrated on those out-of-fold utilities, and a new query is routed by
    the fold router its hash selects, so the deployed utilities follow the very distribution the calibration
    saw (a single refitted router would not: its utilities shift with the extra data, and the target drifts).

    Parameters: :class:`BudgetParams` (the base router's own are checked against its ``Params``)."""

    name = "budget"
    Params = BudgetParams

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed=seed, **params)
        try:  # a bad base or base parameter fails here, before any training
            make_router(self.hp.base, seed=seed, **self.hp.base_params)
        except UnknownNameError as exc:
            raise RouterParamError(f"router 'budget': parameter 'base': {exc}") from None
        except RouterParamError as exc:
            raise RouterParamError(f"router 'budget': parameter 'base_params': {exc}") from None

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        target_cost, target_share = self.hp.target_cost, self.hp.target_share
        name = self.hp.share_candidate
        if target_share is not None and name not in data.candidates:
            raise ValueError(f"budget router: share_candidate {name!r} is not a candidate; "
                             f"candidates: {data.candidates}")
        perf = data.with_weights(1.0, 0.0)
        base_name, base_params = self.hp.base, self.hp.base_params
        k = self.hp.calibration_folds
        if len(perf) < 2 * k:
            raise ValueError(f"budget router: {len(perf)} training queries are too few for {k} folds")
        folds = fold_of(perf.X, k)
        U = np.zeros_like(perf.reward)
        C = np.zeros_like(perf.cost)
        self.bases, self.cost_models = [], []
        for f in range(k):
            held = folds == f
            part = perf.subset(~held)
            base = make_router(base_name, seed=self.seed, **base_params).fit(part)
            base.meta.update({k_: v for k_, v in self.meta.items() if k_ not in base.meta})
            cm = CostModel.fit(part)
            if held.any():
                U[held] = base.predict_data(perf.subset(held))
                C[held] = cm(perf.tasks[held], int(held.sum()))
            self.bases.append(base)
            self.cost_models.append(cm)
        if self.hp.floor is not None:
            raw = np.nan_to_num(perf.perf, nan=0.0)
            bs = np.zeros(len(perf))
            for f in range(k):  # cross-fitted best-single: best mean performance on the fold's training part
                held = folds == f
                if held.any():
                    bs[held] = raw[held][:, int(np.argmax(raw[~held].mean(0)))]
            target = float(self.hp.floor) * float(bs.mean())
            anchor = int(np.argmax(raw.mean(0)))  # best-single on all the training queries
            lam, bias, reached = calibrate_floor(U, C, raw, np.nan_to_num(perf.cost, nan=0.0), target, anchor)
            if not reached["floor_met"]:
                logger.warning("budget: no cost weight keeps the out-of-fold performance at the floor %.4f "
                               "(best %.4f): routing at the best performance instead", target,
                               reached["oof_performance"])
            if not np.isfinite(bias):  # always the anchor: a large finite bias (the state is saved as JSON too)
                bias = 1e6
            self.state = {"lam": lam, "bias": float(bias), "index": anchor, "folds": k}
            self.meta["floor"] = {**reached, "oof_best_single_performance": float(bs.mean()),
                                  "anchor": data.candidates[anchor]}
        elif target_cost is not None:
            lam = calibrate_cost_weight(U, C, np.nan_to_num(perf.cost, nan=0.0), float(target_cost))
            self.state = {"lam": lam, "bias": 0.0, "index": -1, "folds": k}
        else:
            index = data.candidates.index(name)
            self.state = {"lam": 0.0, "bias": calibrate_share(U, index, float(target_share)), "index": index,
                          "folds": k}
        self.meta["calibration"] = {**self.state, "n_calibration": len(perf)}
        logger.info("budget: calibrated %s on %d out-of-fold queries", self.meta["calibration"], len(perf))

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return self.predict(X, tasks, texts)[0]

    def predict(self, X, tasks=None, texts=None) -> tuple[np.ndarray, np.ndarray]:
        """The fold routers' utilities (each infers the task itself when a query has none; the paths are theirs)
        with the calibrated cost weight or bias."""
        X = np.asarray(X, dtype=np.float32)
        U = np.zeros((len(X), len(self.candidates)))
        paths = np.empty(len(X), dtype=object)
        folds = fold_of(X, self.state["folds"])
        for f in np.unique(folds):
            m = folds == f
            t = None if tasks is None else np.asarray(tasks)[m]
            s = None if texts is None else np.asarray(texts, dtype=object)[m]
            u, paths[m] = self.bases[f].predict(X[m], t, s)
            U[m] = penalised(u, self.cost_models[f](t, int(m.sum())), self.state["lam"])
        if self.state["index"] >= 0:
            U[:, self.state["index"]] += self.state["bias"]
        return U, paths

    def _save_state(self, path: Path) -> None:
        import joblib

        for f, base in enumerate(self.bases):
            base.save(path / f"base-{f}")
        joblib.dump({"state": self.state, "cost": [c.prior.to_dict() for c in self.cost_models]},
                    path / "budget.joblib")

    def _load_state(self, path: Path) -> None:
        import joblib

        saved = joblib.load(path / "budget.joblib")
        self.state = saved["state"]
        self.bases = [load_router(path / f"base-{f}") for f in range(self.state["folds"])]
        self.cost_models = [CostModel(TaskPrior.from_dict(c)) for c in saved["cost"]]
