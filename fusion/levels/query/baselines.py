"""Baseline routers: ``random``, ``best-single``, ``task-best`` (the dataset oracle) and ``oracle``.

``best-single`` always picks the candidate with the best mean training reward; ``task-best`` the best candidate
of the query's task (the lookup table strong routers must beat; an unseen task falls back to best-single);
``oracle`` picks the best candidate per query from the true outcomes and is for evaluation only.
"""

from __future__ import annotations

import numpy as np

from fusion.levels.query.base import ROUTERS, Router
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import TaskPrior

#: the baselines every evaluation and benchmark reports beside the learned routers, in this order
BASELINES = ("random", "best-single", "task-best", "oracle")


@ROUTERS.register("random")
class RandomRouter(Router):
    """Uniform random choice; the same query batch gets the same choices for a given seed."""

    name = "random"

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        pass

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return np.random.default_rng(self.seed).random((len(X), len(self.candidates)))


@ROUTERS.register("best-single")
class BestSingleRouter(Router):
    """Always the candidate with the best mean training reward."""

    name = "best-single"

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        self.state = {"mean": data.rewards_filled().mean(0)}

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return np.tile(self.state["mean"], (len(X), 1))


@ROUTERS.register("task-best")
class TaskBestRouter(Router):
    """The best candidate of the query's task on the training queries (best-single for an unseen task). A
    baseline that needs task labels: it infers none (path ``prior`` for a query without a known task)."""

    name = "task-best"
    needs_labels = True

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        self.state = {"prior": TaskPrior.fit(data.tasks, data.rewards_filled()).to_dict()}

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return TaskPrior.from_dict(self.state["prior"])(tasks, len(X))


@ROUTERS.register("oracle")
class OracleRouter(Router):
    """The per-query best candidate, read from the outcomes: an upper bound, never deployable."""

    name = "oracle"
    evaluation_only = True

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        pass

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        raise TypeError("the oracle router needs the true outcomes: it is for evaluation only (use predict_data)")

    def predict_data(self, data: RoutingData) -> np.ndarray:
        perf = np.nan_to_num(data.perf, nan=0.0)
        # ties: higher performance, then cheaper
        return data.rewards_filled() + 1e-9 * perf - 1e-12 * data.cost
