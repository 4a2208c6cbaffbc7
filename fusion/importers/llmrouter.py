"""LLMRouter's native routing data: a directory of JSON files.

- ``train.json`` / ``test.json`` (and ``val.json`` if present): lists of ``{question, scores: {llm: score},
  cluster_id?}``;
- ``default_query_<split>.jsonl``: one query per line with ``task_name, query, ground_truth, metric, choices,
  task_id``; each question is joined to its task by exact query text within the same split;
- ``default_llm.json`` (optional): ``llm -> {size, feature, input_price, output_price, model, service}``, prices
  in USD per 1M tokens.

There are no responses, tokens or costs in the data: ``input_tokens`` is estimated from the query text
(``ceil(chars / 4)``), ``output_tokens`` stays null and ``cost_usd`` is an input-only estimate
(``input_tokens x input_price / 1M``). Every LLM is imported in mode ``direct``. The query id is namespaced by
split, so a question that the data repeats in train and test (with its own scores) stays two queries.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.importers.errors import LogImportError
from fusion.importers.files import mtime_utc, read_jsonl_records
from fusion.importers.registry import IMPORTERS, ROW, Imported, score_matrix_columns
from fusion.importers.splits import make_query_ids
from fusion.importers.task_names import normalise_tasks, unknown_task_note
from fusion.importers.values import (
    estimate_tokens,
    examples,
    listing,
    parse_numbers,
)
from fusion.log.schema import SPLITS

logger = logging.getLogger(__name__)

FORMAT = "llmrouter"
LLM_FILE = "default_llm.json"
ITEM_KEYS = ("question", "scores")
QUERY_KEYS = ("task_name", "query")
QUERY_OPTIONAL = ("ground_truth", "metric", "choices", "task_id")


def _load_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise LogImportError(f"{path}: not valid JSON: {exc}") from exc


def _load_jsonl(path: Path) -> pd.DataFrame:
    records = read_jsonl_records(path)
    df = pd.DataFrame.from_records(records)
    missing = [k for k in QUERY_KEYS if k not in df.columns]
    if missing:
        raise LogImportError(f"{path}: missing key(s) {missing}; each line needs {list(QUERY_KEYS)}")
    return df


def _as_text(v: Any) -> Any:
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return pd.NA
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _load_split(
    root: Path, split: str, prices: dict[str, float], notes: list[str], stats: dict[str, Any]
) -> pd.DataFrame:
    scores_path = root / f"{split}.json"
    queries_path = root / f"default_query_{split}.jsonl"
    if not queries_path.is_file():
        raise LogImportError(
            f"{scores_path}: found, but not the matching {queries_path.name} (tasks, answers)"
        )
    items = _load_json(scores_path)
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise LogImportError(f"{scores_path}: expected a JSON list of objects {{question, scores, ...}}")
    items_df = pd.DataFrame.from_records(items)
    missing = [k for k in ITEM_KEYS if k not in items_df.columns]
    if missing:
        raise LogImportError(f"{scores_path}: missing key(s) {missing}; each item needs {list(ITEM_KEYS)}")
    extra_keys = [c for c in items_df.columns if c not in ITEM_KEYS]
    for k in extra_keys:
        stats["ignored_keys"].setdefault(k, []).append(scores_path.name)
    rows = pd.Series([f"{scores_path.name} item {i}" for i in range(len(items_df))], dtype=object)
    no_q = items_df["question"].isna()
    if no_q.any():
        raise LogImportError(
            f"{scores_path}: {int(no_q.sum())} item(s) have no question, e.g. {examples(no_q, rows)}"
        )
    not_dict = ~items_df["scores"].map(lambda s: isinstance(s, dict))
    if not_dict.any():
        raise LogImportError(
            f"{scores_path}: 'scores' must be an object {{llm: score}}; not so in "
            f"{int(not_dict.sum())} item(s), e.g. {examples(not_dict, rows, items_df['scores'])}"
        )

    queries = _load_jsonl(queries_path)
    first = queries.drop_duplicates("query", keep="first").set_index("query")
    tasks_per_text = queries.groupby("query")["task_name"].nunique()
    n_multi = int((tasks_per_text > 1).sum())
    repeats_per_text = queries.groupby("query").size()
    n_same = int(((repeats_per_text > 1) & (tasks_per_text == 1)).sum())
    if n_multi or n_same:
        parts = []
        if n_multi:
            parts.append(f"{n_multi} query text(s) appear under more than one task")
        if n_same:
            parts.append(f"{n_same} appear more than once under one task")
        notes.append(
            f"{queries_path.name}: " + " and ".join(parts) + ": each question takes the first matching line "
            "in file order (its task, ground_truth and metric)"
        )
    question = items_df["question"].astype(str)
    matched = question.isin(first.index)
    if not matched.all():
        unmatched = ~matched
        raise LogImportError(
            f"{scores_path}: {int(unmatched.sum())} question(s) have no line with the same query text in "
            f"{queries_path.name}, e.g. {examples(unmatched, rows, question.str.slice(0, 60))}"
        )
    meta = first.reindex(question.to_numpy())
    for k in QUERY_OPTIONAL:
        if k not in meta.columns:
            meta[k] = pd.NA
    n_unused = int((~first.index.isin(question)).sum())
    if n_unused:
        stats["unused_lines"].append(f"{queries_path.name} {n_unused}")

    scores = pd.DataFrame.from_records(items_df["scores"].tolist())
    score_rows = rows
    wide = {
        llm: parse_numbers(scores[llm], source=str(scores_path), column=f"scores[{llm!r}]", rows=score_rows)
        for llm in scores.columns
    }
    task = normalise_tasks(pd.Series(meta["task_name"].to_numpy(), dtype="string").str.strip())
    query = pd.Series(question.to_numpy(), dtype="string")
    base = pd.DataFrame(
        {
            "query_id": make_query_ids(task, query, namespace=split),
            "task": task,
            "query": query,
            "ground_truth": pd.Series(meta["ground_truth"].map(_as_text).to_numpy(), dtype="string"),
            "metric": pd.Series(meta["metric"].map(_as_text).to_numpy(), dtype="string"),
            "input_tokens": estimate_tokens(query),
            ROW: rows,
        }
    )
    perf = pd.DataFrame(wide)
    perf.index = base.index
    long = base.join(
        perf.melt(ignore_index=False, var_name="llm", value_name="performance").astype(
            {"performance": "Float64"}
        ),
        how="inner",
    )
    long = long.reset_index(drop=True)
    long[ROW] = long[ROW] + ", " + long["llm"]
    price = long["llm"].map(prices).astype("Float64")
    long["cost_usd"] = long["input_tokens"].astype("Float64") * price / 1e6
    long["split"] = split
    long["collected_at"] = mtime_utc(scores_path)
    stats["task_names"].update(zip(meta["task_name"].astype(str).str.strip(), task, strict=True))
    return long


@IMPORTERS.register(FORMAT)
def import_llmrouter(src: Path) -> Imported:
    """Import an LLMRouter data directory (see the module docstring)."""
    root = Path(src)
    if not root.is_dir():
        raise LogImportError(f"{root}: the llmrouter format reads a directory (train.json, test.json, ...)")
    splits = [s for s in SPLITS if (root / f"{s}.json").is_file()]
    if not splits:
        raise LogImportError(
            f"{root}: no {', '.join(f'{s}.json' for s in SPLITS)} in the directory "
            f"(LLMRouter data: <split>.json with default_query_<split>.jsonl)"
        )
    notes: list[str] = []
    prices: dict[str, float] = {}
    llm_path = root / LLM_FILE
    if llm_path.is_file():
        pool = _load_json(llm_path)
        if not isinstance(pool, dict):
            raise LogImportError(f"{llm_path}: expected an object {{llm: {{input_price, ...}}}}")
        for name, info in pool.items():
            price = info.get("input_price") if isinstance(info, dict) else None
            if price is not None:
                try:
                    prices[name] = float(price)
                except (TypeError, ValueError) as exc:
                    raise LogImportError(
                        f"{llm_path}: input_price of {name!r} is not a number: {price!r}"
                    ) from exc
    else:
        notes.append(f"no {LLM_FILE}: cost_usd is null")

    stats: dict[str, Any] = {"ignored_keys": {}, "unused_lines": [], "task_names": set()}
    long = pd.concat([_load_split(root, s, prices, notes, stats) for s in splits], ignore_index=True)
    score_matrix_columns(long, FORMAT)
    long["prompt"] = pd.NA
    long["response"] = pd.NA
    long["output_tokens"] = pd.NA
    long["latency_s"] = pd.NA
    long["judge_score"] = pd.NA

    notes.append(
        "splits from the files: "
        + ", ".join(f"{s}.json" for s in splits)
        + "; all LLMs imported in mode 'direct'; collected_at is each file's modification time"
    )
    notes.append(
        "no tokens or costs in LLMRouter data: input_tokens is an estimate, ceil(query chars / 4); "
        "output_tokens is null; cost_usd is an input-only estimate, input_tokens x input_price / 1M "
        f"from {LLM_FILE} (it ignores the unknown output length)"
    )
    unscored = sorted(set(prices) - set(long["llm"]))
    if unscored:
        notes.append(
            f"{len(unscored)} LLM(s) in {LLM_FILE} have no scores in the data (nothing to import): {unscored}"
        )
    unpriced = sorted(set(long["llm"]) - set(prices))
    if prices and unpriced:
        notes.append(f"LLMs without an input_price in {LLM_FILE}, cost_usd null: {unpriced}")
    for key, files in sorted(stats["ignored_keys"].items()):
        notes.append(f"ignored item key {key!r} (no place in the log) in {', '.join(files)}")
    notes.append(
        "ignored query fields 'choices' and 'task_id' (no place in the log); no response text in the data"
    )
    if stats["unused_lines"]:
        notes.append(
            "query lines with no scored question (not imported, nothing to import): "
            + listing(stats["unused_lines"])
        )
    renamed = sorted((a, b) for a, b in stats["task_names"] if a != b)
    if renamed:
        notes.append("task names normalised: " + ", ".join(f"{a} -> {b}" for a, b in renamed))
    notes += unknown_task_note(long["task"])
    logger.debug("read %d LLMRouter rows from %s", len(long), root)
    return Imported(frame=long, notes=notes, files=[root / f"{s}.json" for s in splits])
