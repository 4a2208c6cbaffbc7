"""A shared base for routers that are a scikit-learn regressor over [embedding, task one-hot].

The regressor predicts the reward of every candidate (multi-output), optionally as a *residual* over the per-task
prior (``residual: true``): utility = TaskPrior(task) + model(x). Hyper-parameters not fixed in ``params`` are
chosen on a validation split carved from the training data by the routing objective (``routed_value``), and the
chosen configuration is refitted on all the training data.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, ClassVar

import numpy as np

from fusion.routers.base import Router
from fusion.routers.data import RoutingData
from fusion.routers.features import TaskPrior, design, routed_value

logger = logging.getLogger(__name__)


class RegressorRouter(Router):
    #: hyper-parameter -> candidate values searched on the validation split (unless fixed in params)
    grid: ClassVar[dict[str, tuple]] = {}
    #: fixed defaults for parameters that are not searched
    defaults: ClassVar[dict[str, Any]] = {}

    def make_model(self, config: dict[str, Any]):
        raise NotImplementedError

    def _configs(self) -> list[dict[str, Any]]:
        space = {"residual": (True, False), "task_weight": (1.0,), **self.grid}
        keys = list(space)
        values = [[self.params[k]] if k in self.params else list(space[k]) for k in keys]
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]

    def _train(self, data: RoutingData, config: dict[str, Any]) -> dict[str, Any]:
        vocab = sorted({str(t) for t in data.tasks})
        y = data.rewards_filled()
        prior = TaskPrior.fit(data.tasks, y)
        target = y - prior(data.tasks, len(data)) if config["residual"] else y
        model = self.make_model({**self.defaults, **config})
        model.fit(design(data.X, data.tasks, vocab, config["task_weight"]), target)
        return {"model": model, "prior": prior, "vocab": vocab, "config": config}

    @staticmethod
    def _predict(state: dict[str, Any], X, tasks) -> np.ndarray:
        cfg = state["config"]
        F = design(X, tasks, state["vocab"], cfg["task_weight"])
        pred = np.asarray(state["model"].predict(F), dtype=float).reshape(len(F), -1)
        return pred + state["prior"](tasks, len(F)) if cfg["residual"] else pred

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        configs = self._configs()
        if len(configs) > 1:
            fit, val = self.selection_split(data, val)
            scored = []
            for cfg in configs:
                value = routed_value(self._predict(self._train(fit, cfg), val.X, val.tasks), val.rewards_filled())
                scored.append((value, cfg))
                logger.debug("%s %s: validation value %.4f", self.name, cfg, value)
            value, config = max(scored, key=lambda s: s[0])
            logger.info("%s: chose %s on %d validation queries (value %.4f)", self.name, config, len(val), value)
        else:
            config = configs[0]
        self.state = self._train(data, config)
        self.meta["selected"] = config

    def predict_utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return self._predict(self.state, X, tasks)
