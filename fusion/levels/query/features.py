"""Inputs routers share: the query embedding, the task identity, and per-task reward priors.

FusionFactory's finding on multi-task logs is that the best candidate per task (``task-best``) beats routers
that ignore the task. So learned routers here can see the task (a one-hot block beside the embedding) and can
learn a *residual* over the per-task prior, falling back to that lookup table where the query says nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

#: Threads the routers fit (and batch-predict) with by default: the matrices they multiply are too small to gain
#: from more, and more threads per process oversubscribe a machine shared with other jobs (measurements in
#: docs/benchmarks.md).
DEFAULT_THREADS = 1


@contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """The one thread-limit helper: BLAS (numpy, scikit-learn, via threadpoolctl) and, when torch is loaded,
    torch's intra-op threads at ``n`` for the block, restored afterwards (``None``/0: leave both as they are)."""
    if not n or int(n) <= 0:
        yield
        return
    import sys

    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None and before != int(n):
        torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n), user_api="blas"):
            yield
    finally:
        if torch is not None and torch.get_num_threads() != before:
            torch.set_num_threads(before)


def normalise_rows(X: np.ndarray) -> np.ndarray:
    """``X`` as float32 rows of unit length (cosine similarity is then a dot product); zero rows stay zero."""
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def task_onehot(tasks: np.ndarray | None, vocab: list[str], n: int) -> np.ndarray:
    """(n, len(vocab)) one-hot of the task; an unseen (or absent) task is an all-zero row."""
    out = np.zeros((n, len(vocab) + 1), dtype=np.float32)
    out[np.arange(n), task_index(tasks, vocab, n)] = 1.0
    return out[:, : len(vocab)]


def task_index(tasks: np.ndarray | None, vocab: list[str], n: int) -> np.ndarray:
    """Position of each query's task in ``vocab``; ``len(vocab)`` (the padding row) for unseen or absent tasks."""
    if tasks is None:
        return np.full(n, len(vocab), dtype=np.int64)
    pos = {t: i for i, t in enumerate(vocab)}
    if len(tasks) > 64:  # one dictionary look-up per distinct task, not per query
        uniq, inv = np.unique(np.asarray(tasks).astype(str), return_inverse=True)
        return np.array([pos.get(t, len(vocab)) for t in uniq], dtype=np.int64)[inv.reshape(-1)]
    return np.array([pos.get(str(t), len(vocab)) for t in tasks], dtype=np.int64)


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
        """(n, c) prior per query: its task's row, or the overall mean for an unseen (or absent) task."""
        return self.padded()[task_index(tasks, self.vocab, n)]

    def padded(self) -> np.ndarray:
        """(T + 1, c): the table with the overall mean as its last row (the row of an unseen task)."""
        return np.vstack([self.table, self.overall])

    def rows_for(self, vocab: list[str]) -> np.ndarray:
        """(len(vocab) + 1, c): the prior of each task of ``vocab`` and, last, of an unseen task."""
        return np.vstack([self(np.asarray(vocab, dtype=object), len(vocab)), self.overall])

    def to_dict(self) -> dict:
        return {"vocab": self.vocab, "table": self.table.tolist(), "overall": self.overall.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> TaskPrior:
        return cls(list(d["vocab"]), np.asarray(d["table"], dtype=float), np.asarray(d["overall"], dtype=float))


def choose(U: np.ndarray) -> np.ndarray:
    """The routing choice, in one place: per query (row of the utilities ``U``, (n, c)) the candidate with the
    highest estimated utility; ties go to the first candidate."""
    return np.argmax(U, axis=1)


def routed_value(U: np.ndarray, target: np.ndarray) -> float:
    """Mean true value (``target``, (n, c)) of routing each row to :func:`choose` of the utilities ``U``: the
    routing objective itself, used to select hyper-parameters on a validation split."""
    idx = choose(U)
    return float(target[np.arange(len(idx)), idx].mean()) if len(idx) else 0.0
