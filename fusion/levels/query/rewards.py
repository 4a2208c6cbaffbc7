"""The routing objective: reward = alpha * perf - beta * cost, min-max normalised per task (FusionFactory)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# name -> (alpha, beta)
SCENARIOS: dict[str, tuple[float, float]] = {
    "performance_first": (1.0, 0.0),
    "balance": (0.5, 0.5),
    "cost_first": (0.2, 0.8),
}
#: the scenario whose reward is the LLM judge's score (the log must have judge scores)
JUDGE_SCENARIO = "llm_judge"
SCENARIO_NAMES = (*SCENARIOS, JUDGE_SCENARIO)


@dataclass(frozen=True)
class Scenario:
    """What routing optimises: ``alpha * perf_n - beta * cost_n`` (objective ``"reward"``), or the judge score
    (objective ``"judge"``, the ``llm_judge`` scenario)."""

    name: str
    alpha: float
    beta: float
    objective: str = "reward"


def resolve_scenario(name: str = "performance_first", alpha: float | None = None,
                     beta: float | None = None) -> Scenario:
    """The one resolution of a scenario: a named one (:data:`SCENARIO_NAMES`), or custom weights (both
    ``alpha`` and ``beta``, any name). Raises ValueError naming what is wrong."""
    if (alpha is None) != (beta is None):
        raise ValueError("scenario: give both alpha and beta, or neither (to use the named scenario's)")
    if alpha is not None and beta is not None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"scenario weights must be >= 0, got alpha={alpha}, beta={beta}")
        return Scenario(name, float(alpha), float(beta))
    if name == JUDGE_SCENARIO:
        return Scenario(name, 1.0, 0.0, "judge")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)} (or give alpha and beta)")
    return Scenario(name, *SCENARIOS[name])


@dataclass
class TaskNormaliser:
    """Per-task min/max of performance and cost, fitted on training rows and reused unchanged on test rows."""

    perf: dict[str, tuple[float, float]] = field(default_factory=dict)
    cost: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def fit(cls, tasks: np.ndarray, perf: np.ndarray, cost: np.ndarray) -> TaskNormaliser:
        """``tasks``: (n,) task per query; ``perf``/``cost``: (n, c) matrices (NaN where unknown)."""
        out = cls()
        for t in pd.unique(tasks):
            m = tasks == t
            out.perf[str(t)] = _minmax(perf[m])
            out.cost[str(t)] = _minmax(cost[m])
        return out

    def transform(self, tasks: np.ndarray, perf: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.empty_like(perf, dtype=float)
        c = np.empty_like(cost, dtype=float)
        for t in pd.unique(tasks):
            m = tasks == t
            # a task unseen in training: normalise with its own range (and say nothing is learned about it)
            pr = self.perf.get(str(t)) or _minmax(perf[m])
            cr = self.cost.get(str(t)) or _minmax(cost[m])
            p[m] = _scale(perf[m], pr, degenerate="identity")
            c[m] = _scale(cost[m], cr, degenerate="zero")
        return p, c

    def to_dict(self) -> dict:
        return {"perf": {k: list(v) for k, v in self.perf.items()}, "cost": {k: list(v) for k, v in self.cost.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> TaskNormaliser:
        return cls(perf={k: tuple(v) for k, v in d["perf"].items()}, cost={k: tuple(v) for k, v in d["cost"].items()})


def _minmax(x: np.ndarray) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (0.0, 0.0)
    return (float(x.min()), float(x.max()))


def _scale(x: np.ndarray, rng: tuple[float, float], degenerate: str) -> np.ndarray:
    """Min-max scale into [0, 1]. A range with no spread on train cannot be fitted: performance (already on a
    0..1 scale) then keeps its raw value, and cost (no signal between candidates) becomes 0."""
    lo, hi = rng
    if hi - lo <= 1e-12:
        if degenerate == "identity":
            return np.clip(x, 0.0, 1.0)
        return np.where(np.isfinite(x), 0.0, np.nan)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def reward(perf_n: np.ndarray, cost_n: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return alpha * perf_n - beta * cost_n
