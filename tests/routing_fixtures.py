"""Synthetic routing logs with a known answer, for router tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusion.log.schema import coerce_log


def cluster_log(n_per_cluster: int = 30, seed: int = 0, dim: int = 8):
    """Two clusters of queries; candidate A is right on cluster 0, B on cluster 1. B costs 10x more."""
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    for cluster in (0, 1):
        for i in range(n_per_cluster):
            qid = f"t-{cluster}-{i}"
            v = np.zeros(dim)
            v[cluster] = 1.0
            v += rng.normal(0, 0.05, dim)
            emb.append((qid, (v / np.linalg.norm(v)).astype(np.float32)))
            split = "test" if i % 3 == 0 else "train"
            for cand, good, cost in (("A", 0, 0.001), ("B", 1, 0.01)):
                rows.append(dict(query_id=qid, task="t", split=split, query=f"q{cluster}-{i}", llm=cand,
                                 mode="direct", candidate=f"{cand}:direct", backend="test", cost_usd=cost,
                                 performance=1.0 if cluster == good else 0.0))
    return coerce_log(pd.DataFrame(rows)), _emb(emb)


def task_log(n_per_task: int = 20, seed: int = 0, dim: int = 8):
    """Embeddings are pure noise; only the task tells which candidate is right (A on task a, B on task b)."""
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    for task, good in (("a", "A"), ("b", "B")):
        for i in range(n_per_task):
            qid = f"{task}-{i}"
            v = rng.normal(0, 1, dim)
            emb.append((qid, (v / np.linalg.norm(v)).astype(np.float32)))
            split = "test" if i % 4 == 0 else "train"
            for cand in ("A", "B"):
                rows.append(dict(query_id=qid, task=task, split=split, query=f"{task} {i}", llm=cand, mode="direct",
                                 candidate=f"{cand}:direct", backend="test", cost_usd=0.001,
                                 performance=1.0 if cand == good else 0.0))
    return coerce_log(pd.DataFrame(rows)), _emb(emb)


def tradeoff_log(n: int = 1500, seed: int = 0, dim: int = 16):
    """Three candidates, cheap/mid/expensive (costs 1, 4, 16 milli-USD), whose success probability depends
    smoothly on the query's position: a graded cost-quality trade-off for budget calibration."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (3, dim))
    rows, emb = [], []
    costs = {"cheap": 0.001, "mid": 0.004, "big": 0.016}
    for i in range(n):
        w = rng.dirichlet([0.5, 0.5, 0.5])
        v = w @ centers + rng.normal(0, 0.1, dim)
        qid = f"q-{i:05d}"
        emb.append((qid, (v / np.linalg.norm(v)).astype(np.float32)))
        split = "test" if i % 3 == 0 else "train"
        p = {"cheap": 0.2 + 0.7 * w[0], "mid": 0.4 + 0.5 * w[1], "big": 0.6 + 0.35 * (1 - w[2] / 2)}
        for cand, cost in costs.items():
            rows.append(dict(query_id=qid, task="t", split=split, query=f"query {i}", llm=cand, mode="direct",
                             candidate=f"{cand}:direct", backend="test", cost_usd=cost * rng.uniform(0.8, 1.2),
                             performance=float(rng.random() < p[cand])))
    return coerce_log(pd.DataFrame(rows)), _emb(emb)


def _emb(pairs):
    return pd.DataFrame({"query_id": [q for q, _ in pairs], "embedding": [v for _, v in pairs]})


from fusion.models.refs import MINILM  # noqa: E402

RIVER_TEXTS = ("Compute {i} plus {j}.", "Name a river in country number {i}.")


def with_cluster_texts(log: pd.DataFrame, templates: tuple[str, str] = RIVER_TEXTS) -> pd.DataFrame:
    """``cluster_log`` with a real query text per query: cluster 0 from ``templates[0]``, cluster 1 from
    ``templates[1]`` (``{i}`` the query's position, ``{j}`` = i + 3)."""
    texts = {q: templates[0 if q.startswith("t-0") else 1].format(i=i, j=i + 3)
             for i, q in enumerate(log["query_id"].unique())}
    log["query"] = log["query_id"].map(texts).astype("string")
    return log


def minilm_data(log: pd.DataFrame, cache_dir, alpha: float = 1.0, beta: float = 0.0):
    """(encoder, RoutingData) with real MiniLM embeddings of the log's texts."""
    from fusion.core.embedding import Encoder, embed_queries
    from fusion.levels.query import build_routing_data

    enc = Encoder(MINILM, cache_dir=cache_dir)
    return enc, build_routing_data(log, embed_queries(log, enc), alpha, beta)


def sqlite_tracking(root, experiment: str, model: str):
    """Tracking on a SQLite file and an artifact folder under ``root``."""
    from fusion.config import TrackingConfig

    return TrackingConfig(uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "art"), experiment=experiment,
                          registered_router=model)


def separable_task_log(n_per_task: int = 40, n_tasks: int = 3, seed: int = 0, dim: int = 16):
    """Tasks whose queries lie in separate regions of the embedding space (task ``k`` around axis ``k``), and
    three candidates: on each task a different one is right, so the task (given, or inferred from the
    embedding) is what routing needs. Candidate ``C`` is right on half of every task's queries (axis ``dim-1``
    side), which only the text (the embedding) tells."""
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    for k in range(n_tasks):
        for i in range(n_per_task):
            qid = f"s{k}-{i:03d}"
            v = rng.normal(0, 0.08, dim)
            v[k] += 1.0
            side = (i // 4) % 2 == 0
            v[dim - 1] += 0.5 if side else -0.5
            emb.append((qid, (v / np.linalg.norm(v)).astype(np.float32)))
            split = "test" if i % 4 == 0 else "train"
            good = "C" if side else "AB"[k % 2]
            for cand in ("A", "B", "C"):
                rows.append(dict(query_id=qid, task=f"task{k}", split=split, query=f"task {k} query {i}", llm=cand,
                                 mode="direct", candidate=f"{cand}:direct", backend="test", cost_usd=0.001,
                                 performance=1.0 if cand == good else 0.0))
    return coerce_log(pd.DataFrame(rows)), _emb(emb)
