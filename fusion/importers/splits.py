"""Query ids and splits of imported rows: content-derived ids, and deterministic hash splits."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from fusion.importers.errors import LogImportError
from fusion.importers.values import map_distinct
from fusion.log.schema import SPLITS, make_query_id


def check_split_name(split: str | None) -> str | None:
    if split is not None and split not in SPLITS:
        raise LogImportError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


def hash_splits(
    query_ids: pd.Series, *, test_fraction: float = 0.2, val_fraction: float = 0.0, seed: int = 0
) -> pd.Series:
    """Deterministic split per query id: a SHA-1 of ``seed`` and the id mapped to [0, 1).

    The same id always lands in the same split (for a given seed and fractions), in any log and on any
    machine; the fractions hold in expectation, not exactly.
    """
    if not (0.0 <= test_fraction < 1.0 and 0.0 <= val_fraction < 1.0 and test_fraction + val_fraction < 1.0):
        raise LogImportError(
            f"test_fraction and val_fraction must be in [0, 1) with a sum below 1, got "
            f"test_fraction={test_fraction}, val_fraction={val_fraction}"
        )

    def _split(qid: str) -> str:
        h = hashlib.sha1(f"{seed}\x1f{qid}".encode()).hexdigest()[:13]
        u = int(h, 16) / float(16**13)
        if u < test_fraction:
            return "test"
        if u < test_fraction + val_fraction:
            return "val"
        return "train"

    return map_distinct(query_ids, _split).astype("string")


def make_query_ids(task: pd.Series, query: pd.Series, namespace: pd.Series | str = "") -> pd.Series:
    """``make_query_id`` for every row, computed once per distinct (namespace, task, query)."""
    ns = namespace if isinstance(namespace, pd.Series) else pd.Series(namespace, index=task.index)
    keys = pd.MultiIndex.from_arrays([ns.astype(object), task.astype(object), query.astype(object)])
    codes, uniques = keys.factorize()
    ids = np.array([make_query_id(str(t), str(q), namespace=str(n)) for n, t, q in uniques], dtype=object)
    return pd.Series(ids[codes], index=task.index, dtype="string")
