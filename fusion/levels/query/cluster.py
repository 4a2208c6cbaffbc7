"""Cluster router (the Avengers-Pro recipe, Zhang et al., 2025): k-means on the query embeddings, a table of each
candidate's mean reward per cluster, and a query routed by the table of its nearest cluster.

The scenario's performance/cost trade-off is already in the reward (``alpha * perf_n - beta * cost_n``), so the
per-cluster mean reward is the trade-off applied per cluster. A cluster's row is shrunk towards the overall mean
by ``shrinkage`` pseudo-queries (a small cluster says little). ``k`` is chosen on a validation split carved from
the training data (by the routing objective) unless fixed, and the clustering is refitted on all of it. The
router needs no task label and is fast: routing one query is one (d, k) product.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from fusion.levels.query.base import ROUTERS, Router, SelectionParams, ThreadCount
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import DEFAULT_THREADS, limit_threads, normalise_rows, routed_value

logger = logging.getLogger(__name__)

K_GRID = (2, 4, 8, 16, 32, 64, 128)
MIN_PER_CLUSTER = 5  # a k is tried only when the fit part has at least this many queries per cluster


class ClusterParams(SelectionParams):
    k: int | None = Field(None, ge=1, description=f"clusters; None: chosen on validation from {K_GRID}")
    shrinkage: float = Field(5.0, ge=0, description="pseudo-queries of the overall mean added to each cluster's "
                                                    "table row")
    n_init: int = Field(3, ge=1, description="k-means restarts")
    num_threads: ThreadCount = Field(DEFAULT_THREADS, description="BLAS threads while fitting")


@ROUTERS.register("cluster")
class ClusterRouter(Router):
    """k-means clusters of the query embeddings and each candidate's mean reward per cluster (label-free)."""

    name = "cluster"
    Params = ClusterParams

    def _table(self, Xn: np.ndarray, y: np.ndarray, k: int) -> dict:
        from sklearn.cluster import KMeans

        k = min(k, len(Xn))
        km = KMeans(n_clusters=k, n_init=self.hp.n_init, random_state=self.seed).fit(Xn)
        centroids = normalise_rows(km.cluster_centers_)
        labels = np.argmax(Xn @ centroids.T, axis=1)  # cosine assignment, as at routing time
        overall = y.mean(0)
        counts = np.bincount(labels, minlength=k).astype(float)
        sums = np.zeros((k, y.shape[1]))
        np.add.at(sums, labels, y)
        table = (sums + self.hp.shrinkage * overall) / np.maximum(counts + self.hp.shrinkage, 1e-12)[:, None]
        return {"centroids": centroids, "table": table, "counts": counts, "k": k}

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        with limit_threads(self.hp.num_threads):
            k = self.hp.k
            if k is None:
                fit, val = self.selection_split(data, val)
                Xf, yf = normalise_rows(fit.X), fit.rewards_filled()
                grid = [g for g in K_GRID if g * MIN_PER_CLUSTER <= len(fit)] or [1]
                scored = []
                for g in grid:
                    st = self._table(Xf, yf, g)
                    scored.append((routed_value(self._route_table(st, val.X), val.rewards_filled()), -g))
                value, neg_k = max(scored)
                k = -neg_k
                logger.info("cluster: chose k=%d on %d validation queries (value %.4f)", k, len(val), value)
            self.state = self._table(normalise_rows(data.X), data.rewards_filled(), int(k))
        self.meta["selected"] = {"k": int(self.state["k"])}

    @staticmethod
    def _route_table(state: dict, X: np.ndarray) -> np.ndarray:
        return state["table"][np.argmax(normalise_rows(X) @ state["centroids"].T, axis=1)]

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return self._route_table(self.state, X)
