"""Helpers shared by the log importers: the registry, errors, task names and domains, value parsing, splits.

Everything here is vectorised over *distinct* values (a routing log repeats each query text and each score
string many times), so parsing stays fast on tens of thousands of cells.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.log.schema import (
    REQUIRED_NON_NULL,
    SPLITS,
    LogSchemaError,
    check_log,
    coerce_log,
    make_query_id,
)
from fusion.log.summary import MISSING_SCORE
from fusion.registry import Registry

logger = logging.getLogger(__name__)

ROW = "_row"  # private column: where a row came from ("file.csv line 12"), used in error messages only
NULL_TOKENS = frozenset({"", "nan", "none", "null", "na", "n/a"})


# --------------------------------------------------------------------------------------------- errors
class LogImportError(LogSchemaError):
    """A source cannot be imported as a routing log. The message names the file, the column and example rows."""


class UnknownFormatError(LogImportError):
    """The format name is not registered; the message lists the known ones."""


class SourceNotFoundError(LogImportError, FileNotFoundError):
    """The source file or folder does not exist."""


# ------------------------------------------------------------------------------------------- registry
@dataclass
class Imported:
    """What an importer hands back: rows with (a subset of) the log's columns, plus notes for the summary.

    ``frame`` may carry the private column ``_row`` (a human-readable source location per row); it is used
    for error messages and removed before the log is coerced.
    """

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


Importer = Callable[..., Imported]
IMPORTERS: Registry[Importer] = Registry("log format")


# -------------------------------------------------------------------------------- tasks and domains
DOMAINS: dict[str, tuple[str, ...]] = {
    "math": ("gsm8k", "math", "agentverse-mgsm"),
    "code": ("mbpp", "human_eval"),
    "commonsense": ("commonsense_qa", "openbook_qa", "arc_challenge", "hellaswag", "winogrande"),
    "world_knowledge": ("natural_qa", "trivia_qa"),
    "reading": ("squad", "boolq"),
    "popular": ("mmlu", "gpqa"),
}
TASK_DOMAIN: dict[str, str] = {task: dom for dom, tasks in DOMAINS.items() for task in tasks}
OTHER_DOMAIN = "other"
# Names other sources use for our tasks (RouterBench's eval names, common spellings).
TASK_ALIASES: dict[str, str] = {
    "arc-challenge": "arc_challenge",
    "arc_c": "arc_challenge",
    "winograde": "winogrande",
    "grade-school-math": "gsm8k",
    "humaneval": "human_eval",
    "human-eval": "human_eval",
    "openai_humaneval": "human_eval",
    "commonsense-qa": "commonsense_qa",
    "commonsenseqa": "commonsense_qa",
    "openbookqa": "openbook_qa",
    "openbook-qa": "openbook_qa",
    "natural_questions": "natural_qa",
    "natural-questions": "natural_qa",
    "nq": "natural_qa",
    "triviaqa": "trivia_qa",
    "trivia-qa": "trivia_qa",
    "mgsm": "agentverse-mgsm",
}


def normalise_task_name(name: str) -> str:
    """Map a source's task name to ours: aliases first, then ``-`` → ``_`` when that names a known task.

    Names we do not know are kept (lower-cased, stripped): e.g. ``agentverse-logicgrid`` stays as it is.
    """
    key = str(name).strip().lower()
    if key in TASK_ALIASES:
        return TASK_ALIASES[key]
    if key in TASK_DOMAIN:
        return key
    underscored = key.replace("-", "_")
    if underscored in TASK_DOMAIN:
        return underscored
    return key


def domain_of(task: str) -> str:
    if task in TASK_DOMAIN:
        return TASK_DOMAIN[task]
    if task.startswith("mmlu"):  # RouterBench splits MMLU by subject: mmlu-abstract-algebra, ...
        return "popular"
    return OTHER_DOMAIN


def map_distinct(values: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    """Apply ``fn`` once per distinct non-null value of ``values`` (nulls stay null)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([fn(u) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype=object)


def normalise_tasks(names: pd.Series) -> pd.Series:
    return map_distinct(names, normalise_task_name).astype("string")


def domains_for(tasks: pd.Series) -> pd.Series:
    return map_distinct(tasks, domain_of).astype("string")


def unknown_task_note(tasks: pd.Series) -> list[str]:
    unknown = sorted(t for t in pd.unique(tasks.dropna()) if domain_of(t) == OTHER_DOMAIN)
    if not unknown:
        return []
    return [f"{len(unknown)} task(s) not in the FusionBench domain table, domain set to 'other': {unknown}"]


# ---------------------------------------------------------------------------------- error messages
def _show(v: Any) -> str:
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars: 1.5, not np.float64(1.5)
        v = v.item()
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def examples(mask: pd.Series, rows: pd.Series | None, values: pd.Series | None = None, n: int = 3) -> str:
    """A short ``"line 4: 'abc', line 9: 'x'"`` listing of the first rows where ``mask`` holds."""
    idx = mask[mask.fillna(False).astype(bool)].index[:n]
    parts = []
    for i in idx:
        where = str(rows.loc[i]) if rows is not None else f"row {i}"
        parts.append(f"{where}: {_show(values.loc[i])}" if values is not None else where)
    return ", ".join(parts)


# ------------------------------------------------------------------------------------ value parsing
def _null_like(values: pd.Series) -> pd.Series:
    isna = values.isna()
    as_str = values.astype("string").str.strip().str.lower()
    return isna | as_str.isin(NULL_TOKENS).fillna(False).astype(bool)


def _to_number(x: Any) -> float:
    if isinstance(x, bool | int | float) and not isinstance(x, complex):
        return float(x)
    raise ValueError(f"not a number: {x!r}")


def parse_score_value(text: Any) -> float:
    """One score: a number, or a Python literal such as ``"{'pass@1': 1.0}"`` (one value, or ``pass@1``)."""
    if isinstance(text, bool | int | float):
        return float(text)
    s = str(text).strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        obj = ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"neither a number nor a Python literal: {s[:80]!r}") from exc
    if isinstance(obj, dict):
        if "pass@1" in obj:
            return _to_number(obj["pass@1"])
        if len(obj) == 1:
            return _to_number(next(iter(obj.values())))
        raise ValueError(f"a dict with keys {sorted(map(str, obj))}: expected one value or 'pass@1'")
    if isinstance(obj, list | tuple) and len(obj) == 1:
        return _to_number(obj[0])
    return _to_number(obj)


def parse_numbers(
    values: pd.Series,
    *,
    source: str,
    column: str,
    rows: pd.Series | None = None,
    scores: bool = False,
) -> pd.Series:
    """Parse a column to float64, nulls (and null-like strings) kept null, anything else refused loudly.

    With ``scores=True`` a value may also be a literal dict or one-element list (FusionBench writes code
    scores as ``"{'pass@1': 1.0}"``). Returns a ``Float64`` series.
    """
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype("Float64")
    null = _null_like(values)
    text = values.astype("string").str.strip()
    out = pd.to_numeric(text.where(~null), errors="coerce").astype("Float64")
    todo = out.isna() & ~null
    if todo.any():
        bad: dict[Hashable, str] = {}

        def _parse(v: Any) -> float | None:
            try:
                return parse_score_value(v) if scores else _to_number(float(str(v).strip()))
            except (ValueError, TypeError) as exc:
                bad[v] = str(exc)
                return None

        parsed = map_distinct(text[todo], _parse)
        if bad:
            failed = todo & text.isin(list(bad))
            kind = "a number nor a score dict like \"{'pass@1': 1.0}\"" if scores else "a number"
            raise LogImportError(
                f"{source}: column {column!r} has {int(failed.sum())} value(s) that are neither {kind}, "
                f"e.g. {examples(failed, rows, values)}"
            )
        out[todo] = pd.to_numeric(parsed, errors="coerce").astype("Float64")
    nonfinite = out.notna() & ~np.isfinite(out.astype("float64").fillna(0.0))
    if nonfinite.any():
        raise LogImportError(
            f"{source}: column {column!r} has infinite values, e.g. {examples(nonfinite, rows, values)}"
        )
    return out


def parse_literal_text(values: pd.Series) -> tuple[pd.Series, int]:
    """Turn strings of Python lists (``"['turn 1', 'turn 2']"``) into text, turns joined with ``"\\n"``.

    Real lists are joined too. A value that does not parse as a list is kept as it is. Returns the texts
    (``string`` dtype) and the number of distinct non-null values kept raw.
    """
    raw = 0

    def _one(v: Any) -> str:
        nonlocal raw
        if isinstance(v, list | tuple):
            return "\n".join(map(str, v))
        s = str(v)
        stripped = s.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                obj = ast.literal_eval(stripped)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                obj = None
            if isinstance(obj, list):
                return "\n".join(map(str, obj))
        raw += 1
        return s

    if values.dtype == object:
        # lists are unhashable: factorize the string form, keep the first original per distinct string
        keyed = values.map(lambda v: repr(list(v)) if isinstance(v, list | tuple) else v)
        firsts = values.groupby(keyed, sort=False, dropna=True).first()
        lookup = {k: _one(v) for k, v in firsts.items()}
        out = keyed.map(lookup)
    else:
        out = map_distinct(values, _one)
    return out.astype("string"), raw


# ------------------------------------------------------------------------------------------- splits
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


# --------------------------------------------------------------------------------------------- misc
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


def estimate_tokens(texts: pd.Series) -> pd.Series:
    """A rough token count: ``ceil(chars / 4)`` (the usual English rule of thumb), nullable Int64."""
    n = texts.astype("string").str.len().astype("Float64")
    return np.ceil(n / 4.0).astype("Int64")


def listing(items: Iterable[Any], n: int = 5) -> str:
    items = list(items)
    head = ", ".join(map(str, items[:n]))
    return head + (f", ... (+{len(items) - n})" if len(items) > n else "")


def make_query_ids(task: pd.Series, query: pd.Series, namespace: pd.Series | str = "") -> pd.Series:
    """``make_query_id`` for every row, computed once per distinct (namespace, task, query)."""
    ns = namespace if isinstance(namespace, pd.Series) else pd.Series(namespace, index=task.index)
    keys = pd.MultiIndex.from_arrays([ns.astype(object), task.astype(object), query.astype(object)])
    codes, uniques = keys.factorize()
    ids = np.array([make_query_id(str(t), str(q), namespace=str(n)) for n, t, q in uniques], dtype=object)
    return pd.Series(ids[codes], index=task.index, dtype="string")


def missing_score_errors(perf: pd.Series) -> pd.Series:
    """``error`` column: ``MISSING_SCORE`` where the source had no score, null elsewhere."""
    return pd.Series(pd.NA, index=perf.index, dtype="string").mask(perf.isna(), MISSING_SCORE)


# ------------------------------------------------------------------------------------------ finalise
def finalize(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Check an importer's rows with precise messages, then coerce and validate them against the contract."""
    frame = frame.reset_index(drop=True)
    rows = frame.pop(ROW) if ROW in frame.columns else None
    for col in REQUIRED_NON_NULL:
        if col in frame.columns:
            null = frame[col].isna()
            if null.any():
                raise LogImportError(
                    f"{source}: {int(null.sum())} row(s) have no {col!r}, e.g. {examples(null, rows)}"
                )
    if {"query_id", "candidate"} <= set(frame.columns):
        dup = frame.duplicated(["query_id", "candidate"], keep=False)
        if dup.any():
            shown = frame.loc[dup].sort_values(["query_id", "candidate"], kind="stable").head(4)
            ex = ", ".join(
                f"{rows.loc[i] if rows is not None else f'row {i}'} "
                f"(task {r.get('task')!s}, candidate {r['candidate']!s}, query {str(r.get('query'))[:50]!r})"
                for i, r in shown.iterrows()
            )
            raise LogImportError(
                f"{source}: {int(dup.sum())} rows repeat a (query, candidate) pair; each query must have at "
                f"most one row per candidate. e.g. {ex}"
            )
    if "performance" in frame.columns:
        perf = pd.to_numeric(frame["performance"], errors="coerce").astype("float64")
        bad = (perf < 0) | (perf > 1)
        if bad.any():
            raise LogImportError(
                f"{source}: column 'performance' has {int(bad.sum())} value(s) outside [0, 1], "
                f"e.g. {examples(bad, rows, frame['performance'])}"
            )
    try:
        out = coerce_log(frame)
    except LogSchemaError as exc:
        raise LogImportError(f"{source}: {exc}") from exc
    problems = check_log(out)
    if problems:
        raise LogImportError(f"{source}: inconsistent routing log:\n  - " + "\n  - ".join(problems))
    return out
