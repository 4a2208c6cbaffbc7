"""The canonical routing log itself ("long" format: one row per (query, candidate)) from CSV, JSONL or Parquet.

Strict: a column that is not in the contract is refused by name. Optional columns that are absent are filled:
``mode`` with ``"direct"`` (only when the whole column is absent), ``candidate`` from ``llm:mode``, ``domain``
from the task table, ``backend`` with ``"import:long"``, ``collected_at`` with the file's modification time,
the others with nulls.

CSV convention (what :func:`write_long` writes): an unquoted empty field is null, a quoted ``""`` is the
empty string. A CSV written with pandas' defaults cannot tell the two apart; both read as null.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.importers.errors import LogImportError
from fusion.importers.files import mtime_utc, read_jsonl_records
from fusion.importers.registry import IMPORTERS, ROW, Imported
from fusion.importers.task_names import domains_for
from fusion.importers.values import examples, parse_numbers
from fusion.log.schema import COLUMNS, MODES, coerce_log, validate_or_raise

logger = logging.getLogger(__name__)

FORMAT = "long"
REQUIRED = ("query_id", "task", "split", "query", "llm")
NUMERIC = tuple(c for c, t in COLUMNS.items() if t in ("Int64", "Float64"))
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def _kind(path: Path) -> str:
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise LogImportError(
            f"{path}: cannot tell the file type from the suffix {path.suffix!r}; "
            f"use one of {sorted(SUFFIXES)}"
        )
    return kind


def _read_csv(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with path.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise LogImportError(f"{path}: empty CSV file (no header)")
    _check_columns(header, path)
    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in header},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return table.to_pandas()


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = read_jsonl_records(path)
    columns = list(dict.fromkeys(k for rec in records for k in rec))
    _check_columns(columns, path)
    return pd.DataFrame.from_records(records, columns=columns)


def _check_columns(columns: list[str], path: Path) -> None:
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise LogImportError(
            f"{path}: unknown column(s) {unknown}; a long routing log has only the contract's columns "
            f"{list(COLUMNS)}"
        )
    dup = sorted({c for c in columns if columns.count(c) > 1})
    if dup:
        raise LogImportError(f"{path}: repeated column(s) {dup}")


@IMPORTERS.register(FORMAT)
def import_long(src: Path) -> Imported:
    """Import a canonical log from ``.csv``, ``.jsonl`` or ``.parquet`` (see the module docstring)."""
    df, notes = read_long_raw(src)
    source = str(src)
    rows = df[ROW]
    for col in NUMERIC:
        if col in df.columns:
            df[col] = parse_numbers(df[col], source=source, column=col, rows=rows)
    return Imported(frame=df, notes=notes, files=[Path(src)])


def read_long_raw(src: Path) -> tuple[pd.DataFrame, list[str]]:
    """A long log's rows as read, with the optional columns filled as the module docstring says, but numbers
    left as they came (ingestion quarantines a row whose value is not a number instead of refusing the file).
    Column problems (unknown, repeated, required missing) and bad modes or candidates still raise."""
    path = Path(src)
    if path.is_dir():
        raise LogImportError(f"{path}: the long format reads one file, not a directory")
    kind = _kind(path)
    if kind == "csv":
        df = _read_csv(path)
    elif kind == "jsonl":
        df = _read_jsonl(path)
    else:
        df = pd.read_parquet(path)
        _check_columns([str(c) for c in df.columns], path)
    df = df.reset_index(drop=True)
    source = str(path)
    notes: list[str] = []
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise LogImportError(
            f"{source}: missing required column(s) {missing}; a long log needs {list(REQUIRED)}"
        )
    rows = pd.Series([f"row {i + 1}" for i in range(len(df))], index=df.index, dtype=object)
    if "mode" not in df.columns:
        df["mode"] = "direct"
        notes.append("no 'mode' column: every row is mode 'direct'")
    bad_mode = df["mode"].notna() & ~df["mode"].isin(MODES)
    if bad_mode.any():
        raise LogImportError(
            f"{source}: column 'mode' must be one of {list(MODES)}, e.g. {examples(bad_mode, rows, df['mode'])}"
        )
    derived = df["llm"].astype("string") + ":" + df["mode"].astype("string")
    if "candidate" not in df.columns:
        df["candidate"] = derived
        notes.append("no 'candidate' column: filled from llm:mode")
    else:
        cand = df["candidate"].astype("string")
        fill = cand.isna() & derived.notna()
        if fill.any():
            df["candidate"] = cand.mask(fill, derived)
            notes.append(f"{int(fill.sum()):,} empty candidate cell(s) filled from llm:mode")
        clash = (df["candidate"].astype("string") != derived).fillna(False).astype(bool)
        if clash.any():
            raise LogImportError(
                f"{source}: column 'candidate' must be 'llm:mode', not so in {int(clash.sum())} row(s), "
                f"e.g. {examples(clash, rows, df['candidate'])}"
            )
    if "domain" not in df.columns:
        df["domain"] = domains_for(df["task"].astype("string"))
        notes.append("no 'domain' column: filled from the task -> domain table")
    if "backend" not in df.columns:
        df["backend"] = f"import:{FORMAT}"
        notes.append(f"no 'backend' column: set to 'import:{FORMAT}'")
    if "collected_at" not in df.columns:
        df["collected_at"] = mtime_utc(path)
        notes.append("no 'collected_at' column: set to the file's modification time")
    absent = [c for c in COLUMNS if c not in df.columns]
    if absent:
        notes.append(f"absent optional columns left null: {absent}")
    df[ROW] = rows
    logger.debug("read %d rows of a long log from %s", len(df), source)
    return df, notes


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    raise TypeError(f"cannot write {type(v).__name__} to JSON")


def _jsonl_text(log: pd.DataFrame) -> str:
    cols = {}
    for col in log.columns:
        s = log[col]
        if col == "collected_at":
            s = s.astype("string")  # ISO text, nanoseconds kept
        cols[col] = s.astype(object).where(s.notna(), None)
    records = pd.DataFrame(cols).to_dict(orient="records")
    return "".join(json.dumps(rec, ensure_ascii=False, default=_json_default) + "\n" for rec in records)


def write_long(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a routing log as ``.csv``, ``.jsonl`` or ``.parquet`` (by suffix), readable back exactly by
    ``import_log(path, "long")``: floats keep every digit, nulls stay distinct from empty strings."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    kind = _kind(path)
    log = validate_or_raise(coerce_log(df))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if kind == "parquet":
        log.to_parquet(tmp, index=False)
    elif kind == "csv":
        out = log.copy()
        out["collected_at"] = out["collected_at"].astype("string")  # ISO text, nanoseconds kept
        table = pa.Table.from_pandas(out, preserve_index=False)
        pacsv.write_csv(table, tmp, write_options=pacsv.WriteOptions(quoting_style="all_valid"))
    else:
        tmp.write_text(_jsonl_text(log), encoding="utf-8")
    tmp.replace(path)
    return path
