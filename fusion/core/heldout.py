"""Every level's held-out rows in one layout: per (level, arm, query) the task metric's score, the cost in USD and the
tokens. Each evaluation writes its rows (:func:`write_per_query`); the promotion gates read an arm's scores back
(:func:`arm_scores`) and :mod:`fusion.core.summary` compares the levels on the queries they share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

PER_QUERY_COLUMNS = ["level", "arm", "query_id", "task", "performance", "cost", "input_tokens", "output_tokens"]


def per_query_table(level: str, arms: dict[str, pd.DataFrame], price: tuple[float, float] | None = None,
                    models_per_token: dict[str, int] | None = None) -> pd.DataFrame:
    """Every arm's held-out rows in the one layout all levels write (``PER_QUERY_COLUMNS``, plus ``reward`` where the
    arm has one): what the cross-level summary and the gates read. An arm without a ``cost`` column is priced from
    its tokens at ``price`` (USD per 1M input and output tokens), times ``models_per_token[arm]`` for an arm that
    runs several models at each step (FusionRoute: the router and every expert); no price, no cost (NaN)."""
    frames = []
    for arm, a in arms.items():
        f = pd.DataFrame({"level": level, "arm": arm, "query_id": a["query_id"].astype(str).to_numpy(),
                          "task": a["task"].astype(str).to_numpy(),
                          "performance": pd.to_numeric(a["performance"], errors="coerce").fillna(0.0).to_numpy()})
        for col in ("input_tokens", "output_tokens"):
            f[col] = pd.to_numeric(a[col], errors="coerce").to_numpy() if col in a else np.nan
        if "cost" in a:
            f["cost"] = pd.to_numeric(a["cost"], errors="coerce").to_numpy()
        elif price is not None:
            f["cost"] = ((f["input_tokens"].fillna(0) * price[0] + f["output_tokens"].fillna(0) * price[1]) / 1e6
                         * (models_per_token or {}).get(arm, 1))
        else:
            f["cost"] = np.nan
        if "reward" in a:
            f["reward"] = pd.to_numeric(a["reward"], errors="coerce").to_numpy()
        frames.append(f)
    cols = PER_QUERY_COLUMNS + (["reward"] if any("reward" in f for f in frames) else [])
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=PER_QUERY_COLUMNS)


def write_per_query(frame: pd.DataFrame, path: Path) -> Path:
    """Write a level's held-out rows (:func:`per_query_table`; an empty table for a disabled level)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def arm_scores(frame: pd.DataFrame, arm: str, query_ids: Sequence[str] | None = None,
               column: str = "performance") -> np.ndarray:
    """One arm's per-query ``column`` from a level's held-out rows, in the order of ``query_ids`` (default: its own
    order); a KeyError names a query the arm did not answer."""
    rows = frame[frame["arm"] == arm].set_index("query_id")
    if rows.empty:
        raise KeyError(f"no held-out rows of arm {arm!r}")
    if query_ids is None:
        return rows[column].to_numpy(float)
    missing = [q for q in query_ids if q not in rows.index]
    if missing:
        raise KeyError(f"arm {arm!r} did not answer {len(missing)} of the queries (e.g. {missing[:3]})")
    return rows.loc[list(query_ids), column].to_numpy(float)
