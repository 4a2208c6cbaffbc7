"""From a routing log + query embeddings to the matrices routers learn from.

One row per query (sorted by query_id), one column per candidate (sorted by name). ``reward`` follows the
scenario with per-task min-max normalisation fitted on the training rows only; in the ``llm_judge`` objective the
reward is the judge score itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fusion.levels.query.rewards import Scenario, TaskNormaliser, resolve_scenario, reward
from fusion.log.embeddings import embedding_matrix, read_embeddings
from fusion.log.schema import candidates_of, read_log, wide

if TYPE_CHECKING:  # pragma: no cover
    from fusion.core.embedding import Encoder

logger = logging.getLogger(__name__)

# per-query arrays (first axis = query); everything else is shared by every subset
_PER_QUERY = ("query_ids", "tasks", "splits", "texts", "X", "perf", "cost", "perf_n", "cost_n", "reward", "judge")


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
    reward: np.ndarray  # (n, c) alpha * perf_n - beta * cost_n (or the judge score)
    alpha: float
    beta: float
    normaliser: TaskNormaliser
    texts: np.ndarray = field(default=None)  # (n,) query texts
    judge: np.ndarray = field(default=None)  # (n, c) judge scores, NaN where absent
    objective: str = "reward"  # "reward" (alpha/beta) or "judge"
    descriptions: dict[str, str] = field(default_factory=dict)  # candidate -> free text (may be empty)

    def __post_init__(self) -> None:
        n, c = len(self.query_ids), len(self.candidates)
        if self.texts is None:
            self.texts = np.array([""] * n, dtype=object)
        if self.judge is None:
            self.judge = np.full((n, c), np.nan)

    def subset(self, mask: np.ndarray) -> RoutingData:
        return replace(self, **{f.name: getattr(self, f.name)[mask] for f in fields(self) if f.name in _PER_QUERY})

    def split(self, name: str) -> RoutingData:
        mask = self.splits == name
        if not mask.any():
            raise ValueError(f"no queries in split {name!r} (splits present: {sorted(set(self.splits))})")
        return self.subset(mask)

    def validation_split(self, fraction: float = 0.2, seed: int = 0) -> tuple[RoutingData, RoutingData]:
        """(fit, val): a validation part carved from these queries, stratified by task (for model selection and
        early stopping; never the test split). Tasks with a single query stay in the fit part."""
        if not 0 < fraction < 1:
            raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
        rng = np.random.default_rng(seed)
        val = np.zeros(len(self), dtype=bool)
        for t in sorted(set(self.tasks)):
            idx = np.flatnonzero(self.tasks == t)
            k = int(round(fraction * len(idx)))
            if len(idx) >= 2:
                val[rng.choice(idx, size=min(max(k, 1), len(idx) - 1), replace=False)] = True
        if not val.any() or val.all():
            raise ValueError(f"cannot carve a validation split from {len(self)} queries")
        return self.subset(~val), self.subset(val)

    def fold_ids(self, k: int, seed: int = 0, *, keep_one_in_fit: bool = False) -> np.ndarray:
        """A fold number in [0, k) per query, stratified by task (each task spread evenly over the folds, from a
        rotating offset so small tasks do not always land in the first folds).

        ``keep_one_in_fit`` (validation folds for a cross-fitted ensemble): a task with ``n <= k`` queries
        validates in ``n - 1`` folds and a single-query task in none, so every fit part sees every task; the
        queries that never validate get fold ``-1``."""
        if k < 2:
            raise ValueError(f"need at least 2 folds, got {k}")
        if len(self) < k and not keep_one_in_fit:
            raise ValueError(f"cannot make {k} folds from {len(self)} queries")
        rng = np.random.default_rng(seed)
        out = np.full(len(self), -1, dtype=int)
        offset = 0
        for t in sorted(set(self.tasks)):
            idx = np.flatnonzero(self.tasks == t)
            if keep_one_in_fit and len(idx) < 2:
                continue
            idx = rng.permutation(idx)
            n = len(idx) - 1 if keep_one_in_fit and len(idx) <= k else len(idx)
            out[idx[:n]] = (np.arange(n) + offset) % k
            offset += n
        return out

    def fit_and_val(self) -> tuple[RoutingData, RoutingData | None]:
        """The training split, and the log's own ``val`` split when it has one (else None: routers carve a
        validation split from train). What training and benchmarking fit on."""
        return self.split("train"), (self.split("val") if (self.splits == "val").any() else None)

    def under(self, scenario: Scenario, fit_mask: np.ndarray) -> RoutingData:
        """The same queries under ``scenario``, with the per-task normalisation refitted on the queries of
        ``fit_mask`` (e.g. one cross-validation fold's training part)."""
        return replace(self, alpha=scenario.alpha, beta=scenario.beta, objective=scenario.objective
                       ).renormalised(fit_mask)

    def with_weights(self, alpha: float, beta: float) -> RoutingData:
        """The same queries under another (alpha, beta) scenario (same normalisation)."""
        return replace(self, alpha=alpha, beta=beta, objective="reward",
                       reward=reward(self.perf_n, self.cost_n, alpha, beta))

    def with_judge(self) -> RoutingData:
        """The same queries with the judge score as the reward (the LLM-judge scenario)."""
        if not np.isfinite(self.judge).any():
            raise ValueError("the llm_judge scenario needs judge scores, and this log has none (judge_score is empty)")
        return replace(self, reward=self.judge.copy(), objective="judge")

    def renormalised(self, fit_mask: np.ndarray) -> RoutingData:
        """The per-task normalisation refitted on the queries of ``fit_mask`` (e.g. one cross-validation fold's
        training part), and the reward recomputed with it."""
        norm = TaskNormaliser.fit(self.tasks[fit_mask], self.perf[fit_mask], self.cost[fit_mask])
        perf_n, cost_n = norm.transform(self.tasks, self.perf, self.cost)
        out = replace(self, perf_n=perf_n, cost_n=cost_n, normaliser=norm)
        return out.with_judge() if self.objective == "judge" else out.with_weights(self.alpha, self.beta)

    def without_tasks(self) -> RoutingData:
        """The same queries with every task label replaced by one constant (what a router trained with
        ``task_labels: false`` sees; the reward keeps its per-task normalisation)."""
        from fusion.levels.query.task_inference import NO_TASK

        return replace(self, tasks=np.full(len(self), NO_TASK, dtype=object))

    def rewards_filled(self) -> np.ndarray:
        """Reward with unknown cells (errors) set to the lowest reward seen: what routers learn and are scored on."""
        r = self.reward
        low = float(np.nanmin(r)) if np.isfinite(r).any() else 0.0
        return np.nan_to_num(r, nan=low)

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
    objective: str = "reward",
    descriptions: dict[str, str] | None = None,
) -> RoutingData:
    """``objective="judge"`` makes the reward the judge score (the LLM-judge scenario); the log must have them."""
    if objective not in ("reward", "judge"):
        raise ValueError(f"objective must be 'reward' or 'judge', got {objective!r}")
    queries = log.drop_duplicates("query_id").set_index("query_id").sort_index()
    perf_w = wide(log, "performance").reindex(queries.index)
    cost_w = wide(log, "cost_usd").reindex(queries.index)
    judge_w = wide(log, "judge_score").reindex(queries.index)
    if cost_w.isna().all().all():
        logger.warning("the log has no costs: every candidate costs 0 (only performance can be traded)")
    cost_w = cost_w.fillna(0.0)
    tasks = queries["task"].astype(str).to_numpy()
    splits = queries["split"].astype(str).to_numpy()
    perf, cost, judge = perf_w.to_numpy(float), cost_w.to_numpy(float), judge_w.to_numpy(float)
    if normaliser is None:
        fit = splits == fit_split
        if not fit.any():
            raise ValueError(f"no {fit_split!r} queries to fit the reward normalisation on")
        normaliser = TaskNormaliser.fit(tasks[fit], perf[fit], cost[fit])
    perf_n, cost_n = normaliser.transform(tasks, perf, cost)
    X = embedding_matrix(embeddings, queries.index)
    cands = candidates_of(log)
    data = RoutingData(
        queries.index.to_numpy().astype(str), tasks, splits, cands, X,
        perf, cost, perf_n, cost_n, reward(perf_n, cost_n, alpha, beta), alpha, beta, normaliser,
        texts=queries["query"].astype(str).to_numpy(dtype=object), judge=judge,
        descriptions={c: (descriptions or {}).get(c, (descriptions or {}).get(c.split(":")[0], "")) for c in cands},
    )
    return data.with_judge() if objective == "judge" else data


def load_routing_data(
    log: str | Path | pd.DataFrame,
    *,
    embeddings: str | Path | pd.DataFrame | None = None,
    encoder: Encoder | None = None,
    scenario: Scenario | str = "performance_first",
) -> tuple[pd.DataFrame, RoutingData]:
    """The one way from files to routing data (the pipeline's stages, ``fusion route ...`` and the benchmarks):
    a routing log (a DataFrame, e.g. an imported one, or the canonical Parquet file) and its embeddings (a
    DataFrame, an embeddings file, or computed with ``encoder``, which caches them by content), under
    ``scenario``. Returns the log and the routing data."""
    frame = log if isinstance(log, pd.DataFrame) else read_log(Path(log))
    if embeddings is None:
        if encoder is None:
            raise ValueError("no embeddings given and no encoder to compute them with")
        from fusion.core.embedding import embed_queries

        emb = embed_queries(frame, encoder)
    else:
        emb = embeddings if isinstance(embeddings, pd.DataFrame) else read_embeddings(Path(embeddings))
    sc = resolve_scenario(scenario) if isinstance(scenario, str) else scenario
    return frame, build_routing_data(frame, emb, sc.alpha, sc.beta, objective=sc.objective)
