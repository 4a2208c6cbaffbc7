"""kNN router: a candidate's utility is the mean reward of the k nearest training queries (cosine).

``k`` and the neighbourhood (``scope``: all training queries, or only those of the same task) are chosen on a
validation split of the training data unless fixed in the parameters; the final model is refitted on all of it.
"""

from __future__ import annotations

import logging

import numpy as np

from fusion.routers.base import ROUTERS, Router
from fusion.routers.data import RoutingData
from fusion.routers.features import routed_value

logger = logging.getLogger(__name__)

K_GRID = (1, 3, 5, 10, 20, 40, 80)


def _normalise(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _similarities(Xtr_n, ttr, Xq, tq, scope: str) -> np.ndarray:
    """(q, n) cosine similarity of each query to each (already normalised) training row; with scope='task' rows
    of another task are -inf (a task unseen in training keeps every row)."""
    sims = _normalise(Xq) @ Xtr_n.T
    if scope == "task" and tq is not None:
        same = np.asarray(tq).astype(str)[:, None] == np.asarray(ttr).astype(str)[None, :]
        same[~same.any(1)] = True
        sims = np.where(same, sims, -np.inf)
    return sims


def _top_mean(sims: np.ndarray, ytr: np.ndarray, k: int) -> np.ndarray:
    """Mean target of the k most similar training rows (fewer when a task has fewer than k)."""
    k = min(k, sims.shape[1])
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.isfinite(np.take_along_axis(sims, top, 1)).astype(np.float64)
    w /= np.maximum(w.sum(1, keepdims=True), 1)
    return np.einsum("qk,qkc->qc", w, ytr[top])


@ROUTERS.register("knn")
class KNNRouter(Router):
    name = "knn"

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        k, scope = self.params.get("k"), self.params.get("scope")
        if k is not None and int(k) < 1:
            raise ValueError(f"knn: k must be >= 1, got {k}")
        if scope not in (None, "all", "task"):
            raise ValueError(f"knn: scope must be 'all' or 'task', got {scope!r}")
        if k is None or scope is None:
            fit, val = self.selection_split(data, val)
            y, fit_n, target = fit.rewards_filled(), _normalise(fit.X), val.rewards_filled()
            best = None
            for s in [scope] if scope else ["all", "task"]:
                sims = _similarities(fit_n, fit.tasks, val.X, val.tasks, s)
                for kk in [int(k)] if k else [g for g in K_GRID if g <= len(fit)]:
                    score = routed_value(_top_mean(sims, y, kk), target)
                    if best is None or score > best[0] + 1e-12:
                        best = (score, kk, s)
            _, k, scope = best
            logger.info("knn: chose k=%d scope=%s on %d validation queries (value %.4f)", k, scope, len(val), best[0])
        self.state = {"X": _normalise(data.X), "y": data.rewards_filled(), "tasks": np.asarray(data.tasks).astype(str),
                      "k": int(k), "scope": scope}
        self.meta["selected"] = {"k": int(k), "scope": scope}

    def predict_utility(self, X, tasks=None, texts=None) -> np.ndarray:
        s = self.state
        return _top_mean(_similarities(s["X"], s["tasks"], X, tasks, s["scope"]), s["y"], s["k"])
