"""Inputs routers share: the query embedding, the task identity, and per-task reward priors.

FusionFactory's finding on multi-task logs is that the best candidate per task (``task-best``) beats routers
that ignore the task. So learned routers here can see the task (a one-hot block beside the embedding) and can
learn a *residual* over the per-task prior, falling back to that lookup table where the query says nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def task_onehot(tasks: np.ndarray | None, vocab: list[str], n: int) -> np.ndarray:
    """(n, len(vocab)) one-hot of the task; an unseen (or absent) task is an all-zero row."""
    out = np.zeros((n, len(vocab)), dtype=np.float32)
    if tasks is None or not vocab:
        return out
    pos = {t: i for i, t in enumerate(vocab)}
    for row, t in enumerate(tasks):
        i = pos.get(str(t))
        if i is not None:
            out[row, i] = 1.0
    return out


def design(X: np.ndarray, tasks: np.ndarray | None, vocab: list[str], task_weight: float = 1.0) -> np.ndarray:
    """The embedding with the task one-hot appended (scaled by ``task_weight``)."""
    X = np.asarray(X, dtype=np.float32)
    if task_weight <= 0 or not vocab:
        return X
    return np.hstack([X, task_weight * task_onehot(tasks, vocab, len(X))])


@dataclass
class TaskPrior:
    """Mean training reward per (task, candidate), with the overall mean for tasks never seen."""

    vocab: list[str]
    table: np.ndarray  # (T, c)
    overall: np.ndarray  # (c,)

    @classmethod
    def fit(cls, tasks: np.ndarray, reward: np.ndarray) -> TaskPrior:
        vocab = sorted({str(t) for t in tasks})
        table = np.stack([reward[tasks == t].mean(0) for t in vocab]) if vocab else np.zeros((0, reward.shape[1]))
        return cls(vocab, table, reward.mean(0))

    def __call__(self, tasks: np.ndarray | None, n: int) -> np.ndarray:
        out = np.tile(self.overall, (n, 1))
        if tasks is None:
            return out
        pos = {t: i for i, t in enumerate(self.vocab)}
        for row, t in enumerate(tasks):
            i = pos.get(str(t))
            if i is not None:
                out[row] = self.table[i]
        return out

    def to_dict(self) -> dict:
        return {"vocab": self.vocab, "table": self.table.tolist(), "overall": self.overall.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> TaskPrior:
        return cls(list(d["vocab"]), np.asarray(d["table"], dtype=float), np.asarray(d["overall"], dtype=float))


def routed_value(U: np.ndarray, target: np.ndarray) -> float:
    """Mean true value (``target``, (n, c)) of routing each row to the argmax of the utilities ``U``: the
    routing objective itself, used to select hyper-parameters on a validation split."""
    idx = np.argmax(U, axis=1)
    return float(target[np.arange(len(idx)), idx].mean()) if len(idx) else 0.0
