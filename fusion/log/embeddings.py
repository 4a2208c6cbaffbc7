"""The embeddings file of the data contract: ``query_id`` and ``embedding`` (a float32 list, L2-normalised), one row
per query, stored as Parquet beside the routing log (never as text in a CSV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_embeddings(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.assign(embedding=[np.asarray(v, dtype=np.float32).tolist() for v in df["embedding"]])
    out.to_parquet(path, index=False)
    return path


def read_embeddings(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"embeddings not found: {path} (run `fusion embed` first)")
    return pd.read_parquet(path)


def embedding_matrix(emb: pd.DataFrame, query_ids: list[str] | pd.Index) -> np.ndarray:
    """Rows of ``emb`` in the order of ``query_ids``; a missing id is an error, not a silent zero."""
    idx = pd.Index(emb["query_id"].astype(str))
    pos = idx.get_indexer(pd.Index([str(q) for q in query_ids]))
    if (pos < 0).any():
        missing = [q for q, p in zip(query_ids, pos, strict=True) if p < 0][:3]
        raise KeyError(f"{int((pos < 0).sum())} queries have no embedding, e.g. {missing}")
    return np.stack([np.asarray(emb["embedding"].iloc[p], dtype=np.float32) for p in pos])
