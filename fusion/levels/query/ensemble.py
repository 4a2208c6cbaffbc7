"""Ensemble router: the weighted mean of member routers' calibrated utilities, the members chosen on validation.

Stacking by ensemble selection (Caruana et al., 2004): every candidate member is fitted on the fit part of the
training data; on the validation part each member's utilities are calibrated to the reward scale (one least-squares
line, ``a * u + b``, from its utilities to the realised rewards), and members are added greedily, with
replacement, while the mean of the chosen members' calibrated utilities routes better (``routed_value``). The
weights are how often each member was chosen. The chosen members are then refitted on all the training queries
(``refit``). Members that use task identity infer it themselves when a query comes without one; the ensemble
reports the path of its first such member.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from fusion.levels.query.base import (
    ROUTERS,
    Router,
    RouterParamError,
    SelectionParams,
    load_router,
    make_router,
)
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import routed_value
from fusion.levels.query.task_inference import PATH_TEXT

logger = logging.getLogger(__name__)

DEFAULT_MEMBERS = ("knn", "mlp", "mf", "cluster")


class EnsembleParams(SelectionParams):
    members: list[str] = Field(list(DEFAULT_MEMBERS), min_length=1, description="candidate member routers")
    member_params: dict[str, dict[str, Any]] = Field({}, description="each member's own parameters, by name")
    max_size: int = Field(10, ge=1, description="greedy selection steps at most (members may repeat)")
    refit: bool = Field(True, description="refit the chosen members on all the training queries")
    task_labels: bool = Field(True, description="False: members that use task identity never see the labels")

    @field_validator("members")
    @classmethod
    def _no_nesting(cls, v: list[str]) -> list[str]:
        bad = [m for m in v if m in ("ensemble", "budget", "oracle", "random")]
        if bad:
            raise ValueError(f"cannot be members: {', '.join(bad)}")
        if len(set(v)) != len(v):
            raise ValueError("members repeat")
        return v


@ROUTERS.register("ensemble")
class EnsembleRouter(Router):
    """The weighted mean of calibrated member utilities, members chosen greedily on validation (stacking)."""

    name = "ensemble"
    Params = EnsembleParams

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed=seed, **params)
        self.members: list[Router] = []
        for m in self.hp.member_params:
            if m not in self.hp.members:
                raise RouterParamError(f"router 'ensemble': parameter 'member_params': {m!r} is not a member")
        for m in self.hp.members:  # a bad member or member parameter fails here, before any training
            try:
                self._member(m)
            except (RouterParamError, KeyError, ValueError) as exc:
                raise RouterParamError(f"router 'ensemble': member {m!r}: {exc}") from None

    def _member(self, name: str) -> Router:
        """A fresh, unfitted member with its own parameters (no task labels when the ensemble has none) and the
        ensemble's metadata."""
        params = dict(self.hp.member_params.get(name, {}))
        member = make_router(name, seed=self.seed, **params)
        if member.uses_tasks and not self.hp.task_labels:
            member = make_router(name, seed=self.seed, **{**params, "task_labels": False})
        member.meta.update({k: v for k, v in self.meta.items() if k != "n_train"})
        return member

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        fit, val = self.selection_split(data, val)
        y = val.rewards_filled()
        fitted, calib, U = {}, {}, {}
        for name in self.hp.members:
            r = self._member(name)
            r.fit(fit, task_free=not self.hp.refit)  # scored with labels here; the refit learns to do without
            u = r.predict_data(val)
            a, b = np.polyfit(u.ravel(), y.ravel(), 1) if np.ptp(u) > 0 else (0.0, float(y.mean()))
            fitted[name], calib[name], U[name] = r, (float(a), float(b)), a * u + b
            logger.info("ensemble: member %s validation value %.4f", name, routed_value(u, y))
        counts: dict[str, int] = {}
        total = np.zeros_like(y)
        best_value, best_counts = -np.inf, {}
        for _ in range(self.hp.max_size):
            n = sum(counts.values())
            value, pick = max((routed_value((total + U[m]) / (n + 1), y), m) for m in self.hp.members)
            if value <= best_value + 1e-12:
                break
            counts[pick] = counts.get(pick, 0) + 1
            total = total + U[pick]
            best_value, best_counts = value, dict(counts)
        chosen = [m for m in self.hp.members if m in best_counts]
        size = sum(best_counts.values())
        logger.info("ensemble: chose %s (validation value %.4f)", best_counts, best_value)
        self.members = []
        for m in chosen:
            r = fitted[m]
            if self.hp.refit:
                r = self._member(m).fit(data)
            self.members.append(r)
        self.state = {"names": chosen, "weights": [best_counts[m] / size for m in chosen],
                      "calibration": [calib[m] for m in chosen]}
        self.meta["selected"] = {"members": {m: best_counts[m] for m in chosen}, "validation_value": best_value}

    def predict(self, X, tasks=None, texts=None) -> tuple[np.ndarray, np.ndarray]:
        U, paths = 0.0, None
        for r, w, (a, b) in zip(self.members, self.state["weights"], self.state["calibration"], strict=True):
            u, p = r.predict(X, tasks, texts)
            U = U + w * (a * u + b)
            if paths is None and r.uses_tasks:
                paths = p
        n = len(X) if X is not None else len(texts)
        return U, paths if paths is not None else np.full(n, PATH_TEXT, dtype=object)

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return self.predict(X, tasks, texts)[0]

    def _save_state(self, path: Path) -> None:
        import joblib

        for i, r in enumerate(self.members):
            r.save(path / f"member-{i}")
        joblib.dump(self.state, path / "ensemble.joblib")

    def _load_state(self, path: Path) -> None:
        import joblib

        self.state = joblib.load(path / "ensemble.joblib")
        self.members = [load_router(path / f"member-{i}") for i in range(len(self.state["names"]))]
