"""A shared base for routers that are a scikit-learn regressor over [embedding, task one-hot].

The regressor predicts the reward of every candidate (multi-output), optionally as a *residual* over the per-task
prior (``residual: true``): utility = TaskPrior(task) + model(x). Hyper-parameters not fixed in ``params`` are
chosen on a validation split carved from the training data by the routing objective (``routed_value``), and the
chosen configuration is refitted on all the training data.

Prediction does not go through the scikit-learn estimator: the fitted weights are read once into numpy arrays
(:func:`compile_model`; linear models and MLPs) and the task one-hot block of the design matrix is folded into a
per-task row of the first layer, so routing one query costs a few small matrix products and no validation or
object conversion. Estimators it does not know fall back to ``model.predict`` on the design matrix. Fitting runs
with ``num_threads`` BLAS threads (default 1, see :func:`fusion.levels.query.features.limit_threads`).
"""

from __future__ import annotations

import itertools
import logging
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from fusion.levels.query.base import Router, TaskParams, ThreadCount
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import (
    DEFAULT_THREADS,
    TaskPrior,
    design,
    limit_threads,
    routed_value,
    task_index,
)


class TabularParams(TaskParams):
    """What every scikit-learn regressor router takes. A parameter left at ``None`` is searched on the validation
    split over the router's ``grid``."""

    residual: bool | None = Field(None, description="learn the residual over the per-task prior; None: chosen on "
                                                     "validation (True, False)")
    task_weight: float = Field(1.0, ge=0, description="scale of the task one-hot block (0: no task input)")
    num_threads: ThreadCount = Field(DEFAULT_THREADS, description="BLAS threads while fitting")

logger = logging.getLogger(__name__)


class RegressorRouter(Router):
    Params = TabularParams
    uses_tasks = True
    #: parameter -> values searched on the validation split when the parameter is None
    grid: ClassVar[dict[str, tuple]] = {}

    def make_model(self, config: dict[str, Any], n_rows: int):
        """A fresh scikit-learn regressor for ``config`` (the searched parameters; the others are read from
        ``self.hp``), to be fitted on ``n_rows`` training rows."""
        raise NotImplementedError

    def _configs(self) -> list[dict[str, Any]]:
        space = {"residual": (True, False), "task_weight": (), **self.grid}  # task_weight: never None, never searched
        values = [[getattr(self.hp, k)] if getattr(self.hp, k) is not None else list(v) for k, v in space.items()]
        return [dict(zip(space, combo, strict=True)) for combo in itertools.product(*values)]

    def _train(self, data: RoutingData, config: dict[str, Any]) -> dict[str, Any]:
        vocab = sorted({str(t) for t in data.tasks})
        y = data.rewards_filled()
        prior = TaskPrior.fit(data.tasks, y)
        target = y - prior(data.tasks, len(data)) if config["residual"] else y
        model = self.make_model(config, len(data))
        model.fit(design(data.X, data.tasks, vocab, config["task_weight"]), target)
        return {"model": model, "prior": prior, "vocab": vocab, "config": config}

    def compiled(self, state: dict[str, Any]) -> CompiledModel | None:
        """The numpy form of ``state``'s estimator (None: predict through the estimator), built once per state."""
        cfg = state["config"]
        return self.derived("compiled", lambda: compile_model(state["model"], state["vocab"], cfg["task_weight"],
                                                              state["prior"] if cfg["residual"] else None), of=state)

    def _predict(self, state: dict[str, Any], X, tasks) -> np.ndarray:
        cfg = state["config"]
        X = np.asarray(X, dtype=np.float32)
        fast = self.compiled(state)
        if fast is not None and X.ndim == 2 and X.shape[1] == fast.d:
            return fast(X, task_index(tasks, state["vocab"], len(X)))
        F = design(X, tasks, state["vocab"], cfg["task_weight"])
        pred = np.asarray(state["model"].predict(F), dtype=float).reshape(len(F), -1)
        return pred + state["prior"](tasks, len(F)) if cfg["residual"] else pred

    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        with limit_threads(self.hp.num_threads):
            self._select_and_fit(data, val)

    def _select_and_fit(self, data: RoutingData, val: RoutingData | None) -> None:
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

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        return self._predict(self.state, X, tasks)


class CompiledModel:
    """A fitted linear model or MLP as numpy arrays, over [embedding, task one-hot] (+ the task prior).

    The first layer is ``X @ W[:d]`` plus a per-task row ``task_weight * W[d:]`` (zero for an unseen task),
    which is what multiplying the one-hot block would add; the task prior (residual routers) is added to the
    output per task the same way."""

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray], d: int, vocab: list[str],
                 task_weight: float, prior: TaskPrior | None, activation: str = "identity") -> None:
        dtype = weights[0].dtype
        W0 = weights[0]
        self.d = d
        self.W0 = np.ascontiguousarray(W0[:d])
        rows = np.zeros((len(vocab) + 1, W0.shape[1]), dtype=dtype)
        if task_weight > 0 and vocab:
            rows[: len(vocab)] = task_weight * W0[d:d + len(vocab)]
        self.task_rows = rows + biases[0].astype(dtype)  # the first layer's bias folded in
        self.hidden = [(np.asarray(w), np.asarray(b)) for w, b in zip(weights[1:], biases[1:], strict=True)]
        self.prior_rows = prior.rows_for(vocab) if prior is not None else None
        self.activation = activation
        self.dtype = dtype

    def __call__(self, X: np.ndarray, tidx: np.ndarray) -> np.ndarray:
        h = X.astype(self.dtype, copy=False) @ self.W0
        h += self.task_rows[tidx]
        for w, b in self.hidden:
            _activate(h, self.activation)
            h = h @ w
            h += b
        out = h.astype(np.float64, copy=False)
        return out + self.prior_rows[tidx] if self.prior_rows is not None else out


def _activate(h: np.ndarray, activation: str) -> None:
    if activation == "relu":
        np.maximum(h, 0, out=h)
    elif activation == "tanh":
        np.tanh(h, out=h)
    elif activation == "logistic":
        h[...] = 1.0 / (1.0 + np.exp(-h))
    elif activation != "identity":
        raise ValueError(f"unknown activation {activation!r}")


def compile_model(model, vocab: list[str], task_weight: float, prior: TaskPrior | None) -> CompiledModel | None:
    """The numpy form of a fitted scikit-learn MLPRegressor, linear model, or MultiOutputRegressor of linear
    models; ``None`` for any other estimator (predict then calls the estimator)."""
    n_task = len(vocab) if task_weight > 0 and vocab else 0
    if hasattr(model, "coefs_") and hasattr(model, "intercepts_"):  # MLPRegressor
        if getattr(model, "out_activation_", "identity") != "identity":
            return None
        W, b = list(model.coefs_), list(model.intercepts_)
        return CompiledModel(W, b, W[0].shape[0] - n_task, vocab, task_weight, prior, model.activation)
    parts = getattr(model, "estimators_", None) or [model]
    if not all(hasattr(m, "coef_") and hasattr(m, "intercept_") for m in parts):
        return None
    coefs = [np.atleast_2d(np.asarray(m.coef_, dtype=np.float64)) for m in parts]
    if len({c.shape[1] for c in coefs}) != 1:
        return None
    W = np.vstack(coefs).T  # (n_in, c)
    b = np.concatenate([np.broadcast_to(np.asarray(m.intercept_, dtype=np.float64), (len(c),))
                        for m, c in zip(parts, coefs, strict=True)])
    return CompiledModel([W], [b], W.shape[0] - n_task, vocab, task_weight, prior)
