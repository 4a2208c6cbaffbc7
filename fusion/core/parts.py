"""Append-only Parquet parts: how collection and judging survive a kill. A part is written to a temporary name
and renamed, so it is either whole or absent; part names start with their UTC write time, so reading them in
name order and keeping the last row per key lets a later part (a retried error) replace an earlier one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd


def write_part(d: Path, frame: pd.DataFrame) -> Path:
    d = Path(d)
    name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = d / f".{name}.tmp"
    frame.to_parquet(tmp, index=False)
    return tmp.replace(d / name)


def read_parts(d: Path, key: list[str], empty: pd.DataFrame) -> pd.DataFrame:
    """Every part's rows, the last one per ``key``; ``empty`` (with the right columns) when there is none."""
    files = sorted(Path(d).glob("part-*.parquet"))
    if not files:
        return empty
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return df.drop_duplicates(key, keep="last").reset_index(drop=True)


def typed(frame: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """``frame`` with exactly ``columns`` (name -> dtype; a missing one all null), each cast to its dtype, datetimes
    as UTC: what a part is written as and read back as."""
    out = frame.reindex(columns=list(columns))
    for c, t in columns.items():
        out[c] = pd.to_datetime(out[c], utc=True) if t.startswith("datetime") else out[c].astype(t)
    return out
