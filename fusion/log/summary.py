"""What is in a routing log, in a few numbers and notes: for import reports, the CLI and data checks.

``summarize(df)`` works on any coerced log; importers add their own notes (ignored columns, estimates, ...).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # rich is imported lazily, only to draw
    from rich.table import Table

# The ``error`` of a row whose source cell had no score (kept as a row, never dropped).
MISSING_SCORE = "missing score in source"


@dataclass
class ImportSummary:
    format: str
    source: str
    n_rows: int
    n_queries: int
    n_candidates: int
    candidates: list[str]
    queries_per_task: dict[str, int]
    queries_per_split: dict[str, int]
    queries_per_domain: dict[str, int] = field(default_factory=dict)
    missing_cells: int = 0  # rows with error == MISSING_SCORE
    n_errors: int = 0  # rows with any error
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.queries_per_task)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["n_tasks"] = self.n_tasks
        return d

    def to_table(self) -> Table:
        from rich.table import Table

        table = Table(title=f"{self.format} log: {self.source}" if self.source else f"{self.format} log")
        table.add_column("", style="bold", no_wrap=True)
        table.add_column("value", overflow="fold")
        table.add_row("rows", f"{self.n_rows:,}")
        table.add_row("queries", f"{self.n_queries:,}")
        table.add_row("candidates", f"{self.n_candidates}: " + ", ".join(self.candidates))
        table.add_row("splits", _counts(self.queries_per_split))
        table.add_row(f"tasks ({self.n_tasks})", _counts(self.queries_per_task))
        if self.queries_per_domain:
            table.add_row("domains", _counts(self.queries_per_domain))
        table.add_row("missing scores", f"{self.missing_cells:,}")
        table.add_row("rows with an error", f"{self.n_errors:,}")
        if self.seconds is not None:
            table.add_row("import time", f"{self.seconds:.2f} s")
        for i, note in enumerate(self.notes):
            table.add_row("notes" if i == 0 else "", f"- {note}")
        return table

    def render(self, width: int = 120) -> str:
        """The table as plain text (no colour codes)."""
        from rich.console import Console

        console = Console(file=io.StringIO(), width=width, no_color=True, color_system=None)
        console.print(self.to_table())
        return console.file.getvalue()  # type: ignore[attr-defined]


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in d.items()) or "-"


def _queries_per(df: pd.DataFrame, col: str) -> dict[str, int]:
    per_query = df.drop_duplicates("query_id")
    counts = per_query[col].astype("string").fillna("<null>").value_counts()
    return {str(k): int(v) for k, v in sorted(counts.items())}


def _generic_notes(df: pd.DataFrame, missing: int) -> list[str]:
    notes: list[str] = []
    if missing:
        miss = df[df["error"] == MISSING_SCORE]
        by_cand = miss["candidate"].value_counts()
        notes.append(
            f"{missing:,} cell(s) had no score in the source, in {miss['query_id'].nunique():,} queries: kept as "
            f"rows with performance null and error={MISSING_SCORE!r} "
            f"(by candidate: {', '.join(f'{k} {v}' for k, v in by_cand.items())})"
        )
    n_cand = df["candidate"].nunique()
    per_query = df.groupby("query_id", observed=True)["candidate"].nunique()
    ragged = int((per_query < n_cand).sum())
    if ragged:
        notes.append(f"{ragged:,} queries lack a row for some candidate (the log is not rectangular)")
    texts = df.drop_duplicates("query_id")[["query_id", "query", "task", "split"]]
    multi_task = texts.groupby("query", observed=True)["task"].nunique()
    n_multi = int((multi_task > 1).sum())
    if n_multi:
        notes.append(f"{n_multi:,} query text(s) appear under more than one task (kept as distinct queries)")
    n_split = texts.groupby("query", observed=True)["split"].nunique()
    repeated = n_split[n_split > 1].index
    if len(repeated):
        sub = texts[texts["query"].isin(repeated)]
        combos = sub.groupby("query", observed=True)["split"].agg(lambda s: "+".join(sorted(set(s))))
        combo_txt = ", ".join(f"{k}: {v}" for k, v in combos.value_counts().sort_index().items())
        rows = df[df["query"].isin(repeated)]
        perf = rows.groupby(["query", "candidate"], observed=True)["performance"].nunique(dropna=False)
        n_diff = perf[perf > 1].reset_index()["query"].nunique()
        notes.append(
            f"{len(repeated):,} query text(s) appear word for word in more than one split ({combo_txt}), "
            f"{n_diff:,} of them with different scores: kept as separate queries; beware of train/test leakage"
        )
    return notes


def summarize(
    df: pd.DataFrame,
    *,
    format: str = "log",
    source: str = "",
    notes: Iterable[str] = (),
    seconds: float | None = None,
) -> ImportSummary:
    """Counts and notes for a coerced routing log (any log, imported or collected)."""
    missing = int((df["error"] == MISSING_SCORE).fillna(False).sum())
    return ImportSummary(
        format=format,
        source=str(source),
        n_rows=len(df),
        n_queries=int(df["query_id"].nunique()),
        n_candidates=int(df["candidate"].nunique()),
        candidates=sorted(df["candidate"].dropna().unique().tolist()),
        queries_per_task=_queries_per(df, "task"),
        queries_per_split=_queries_per(df, "split"),
        queries_per_domain=_queries_per(df, "domain"),
        missing_cells=missing,
        n_errors=int(df["error"].notna().sum()),
        notes=[*notes, *_generic_notes(df, missing)],
        seconds=seconds,
    )


def error_kinds(errors: pd.Series) -> pd.Series:
    """The kind of each error message: its text before the first ``:`` or ``(`` (``http 429``, ``timeout``,
    ``connection failed``, ``malformed response``, ``generation failed``, ``scoring failed``, ...)."""
    return errors.astype("string").str.extract(r"^([^:(]+)", expand=False).str.strip()


def error_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Error rows per candidate and kind, with the share of the candidate's rows and one example message."""
    cols = ["candidate", "kind", "rows", "share", "example"]
    err = df[df["error"].notna()]
    if err.empty:
        return pd.DataFrame(columns=cols)
    per_cand = df.groupby("candidate", observed=True).size()
    g = err.assign(kind=error_kinds(err["error"])).groupby(["candidate", "kind"], observed=True)
    out = g.agg(rows=("error", "size"), example=("error", "first")).reset_index()
    out["share"] = out["rows"] / out["candidate"].map(per_cand).astype(float)
    return out[cols].sort_values(["candidate", "rows"], ascending=[True, False]).reset_index(drop=True)
