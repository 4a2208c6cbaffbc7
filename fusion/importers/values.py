"""Parsing the values of imported cells (scores, numbers, literal texts) and the error examples that name rows.

Everything is vectorised over *distinct* values (a routing log repeats each query text and each score string many
times), so parsing stays fast on tens of thousands of cells."""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from fusion.importers.errors import LogImportError
from fusion.log.summary import MISSING_SCORE

logger = logging.getLogger(__name__)


NULL_TOKENS = frozenset({"", "nan", "none", "null", "na", "n/a"})


def map_distinct(values: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    """Apply ``fn`` once per distinct non-null value of ``values`` (nulls stay null)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    mapped = np.array([fn(u) for u in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=values.index, dtype=object)


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


def estimate_tokens(texts: pd.Series) -> pd.Series:
    """A rough token count: ``ceil(chars / 4)`` (the usual English rule of thumb), nullable Int64."""
    n = texts.astype("string").str.len().astype("Float64")
    return np.ceil(n / 4.0).astype("Int64")


def listing(items: Iterable[Any], n: int = 5) -> str:
    items = list(items)
    head = ", ".join(map(str, items[:n]))
    return head + (f", ... (+{len(items) - n})" if len(items) > n else "")


def missing_score_errors(perf: pd.Series) -> pd.Series:
    """``error`` column: ``MISSING_SCORE`` where the source had no score, null elsewhere."""
    return pd.Series(pd.NA, index=perf.index, dtype="string").mask(perf.isna(), MISSING_SCORE)
