"""The routing log: one row per (query, candidate), stored as Parquet.

This module is the contract between all stages. It knows no stage. A *candidate* is an (LLM, mode) pair and is
named ``"<llm>:<mode>"``. Every query has an explicit, content-derived ``query_id``; rows are never matched by
position.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

MODES = ("direct", "think")
SPLITS = ("train", "val", "test")

# name -> pandas dtype. Nullable dtypes where a value can be legitimately missing.
COLUMNS: dict[str, str] = {
    "query_id": "string",
    "task": "string",
    "domain": "string",
    "split": "string",
    "query": "string",
    "prompt": "string",
    "ground_truth": "string",
    "metric": "string",
    "llm": "string",
    "mode": "string",
    "candidate": "string",
    "response": "string",
    "input_tokens": "Int64",
    "output_tokens": "Int64",
    "tokens_source": "string",  # where the token counts came from: tokenizer | server | log (null: unknown)
    "cost_usd": "Float64",
    "latency_s": "Float64",
    "performance": "Float64",
    "judge_score": "Float64",
    "error": "string",
    "backend": "string",
    "collected_at": "datetime64[ns, UTC]",
}

# Columns that must be present and non-null on every row.
REQUIRED_NON_NULL = ("query_id", "task", "split", "query", "llm", "mode", "candidate", "backend")


class LogSchemaError(ValueError):
    """A routing log (or an input being imported into one) breaks the contract. The message says where."""


def candidate_name(llm: str, mode: str) -> str:
    if mode not in MODES:
        raise LogSchemaError(f"mode must be one of {MODES}, got {mode!r}")
    return f"{llm}:{mode}"


def make_query_id(task: str, query: str, namespace: str = "") -> str:
    """A stable id from the task and the query text (so the same query gets the same id in every log).

    ``namespace`` separates copies of one text that a source keeps as distinct items (e.g. a question that a
    benchmark repeats in its train and its test split, with different scores).
    """
    h = hashlib.sha1(f"{namespace}\x1f{task}\x1f{query}".encode()).hexdigest()[:16]
    return f"{task}-{h}"


def coerce_log(df: pd.DataFrame, *, allow_missing_optional: bool = True) -> pd.DataFrame:
    """Return ``df`` with exactly the contract's columns, in order, cast to the contract's dtypes.

    Optional columns that are absent are added as nulls when ``allow_missing_optional``; unknown columns are
    refused (name them) so that nothing is silently dropped.
    """
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise LogSchemaError(f"unknown columns {unknown}; a routing log has exactly {list(COLUMNS)}")
    missing = [c for c in COLUMNS if c not in df.columns]
    missing_required = [c for c in missing if c in REQUIRED_NON_NULL]
    if missing_required or (missing and not allow_missing_optional):
        raise LogSchemaError(f"missing columns {missing_required or missing}")
    out = df.copy()
    for c in missing:
        out[c] = pd.NA
    out = out[list(COLUMNS)]
    for col, dtype in COLUMNS.items():
        try:
            if dtype.startswith("datetime"):
                out[col] = pd.to_datetime(out[col], utc=True)
            elif dtype in ("Int64", "Float64"):
                out[col] = pd.to_numeric(out[col], errors="raise").astype(dtype)
            else:
                out[col] = out[col].astype(dtype)
        except (ValueError, TypeError) as exc:
            raise LogSchemaError(f"column {col!r} cannot be read as {dtype}: {exc}") from exc
    return out.reset_index(drop=True)


def check_log(df: pd.DataFrame) -> list[str]:
    """Structural checks of a coerced log. Returns a list of problems (empty when the log is consistent)."""
    problems: list[str] = []
    for col in REQUIRED_NON_NULL:
        n = int(df[col].isna().sum())
        if n:
            problems.append(f"{n} rows have no {col}")
    bad_modes = sorted(set(df["mode"].dropna()) - set(MODES))
    if bad_modes:
        problems.append(f"unknown modes {bad_modes}; allowed {list(MODES)}")
    bad_splits = sorted(set(df["split"].dropna()) - set(SPLITS))
    if bad_splits:
        problems.append(f"unknown splits {bad_splits}; allowed {list(SPLITS)}")
    dup = df.duplicated(["query_id", "candidate"], keep=False)
    if dup.any():
        examples = df.loc[dup, ["query_id", "candidate"]].drop_duplicates().head(3).values.tolist()
        problems.append(f"{int(dup.sum())} rows share a (query_id, candidate), e.g. {examples}")
    perf = df["performance"].astype("float64")
    out_of_range = perf.notna() & ((perf < 0) | (perf > 1))
    if out_of_range.any():
        problems.append(f"{int(out_of_range.sum())} rows have performance outside [0, 1]")
    judge = df["judge_score"].astype("float64")
    if (judge.notna() & ((judge < 0) | (judge > 1))).any():
        problems.append("judge_score outside [0, 1]")
    if (df["cost_usd"].astype("float64") < 0).any():
        problems.append("negative cost_usd")
    no_result = df["performance"].isna() & df["error"].isna()
    if no_result.any():
        problems.append(f"{int(no_result.sum())} rows have neither a performance nor an error")
    # one task per query id and one query text per query id
    per_q = df.groupby("query_id", observed=True).agg(n_task=("task", "nunique"), n_query=("query", "nunique"))
    if (per_q["n_task"] > 1).any() or (per_q["n_query"] > 1).any():
        problems.append("some query_id has more than one task or query text")
    return problems


def validate_or_raise(df: pd.DataFrame) -> pd.DataFrame:
    problems = check_log(df)
    if problems:
        raise LogSchemaError("inconsistent routing log:\n  - " + "\n  - ".join(problems))
    return df


def write_log(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df = validate_or_raise(coerce_log(df))
    tmp = path.with_suffix(path.suffix + ".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read_log(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"routing log not found: {path}")
    return validate_or_raise(coerce_log(pd.read_parquet(path)))


def candidates_of(df: pd.DataFrame) -> list[str]:
    return sorted(df["candidate"].dropna().unique().tolist())


def wide(df: pd.DataFrame, value: str) -> pd.DataFrame:
    """Pivot a log to one row per query_id and one column per candidate (sorted), holding ``value``."""
    out = df.pivot(index="query_id", columns="candidate", values=value)
    out = out.reindex(columns=candidates_of(df))
    if COLUMNS.get(value) in ("Int64", "Float64"):
        out = out.astype("float64")
    return out
