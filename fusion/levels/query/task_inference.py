"""Inferring a query's task from its embedding, and telling a query of a task never seen in training.

Production traffic arrives without a task label. A router that uses task identity (its per-task prior, a task
one-hot, a same-task neighbourhood) then needs the task from the query itself. :class:`TaskModel` gives

* a *calibrated* posterior over the known tasks: a multinomial logistic regression on the query embedding
  (scikit-learn), fitted on the training split, its temperature fitted on a held-out part of it (Guo et al.,
  2017: one scalar, so the ranking is unchanged and the probabilities match the held-out frequencies);
* an out-of-distribution score: the cosine similarity of the query to the nearest k-means centroid of the
  training queries (scikit-learn's ``KMeans``). Its threshold is the ``ood_quantile`` quantile of the held-out
  queries' scores, so that share of in-distribution queries is flagged: a query below it is far from every
  known task and is routed by the router's text-only part (:mod:`fusion.levels.query.base`).

Prediction runs in numpy from the fitted weights (a few small matrix products, no scikit-learn call per query).
The temperature and the threshold are the only hand-written fitting here: each is one scalar, and neither has a
scikit-learn estimator that predicts this fast (``CalibratedClassifierCV`` wraps the estimator it calibrates).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from fusion.levels.query.features import normalise_rows

logger = logging.getLogger(__name__)

#: the task every query gets when a router is trained without task labels
NO_TASK = "(no task)"
#: the ways a query can be routed (the ``route_path`` column of serving and evaluation)
PATH_TASK = "task"  # the query's own, known task label
PATH_INFERRED = "inferred"  # no (known) label: the task posterior weights the task-conditioned utilities
PATH_TEXT = "text-only"  # far from every known task, or a router that uses no task: the text alone
PATH_PRIOR = "prior"  # no label and nothing inferred: the overall prior (task-best, routers saved before)
PATHS = (PATH_TASK, PATH_INFERRED, PATH_TEXT, PATH_PRIOR)



def path_shares(paths: np.ndarray) -> dict[str, float]:
    """The share of queries routed by each path that occurs in ``paths``."""
    paths = np.asarray(paths, dtype=object)
    return {p: float(np.mean(paths == p)) for p in sorted(set(paths))}


HOLDOUT_FRACTION = 0.2
CACHE_SIZE = 4
_CACHE: dict[tuple, TaskModel] = {}
MAX_CENTROIDS = 64
QUERIES_PER_CENTROID = 20


@dataclass
class TaskModel:
    vocab: list[str]
    W: np.ndarray  # (d, T) logistic-regression weights on the normalised embedding, temperature folded in
    b: np.ndarray  # (T,)
    centroids: np.ndarray  # (m, d) unit-norm k-means centroids of the training queries
    threshold: float  # cosine similarity to the nearest centroid below which a query is out of distribution
    temperature: float = 1.0
    holdout_accuracy: float | None = None

    @classmethod
    def fit(cls, X: np.ndarray, tasks: np.ndarray, *, seed: int = 0, ood_quantile: float = 0.02,
            C: float = 10.0) -> TaskModel:
        """Fit on the training queries: classifier and centroids on all of them, temperature and threshold on a
        task-stratified held-out part scored by a classifier and centroids fitted without it."""
        from sklearn.model_selection import train_test_split

        Xn = normalise_rows(X)
        tasks = np.asarray(tasks).astype(str)
        vocab = sorted(set(tasks))
        if len(Xn) == 0:
            raise ValueError("task model: no training queries")
        counts = {t: int((tasks == t).sum()) for t in vocab}
        strat = tasks if len(vocab) > 1 and min(counts.values()) >= 2 else None
        n_hold = max(1, int(round(HOLDOUT_FRACTION * len(Xn))))
        if len(Xn) - n_hold < 2 or (strat is not None and n_hold < len(vocab)):
            fit_i, hold_i = np.arange(len(Xn)), np.arange(len(Xn))  # too few to hold out: optimistic
        else:
            fit_i, hold_i = train_test_split(np.arange(len(Xn)), test_size=n_hold, random_state=seed,
                                             stratify=strat)
        temperature, accuracy = 1.0, None
        if len(vocab) > 1:
            W, b = _logistic(Xn[fit_i], tasks[fit_i], vocab, C, seed)
            logits = Xn[hold_i] @ W + b
            y = np.searchsorted(vocab, tasks[hold_i])
            known = np.isin(tasks[hold_i], tasks[fit_i])
            if known.any():
                temperature = _temperature(logits[known], y[known])
                accuracy = float((logits[known].argmax(1) == y[known]).mean())
            W, b = _logistic(Xn, tasks, vocab, C, seed)
            W, b = W / temperature, b / temperature
        else:
            W, b = np.zeros((Xn.shape[1], 1), dtype=np.float32), np.zeros(1, dtype=np.float32)
        threshold = -np.inf
        k = n_centroids(len(Xn))
        if ood_quantile > 0:
            scores = _nearest(Xn[hold_i], _centroids(Xn[fit_i], k, seed))
            threshold = float(np.quantile(scores, ood_quantile))
        model = cls(vocab, W.astype(np.float32), b.astype(np.float32), _centroids(Xn, k, seed), threshold,
                    float(temperature), accuracy)
        logger.info("task model: %d tasks, held-out accuracy %s, temperature %.2f, OOD threshold %.3f",
                    len(vocab), "n/a" if accuracy is None else f"{accuracy:.3f}", temperature, threshold)
        return model

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.W.shape[0]:
            raise ValueError(f"task model: expected embeddings of shape (n, {self.W.shape[0]}), got {X.shape}")
        return X

    @classmethod
    def fit_cached(cls, X: np.ndarray, tasks: np.ndarray, *, seed: int = 0, ood_quantile: float = 0.02) -> TaskModel:
        """:meth:`fit`, reusing the model last fitted on the same queries (an ensemble's members, a router and its
        twin fit on the same training split)."""
        import hashlib

        h = hashlib.sha1(np.ascontiguousarray(X, dtype=np.float32).tobytes())
        h.update("\x00".join(map(str, tasks)).encode())
        key = (h.hexdigest(), int(seed), float(ood_quantile))
        if key not in _CACHE:
            if len(_CACHE) >= CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = cls.fit(X, tasks, seed=seed, ood_quantile=ood_quantile)
        return replace(_CACHE[key])  # a copy: callers may change its threshold

    def _softmax(self, Xn: np.ndarray) -> np.ndarray:
        z = Xn @ self.W + self.b
        z -= z.max(1, keepdims=True)
        np.exp(z, out=z)
        return z / z.sum(1, keepdims=True)

    def posterior(self, X: np.ndarray) -> np.ndarray:
        """(n, T) calibrated probability of each known task."""
        return self._softmax(normalise_rows(self._check(X)))

    def infer(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(posterior (n, T), out-of-distribution flag (n,)) in one pass (the embedding normalised once)."""
        Xn = normalise_rows(self._check(X))
        return self._softmax(Xn), _nearest(Xn, self.centroids) < self.threshold

    def ood_score(self, X: np.ndarray) -> np.ndarray:
        """(n,) cosine similarity to the nearest training centroid (higher: more like the training queries)."""
        return _nearest(normalise_rows(self._check(X)), self.centroids)

    def is_ood(self, X: np.ndarray) -> np.ndarray:
        return self.ood_score(X) < self.threshold

    def to_dict(self) -> dict:
        return {"vocab": self.vocab, "W": self.W, "b": self.b, "centroids": self.centroids,
                "threshold": self.threshold, "temperature": self.temperature,
                "holdout_accuracy": self.holdout_accuracy}

    @classmethod
    def from_dict(cls, d: dict) -> TaskModel:
        return cls(list(d["vocab"]), np.asarray(d["W"], dtype=np.float32), np.asarray(d["b"], dtype=np.float32),
                   np.asarray(d["centroids"], dtype=np.float32), float(d["threshold"]),
                   float(d.get("temperature", 1.0)), d.get("holdout_accuracy"))


def _logistic(Xn: np.ndarray, tasks: np.ndarray, vocab: list[str], C: float, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """(d, T) weights and (T,) bias of a multinomial logistic regression (columns in ``vocab`` order; a task
    absent from ``tasks`` gets a very negative bias)."""
    from sklearn.linear_model import LogisticRegression

    present = sorted(set(tasks))
    W = np.zeros((Xn.shape[1], len(vocab)), dtype=np.float64)
    b = np.full(len(vocab), -1e4, dtype=np.float64)
    if len(present) == 1:
        b[vocab.index(present[0])] = 0.0
        return W, b
    clf = LogisticRegression(C=C, max_iter=500, random_state=seed).fit(Xn, tasks)
    coef, icpt = clf.coef_, clf.intercept_
    if len(clf.classes_) == 2:  # scikit-learn keeps one column for two classes: logit(b) - logit(a)
        coef, icpt = np.vstack([-coef / 2, coef / 2]), np.array([-icpt[0] / 2, icpt[0] / 2])
    for j, t in enumerate(clf.classes_):
        i = vocab.index(str(t))
        W[:, i], b[i] = coef[j], icpt[j]
    return W, b


def _temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the log-loss of ``softmax(logits / T)`` on held-out labels ``y``."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def n_centroids(n: int) -> int:
    """Centroids of the out-of-distribution score for ``n`` training queries."""
    return int(min(MAX_CENTROIDS, max(1, n // QUERIES_PER_CENTROID)))


def _centroids(Xn: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    if k == 1 or len(Xn) <= k:
        return normalise_rows(Xn.mean(0, keepdims=True)) if k == 1 else Xn.copy()
    km = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(Xn)
    return normalise_rows(km.cluster_centers_)


def _nearest(Xn: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return (Xn @ centroids.T).max(1) if len(Xn) else np.zeros(0, dtype=np.float32)
