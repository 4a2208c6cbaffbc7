"""Reading source files: JSONL records and modification times."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fusion.importers.errors import LogImportError


def read_jsonl_records(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file (blank lines skipped); a bad line is an error naming its number."""
    records = []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise LogImportError(f"{path}: line {i} is not valid JSON: {exc}") from exc
            if not isinstance(rec, dict):
                raise LogImportError(f"{path}: line {i} is not a JSON object")
            records.append(rec)
    return records


def mtime_utc(path: Path) -> pd.Timestamp:
    """A file's modification time as a UTC timestamp (exact to the nanosecond)."""
    return pd.Timestamp(path.stat().st_mtime_ns, unit="ns", tz="UTC")
