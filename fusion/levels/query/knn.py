"""kNN router: a candidate's utility is the mean reward of the k nearest training queries (cosine).

``k`` and the neighbourhood (``scope``: all training queries, or only those of the same task) are chosen on a
validation split of the training data unless fixed in the parameters; the final model is refitted on all of it.
A same-task search multiplies the query by its task's training rows only (they are grouped once per fitted
router), and every k of the selection grid is scored from one ranking of the validation queries' neighbours.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field

from fusion.levels.query.base import ROUTERS, Router, TaskParams, ThreadCount
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import DEFAULT_THREADS, limit_threads, normalise_rows, routed_value

logger = logging.getLogger(__name__)

K_GRID = (1, 3, 5, 10, 20, 40, 80)


class NeighbourIndex:
    """The normalised training embeddings and targets, also grouped by task (contiguous copies), so that a
    same-task search only multiplies by that task's rows. A query of a task never seen in training (or with no
    task) searches every row, as does every query with ``scope='all'``."""

    def __init__(self, X_n: np.ndarray, y: np.ndarray, tasks: np.ndarray) -> None:
        self.X, self.y = np.ascontiguousarray(X_n, dtype=np.float32), np.asarray(y, dtype=np.float64)
        tasks = np.asarray(tasks).astype(str)
        self.vocab = sorted(set(tasks))
        self.pos = {t: i for i, t in enumerate(self.vocab)}
        self.groups = [(np.ascontiguousarray(self.X[tasks == t]), self.y[tasks == t]) for t in self.vocab]

    def codes(self, tasks: np.ndarray | None, n: int, scope: str) -> np.ndarray:
        """Per query, the position of its task's group, or -1: search every training row."""
        if scope != "task" or tasks is None:
            return np.full(n, -1, dtype=np.int64)
        return np.array([self.pos.get(str(t), -1) for t in tasks], dtype=np.int64)

    def neighbour_means(self, Xq: np.ndarray, tasks: np.ndarray | None, scope: str, ks: list[int]
                        ) -> list[np.ndarray]:
        """For each k of ``ks``, the (q, c) mean target of each query's k most similar (cosine) training rows
        in its neighbourhood (all of them when the neighbourhood has fewer than k)."""
        Q = normalise_rows(Xq)
        codes = self.codes(tasks, len(Q), scope)
        # a few queries (one request, or its task mixture): row by row, ~10% faster per query than the batch
        # machinery (docs/benchmarks.md)
        if len(ks) == 1 and len(Q) <= SMALL:
            return [self._few(Q, codes, ks[0])]
        out = [np.empty((len(Q), self.y.shape[1])) for _ in ks]
        for code in sorted(set(codes.tolist())):  # a handful of codes: cheaper than np.unique per call
            rows = np.flatnonzero(codes == code) if len(Q) > 1 else np.zeros(1, dtype=np.int64)
            Xt, yt = (self.X, self.y) if code < 0 else self.groups[code]
            for start in range(0, len(rows), CHUNK):
                r = rows[start:start + CHUNK]
                means = _top_means(Q[r] @ Xt.T, yt, ks)
                for o, m in zip(out, means, strict=True):
                    o[r] = m
        return out


    def _few(self, Q: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
        """:meth:`neighbour_means` for a handful of queries and one k, without the batch machinery."""
        out = np.empty((len(Q), self.y.shape[1]))
        for i, code in enumerate(codes.tolist()):
            Xt, yt = (self.X, self.y) if code < 0 else self.groups[code]
            sims = Xt @ Q[i]
            kk = min(k, len(sims))
            top = np.argpartition(-sims, kk - 1)[:kk] if kk < len(sims) else slice(None)
            out[i] = yt[top].mean(0)
        return out


CHUNK = 2048  # query rows per similarity block (bounds memory on large batches)
SMALL = 8  # up to this many queries are searched one by one


def _top_means(sims: np.ndarray, y: np.ndarray, ks: list[int]) -> list[np.ndarray]:
    """Mean target of the k most similar rows, for each k of ``ks`` (fewer when there are fewer rows)."""
    kmax = min(max(ks), sims.shape[1])
    top = np.argpartition(-sims, kmax - 1, axis=1)[:, :kmax] if kmax < sims.shape[1] else \
        np.broadcast_to(np.arange(kmax), sims.shape)
    if len(ks) == 1:
        return [y[top].mean(1)]
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
    csum = np.cumsum(y[np.take_along_axis(top, order, 1)], axis=1)
    return [csum[:, min(k, kmax) - 1] / min(k, kmax) for k in ks]


class KNNParams(TaskParams):
    k: int | None = Field(None, ge=1, description=f"neighbours averaged; None: chosen on validation from {K_GRID}")
    scope: Literal["all", "task"] | None = Field(
        None, description="neighbourhood: every training query, or those of the query's task; None: chosen on "
                          "validation")
    num_threads: ThreadCount = Field(DEFAULT_THREADS, description="BLAS threads while fitting and batch-routing")


@ROUTERS.register("knn")
class KNNRouter(Router):
    name = "knn"
    Params = KNNParams
    uses_tasks = True
    text_only_twin = False  # the text-only part is the same index searched over every training query

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        k, scope = self.hp.k, self.hp.scope
        if k is None or scope is None:
            fit, val = self.selection_split(data, val)
            index, target = NeighbourIndex(normalise_rows(fit.X), fit.rewards_filled(), fit.tasks), val.rewards_filled()
            ks = [int(k)] if k else [g for g in K_GRID if g <= len(fit)]
            best = None
            with limit_threads(self.hp.num_threads):
                for s in [scope] if scope else ["all", "task"]:
                    for kk, U in zip(ks, index.neighbour_means(val.X, val.tasks, s, ks), strict=True):
                        score = routed_value(U, target)
                        if best is None or score > best[0] + 1e-12:
                            best = (score, kk, s)
            _, k, scope = best
            logger.info("knn: chose k=%d scope=%s on %d validation queries (value %.4f)", k, scope, len(val), best[0])
        self.state = {"X": normalise_rows(data.X), "y": data.rewards_filled(), "tasks": np.asarray(data.tasks).astype(str),
                      "k": int(k), "scope": scope}
        self.meta["selected"] = {"k": int(k), "scope": scope}

    def index(self) -> NeighbourIndex:
        """The neighbour index of the fitted (or loaded) state, built once."""
        s = self.state
        return self.derived("index", lambda: NeighbourIndex(s["X"], s["y"], s["tasks"]))

    def _text_only_utility(self, X, texts=None) -> np.ndarray:
        return self._utility(X, None, texts, scope="all")

    def _utility(self, X, tasks=None, texts=None, scope: str | None = None) -> np.ndarray:
        s = self.state
        scope = scope or s["scope"]
        X = np.asarray(X, dtype=np.float32)
        if len(X) > CHUNK:  # a large batch: keep BLAS to its thread budget (the call itself costs ~0.1 ms)
            with limit_threads(self.hp.num_threads):
                return self.index().neighbour_means(X, tasks, scope, [s["k"]])[0]
        return self.index().neighbour_means(X, tasks, scope, [s["k"]])[0]
