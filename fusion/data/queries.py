"""Stage ``queries``: build the query table (what every candidate will be asked) and assign routing splits."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.data.config import QueriesConfig

logger = logging.getLogger(__name__)

QUERY_COLUMNS = ["query_id", "task", "domain", "split", "query", "ground_truth", "metric"]


def assign_splits(queries: pd.DataFrame, test_fraction: float, seed: int) -> pd.Series:
    """Per task, a seeded permutation puts round(test_fraction * n) queries in test, the rest in train.

    Stratifying by task keeps every task in both splits even at a handful of queries per task; the result depends
    only on the query ids and the seed, not on row order.
    """
    split = pd.Series("train", index=queries.index, dtype="string")
    for _, idx in queries.groupby("task", sort=True).groups.items():
        ids = queries.loc[idx, "query_id"].sort_values()
        rng = np.random.default_rng([seed, len(ids)])
        order = ids.index.to_numpy()[rng.permutation(len(ids))]
        n_test = int(round(test_fraction * len(ids)))
        if len(ids) >= 2:
            n_test = min(max(n_test, 1), len(ids) - 1)
        split.loc[order[:n_test]] = "test"
    return split


def build_queries(cfg: QueriesConfig) -> pd.DataFrame:
    from fusion.tasks import load_queries

    frames = []
    for src in cfg.sources:
        df = load_queries(src.task, src.source, split=src.split, limit=src.limit, seed=cfg.seed)
        logger.info("%s: %d queries from %s", src.task, len(df), src.source)
        frames.append(df)
    queries = pd.concat(frames, ignore_index=True)
    dup = queries.duplicated("query_id")
    if dup.any():
        raise ValueError(
            f"{int(dup.sum())} queries appear in more than one source "
            f"(e.g. {queries.loc[dup, 'query_id'].iloc[0]}); list each task once in queries.sources"
        )
    queries["split"] = assign_splits(queries, cfg.test_fraction, cfg.seed)
    return queries[QUERY_COLUMNS].astype("string").sort_values("query_id").reset_index(drop=True)


def write_queries(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(path, index=False)
    return path


def read_queries(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"query table not found: {path} (run `fusion queries` first)")
    df = pd.read_parquet(path)
    missing = [c for c in QUERY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: query table lacks columns {missing}")
    return df
