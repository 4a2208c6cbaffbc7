"""From a routing log + query embeddings to the matrices routers learn from.

One row per query (sorted by query_id), one column per candidate (sorted by name). ``reward`` follows the
scenario with per-task min-max normalisation fitted on the training rows only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fusion.embed import embedding_matrix
from fusion.log.schema import candidates_of, wide
from fusion.rewards import TaskNormaliser, reward

logger = logging.getLogger(__name__)


@dataclass
class RoutingData:
    query_ids: np.ndarray  # (n,)
    tasks: np.ndarray  # (n,)
    splits: np.ndarray  # (n,)
    candidates: list[str]  # (c,)
    X: np.ndarray  # (n, d) embeddings
    perf: np.ndarray  # (n, c) raw performance, NaN where unknown (error rows)
    cost: np.ndarray  # (n, c) USD per call
    perf_n: np.ndarray  # (n, c) normalised per task
    cost_n: np.ndarray
    reward: np.ndarray  # (n, c) alpha * perf_n - beta * cost_n
    alpha: float
    beta: float
    normaliser: TaskNormaliser

    def subset(self, mask: np.ndarray) -> RoutingData:
        return RoutingData(
            self.query_ids[mask], self.tasks[mask], self.splits[mask], self.candidates, self.X[mask],
            self.perf[mask], self.cost[mask], self.perf_n[mask], self.cost_n[mask], self.reward[mask],
            self.alpha, self.beta, self.normaliser,
        )

    def split(self, name: str) -> RoutingData:
        mask = self.splits == name
        if not mask.any():
            raise ValueError(f"no queries in split {name!r} (splits present: {sorted(set(self.splits))})")
        return self.subset(mask)

    def __len__(self) -> int:
        return len(self.query_ids)


def build_routing_data(
    log: pd.DataFrame,
    embeddings: pd.DataFrame,
    alpha: float,
    beta: float,
    *,
    normaliser: TaskNormaliser | None = None,
    fit_split: str = "train",
) -> RoutingData:
    queries = log.drop_duplicates("query_id").set_index("query_id").sort_index()
    perf_w = wide(log, "performance").reindex(queries.index)
    cost_w = wide(log, "cost_usd").reindex(queries.index)
    if cost_w.isna().all().all():
        logger.warning("the log has no costs: every candidate costs 0 (only performance can be traded)")
    cost_w = cost_w.fillna(0.0)
    tasks = queries["task"].astype(str).to_numpy()
    splits = queries["split"].astype(str).to_numpy()
    perf, cost = perf_w.to_numpy(float), cost_w.to_numpy(float)
    if normaliser is None:
        fit = splits == fit_split
        if not fit.any():
            raise ValueError(f"no {fit_split!r} queries to fit the reward normalisation on")
        normaliser = TaskNormaliser.fit(tasks[fit], perf[fit], cost[fit])
    perf_n, cost_n = normaliser.transform(tasks, perf, cost)
    r = reward(perf_n, cost_n, alpha, beta)
    X = embedding_matrix(embeddings, queries.index)
    return RoutingData(
        queries.index.to_numpy().astype(str), tasks, splits, candidates_of(log), X,
        perf, cost, perf_n, cost_n, r, alpha, beta, normaliser,
    )
