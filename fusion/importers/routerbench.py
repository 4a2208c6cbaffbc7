"""RouterBench's wide format: one row per prompt, three columns per model.

``<model>`` holds the 0/1 score, ``<model>|model_response`` the response and ``<model>|total_cost`` the real
USD cost of the call; besides ``sample_id``, ``prompt``, ``eval_name``, often a saved pandas index (an unnamed
column) and ``oracle_model_to_route_to`` (RouterBench's best model per prompt, not a model: ignored, noted).
Prompts and responses are strings of Python lists of turns; the turns are joined with ``"\\n"``.

``src`` is a CSV file, a pickled DataFrame (``.pkl``; unpickling runs code, so only load files you trust),
or a directory whose ``*_train.csv`` / ``*_val.csv`` / ``*_test.csv`` files are all imported, the split taken
from each file name. All models are imported in mode ``direct``; RouterBench has no token counts.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd

from fusion.importers.errors import LogImportError
from fusion.importers.files import mtime_utc
from fusion.importers.registry import IMPORTERS, ROW, Imported, score_matrix_columns
from fusion.importers.splits import check_split_name, make_query_ids
from fusion.importers.task_names import normalise_tasks, unknown_task_note
from fusion.importers.values import listing, parse_literal_text, parse_numbers

logger = logging.getLogger(__name__)

FORMAT = "routerbench"
META = ("sample_id", "prompt", "eval_name")
ORACLE = "oracle_model_to_route_to"
KINDS = {"model_response": "response", "total_cost": "cost_usd"}
SPLIT_IN_NAME = re.compile(r"_(train|val|test)$")
PICKLE_SUFFIXES = (".pkl", ".pickle")
SHARED_PREFIX_NOTE = 200  # report a prefix shared by all prompts of a task when at least this long


def split_from_name(path: Path) -> str | None:
    stem = path.name
    for suffix in (".gz", ".csv", *PICKLE_SUFFIXES):
        stem = stem.removesuffix(suffix)
    m = SPLIT_IN_NAME.search(stem)
    return m.group(1) if m else None


def _is_index_column(name: object) -> bool:
    s = str(name)
    return s.startswith("Unnamed:") or s in ("", "index")


def _read_wide(path: Path) -> pd.DataFrame:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        wide = pd.read_pickle(path)  # unpickling runs code: trusted files only
        if not isinstance(wide, pd.DataFrame):
            raise LogImportError(f"{path}: the pickle holds a {type(wide).__name__}, not a pandas DataFrame")
        return wide.reset_index(drop=True)
    if ".csv" in path.name.lower():
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    raise LogImportError(f"{path}: a RouterBench source is a .csv or .pkl file or a directory of them")


def _long_from_file(path: Path, split: str, stats: dict[str, list[str]]) -> pd.DataFrame:
    source = str(path)
    wide = _read_wide(path)
    missing = [c for c in ("prompt", "eval_name") if c not in wide.columns]
    if missing:
        raise LogImportError(
            f"{source}: missing required column(s) {missing}; RouterBench's wide format has "
            f"'prompt', 'eval_name' and one score column per model"
        )
    models: list[str] = []
    extra: dict[str, dict[str, str]] = defaultdict(dict)
    for col in wide.columns:
        name = str(col)
        if name in META or name == ORACLE or _is_index_column(name):
            continue
        if "|" in name:
            model, kind = name.rsplit("|", 1)
            if kind in KINDS:
                extra[model][KINDS[kind]] = name
            else:
                stats["unknown_kind"].append(f"{path.name}:{name}")
            continue
        models.append(name)
    if not models:
        raise LogImportError(f"{source}: no model score columns (a column per model holding its 0/1 score)")
    orphans = sorted(set(extra) - set(models))
    if orphans:
        raise LogImportError(
            f"{source}: response/cost columns for {orphans} but no score column for them "
            f"(expected a column named exactly like the model)"
        )
    if ORACLE in wide.columns:
        stats["oracle"].append(path.name)
    index_cols = [str(c) for c in wide.columns if _is_index_column(c)]
    if index_cols:
        stats["index"].append(f"{path.name}:{index_cols}")
    if "sample_id" in wide.columns:
        n_dup = int(wide["sample_id"].duplicated().sum())
        if n_dup:
            stats["dup_sample"].append(f"{path.name} {n_dup}")
        stats["sample_ids"].extend(
            f"{path.name}\x1f{s}" for s in wide["sample_id"].dropna().astype(str).unique()
        )

    prompt, raw_prompts = parse_literal_text(wide["prompt"])
    if raw_prompts:
        stats["raw_prompt"].append(f"{path.name} {raw_prompts}")
    task = normalise_tasks(wide["eval_name"].astype("string").str.strip())
    query_id = make_query_ids(task, prompt, namespace=split)
    rows = pd.Series([f"{path.name} row {i + 1}" for i in range(len(wide))], index=wide.index, dtype=object)
    base = pd.DataFrame(
        {"query_id": query_id, "task": task, "query": prompt, ROW: rows, "eval_name": wide["eval_name"]}
    )

    parts = []
    n_missing = 0
    rows_missing = pd.Series(False, index=wide.index)
    for model in models:
        score = parse_numbers(wide[model], source=source, column=model, rows=rows)
        n_missing += int(score.isna().sum())
        rows_missing |= score.isna()
        part = base.copy()
        part["llm"] = model
        part["performance"] = score
        resp_col = extra[model].get("response")
        part["response_raw"] = wide[resp_col] if resp_col else pd.NA
        cost_col = extra[model].get("cost_usd")
        part["cost_usd"] = (
            parse_numbers(wide[cost_col], source=source, column=cost_col, rows=rows) if cost_col else pd.NA
        )
        parts.append(part)
    if n_missing:
        stats["missing"].append(f"{path.name} {n_missing} in {int(rows_missing.sum())} rows")
    long = pd.concat(parts, ignore_index=True)
    long[ROW] = long[ROW] + ", " + long["llm"]
    long["split"] = split
    long["collected_at"] = mtime_utc(path)
    return long


@IMPORTERS.register(FORMAT)
def import_routerbench(src: Path, *, split: str | None = None) -> Imported:
    """Import a RouterBench CSV / pickle, or every ``*_{train,val,test}.csv`` in a directory."""
    src = Path(src)
    check_split_name(split)
    notes: list[str] = []
    if src.is_dir():
        if split is not None:
            raise LogImportError(
                f"{src}: option split applies to a single file; in a directory each file's split comes "
                f"from its name (*_train.csv, *_val.csv, *_test.csv)"
            )
        candidates = sorted(p for p in src.iterdir() if p.is_file() and ".csv" in p.name.lower())
        files = [p for p in candidates if split_from_name(p)]
        skipped = [p.name for p in candidates if not split_from_name(p)]
        if not files:
            raise LogImportError(f"{src}: no *_train.csv, *_val.csv or *_test.csv files in the directory")
        if skipped:
            notes.append(f"CSV files without a split in their name were not imported: {skipped}")
        plan = [(p, split_from_name(p)) for p in files]
    else:
        inferred = split or split_from_name(src)
        if inferred is None:
            raise LogImportError(
                f"{src}: cannot tell the split from the file name (expected *_train, *_val or *_test): "
                f"pass the option split='train' (or 'val', 'test')"
            )
        plan = [(src, inferred)]

    stats: dict[str, list[str]] = defaultdict(list)
    long = pd.concat([_long_from_file(p, str(s), stats) for p, s in plan], ignore_index=True)

    response, raw_responses = parse_literal_text(long.pop("response_raw"))
    long["response"] = response
    score_matrix_columns(long, FORMAT)
    eval_names = long.pop("eval_name")

    notes.append(
        "files: "
        + ", ".join(f"{p.name} ({s})" for p, s in plan)
        + "; all models imported in mode 'direct'; collected_at is each file's modification time"
    )
    if stats["missing"]:
        notes.append("empty model score cells (kept as error rows): " + "; ".join(stats["missing"]))
    if stats["oracle"]:
        notes.append(
            f"ignored column {ORACLE!r} (RouterBench's best model per prompt, not a model) "
            f"in {len(stats['oracle'])} file(s)"
        )
    if stats["index"]:
        notes.append("ignored saved-index column(s): " + listing(stats["index"], 3))
    if stats["unknown_kind"]:
        notes.append("ignored columns of unknown kind: " + listing(stats["unknown_kind"]))
    if stats["sample_ids"] or stats["dup_sample"]:
        per_id: dict[str, set[str]] = defaultdict(set)
        for key in stats["sample_ids"]:
            fname, sid = key.split("\x1f", 1)
            per_id[sid].add(fname)
        shared = sum(1 for files in per_id.values() if len(files) > 1)
        msg = "sample_id is not kept (query_id is built from task, prompt text and split)"
        if stats["dup_sample"] or shared:
            msg += (
                "; it is not unique: repeated within a file ("
                + (", ".join(stats["dup_sample"]) or "none")
                + f"), {shared} shared between files"
            )
        notes.append(msg)
    renamed = sorted(
        {(a, b) for a, b in zip(eval_names.astype(str).str.strip(), long["task"], strict=True) if a != b}
    )
    if renamed:
        notes.append("task names normalised: " + ", ".join(f"{a} -> {b}" for a, b in renamed))
    notes += unknown_task_note(long["task"])
    if stats["raw_prompt"] or raw_responses:
        notes.append(
            "values that are not a Python list of turns were kept as raw text: prompts "
            + (", ".join(stats["raw_prompt"]) or "0")
            + f"; distinct responses {raw_responses}"
        )
    notes.append("no token counts in RouterBench: input_tokens and output_tokens are null")
    for task_name, group in long.drop_duplicates("query_id").groupby("task", sort=True):
        texts = group["query"].dropna().tolist()
        if len(texts) > 1:
            shared_len = len(os.path.commonprefix(texts))
            if shared_len >= SHARED_PREFIX_NOTE:
                notes.append(
                    f"all {len(texts):,} {task_name} prompts start with the same {shared_len:,} characters "
                    f"(a shared few-shot block): embeddings of the full prompt may not tell them apart"
                )
    long["query"] = long["query"].astype("string")
    long["prompt"] = long["query"]
    logger.debug("read %d RouterBench rows from %d file(s)", len(long), len(plan))
    return Imported(frame=long, notes=notes, files=[p for p, _ in plan])
