"""The importer registry, what an importer returns, and the final check every import ends with
(:func:`finalize`: precise messages, then the routing-log contract)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fusion.core.registry import Registry
from fusion.importers.errors import LogImportError
from fusion.importers.task_names import domains_for
from fusion.importers.values import examples, missing_score_errors
from fusion.log.schema import REQUIRED_NON_NULL, LogSchemaError, check_log, coerce_log

ROW = "_row"  # private column: where a row came from ("file.csv line 12"), used in error messages only


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


def score_matrix_columns(frame: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """The columns every import of a per-LLM score matrix (one answer per LLM, no prompting modes) sets the same
    way: mode ``direct``, the candidate ``<llm>:direct``, the task's domain, an error row where the source had no
    score, and the backend ``import:<fmt>``."""
    frame["mode"] = "direct"
    frame["candidate"] = frame["llm"] + ":direct"
    frame["domain"] = domains_for(frame["task"])
    frame["error"] = missing_score_errors(frame["performance"])
    frame["backend"] = f"import:{fmt}"
    return frame
