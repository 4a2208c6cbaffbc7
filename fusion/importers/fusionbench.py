"""FusionBench's routing CSV: one row per (query, LLM), LLM names ending in ``_think`` for the thinking mode.

Columns: ``task_name, task_id, task_description, query, ground_truth, metric, llm, input_price, output_price,
input_tokens_num, output_tokens_num, performance, cost, response`` and optionally ``llm_judge``. Prices are in
USD per 1M tokens. The format is strict: a column it does not know is refused (by name), so nothing is
silently dropped. FusionBench has no splits: pass ``split=`` for one fixed split, or let the importer assign
one per query by hashing its id (``test_fraction``, ``val_fraction``, ``seed``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fusion.importers.errors import LogImportError
from fusion.importers.files import mtime_utc
from fusion.importers.registry import IMPORTERS, ROW, Imported
from fusion.importers.splits import check_split_name, hash_splits, make_query_ids
from fusion.importers.task_names import domains_for, normalise_tasks, unknown_task_note
from fusion.importers.values import examples, listing, missing_score_errors, parse_numbers

logger = logging.getLogger(__name__)

FORMAT = "fusionbench"
REQUIRED = ("task_name", "query", "llm", "performance")
OPTIONAL = (
    "task_id",
    "task_description",
    "ground_truth",
    "metric",
    "input_price",
    "output_price",
    "input_tokens_num",
    "output_tokens_num",
    "cost",
    "response",
    "llm_judge",
)
THINK_SUFFIX = "_think"
COST_TOLERANCE = 0.01  # relative disagreement between the file's cost and tokens x price worth a note


def _read(src: Path) -> pd.DataFrame:
    name = src.name.lower()
    if name.endswith((".parquet", ".pq")):
        return pd.read_parquet(src)
    if ".csv" in name or ".tsv" in name:
        # every column as text: numbers are parsed below with messages that name the bad cells
        sep = "\t" if ".tsv" in name else ","
        return pd.read_csv(src, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    raise LogImportError(f"{src}: a FusionBench log is a .csv (or .parquet) file, got {src.name!r}")


def _judge_scores(raw: pd.DataFrame, source: str, rows: pd.Series) -> pd.Series:
    judge = parse_numbers(raw["llm_judge"], source=source, column="llm_judge", rows=rows)
    values = judge.astype("float64")
    bad = (values < 0) | (values > 1)
    if bad.any():
        top = float(values.max())
        if values.min() < 0:
            scale = "a scale with negative values"
        elif top <= 10:
            scale = "a 0..10 scale"
        elif top <= 100:
            scale = "a 0..100 scale"
        else:
            scale = "an unknown scale"
        raise LogImportError(
            f"{source}: column 'llm_judge' must be in [0, 1] but {int(bad.sum())} value(s) are not "
            f"(max {top:g}; looks like {scale}), e.g. {examples(bad, rows, raw['llm_judge'])}. "
            f"Rescale it to [0, 1] before importing; the importer does not guess the scale."
        )
    return judge


@IMPORTERS.register(FORMAT)
def import_fusionbench(
    src: Path,
    *,
    split: str | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> Imported:
    """Import one FusionBench CSV (see the module docstring)."""
    src = Path(src)
    source = str(src)
    if src.is_dir():
        raise LogImportError(f"{source}: the fusionbench format reads one CSV file, not a directory")
    check_split_name(split)
    raw = _read(src).reset_index(drop=True)
    notes: list[str] = []

    known = set(REQUIRED) | set(OPTIONAL)
    unknown = [c for c in raw.columns if c not in known]
    if unknown:
        hint = (
            " (an unnamed column is usually a saved pandas index: write the CSV with index=False)"
            if any(str(c).startswith("Unnamed:") for c in unknown)
            else ""
        )
        raise LogImportError(
            f"{source}: unknown column(s) {unknown} in a FusionBench log{hint}; "
            f"known columns: {list(REQUIRED) + list(OPTIONAL)}"
        )
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise LogImportError(
            f"{source}: missing required column(s) {missing}; a FusionBench log needs {list(REQUIRED)}"
        )
    absent = [c for c in OPTIONAL if c not in raw.columns and c != "llm_judge"]
    if absent:
        notes.append(f"columns absent from the file, left null: {absent}")
    for c in OPTIONAL:
        if c not in raw.columns:
            raw[c] = pd.NA

    rows = pd.Series([f"row {i + 1}" for i in range(len(raw))], index=raw.index, dtype=object)

    task_src = raw["task_name"].astype("string").str.strip()
    task = normalise_tasks(task_src)
    renamed = sorted({(a, b) for a, b in zip(task_src, task, strict=True) if pd.notna(a) and a != b})
    if renamed:
        notes.append("task names normalised: " + ", ".join(f"{a} -> {b}" for a, b in renamed))
    notes += unknown_task_note(task)

    llm_src = raw["llm"].astype("string").str.strip()
    think = llm_src.str.endswith(THINK_SUFFIX).fillna(False).astype(bool)
    llm = llm_src.where(~think, llm_src.str.slice(0, -len(THINK_SUFFIX)))
    mode = pd.Series("direct", index=raw.index, dtype="string").mask(think, "think")
    if think.any():
        notes.append(
            f"{int(think.sum()):,} rows of LLMs named '*{THINK_SUFFIX}' imported as mode 'think' of the base LLM "
            f"({listing(sorted(llm[think].dropna().unique()))})"
        )

    query = raw["query"].astype("string")
    query_id = make_query_ids(task, query)

    perf_text = raw["performance"]
    performance = parse_numbers(perf_text, source=source, column="performance", rows=rows, scores=True)
    if not pd.api.types.is_numeric_dtype(perf_text.dtype):
        n_dict = int(perf_text.astype("string").str.lstrip().str.startswith("{").fillna(False).sum())
        if n_dict:
            notes.append(
                f"{n_dict:,} performance values were score dicts such as \"{{'pass@1': 1.0}}\": "
                f"took the 'pass@1' (or the single) value"
            )

    judge = _judge_scores(raw, source, rows) if raw["llm_judge"].notna().any() else None

    num = {
        c: parse_numbers(raw[c], source=source, column=c, rows=rows)
        for c in ("input_price", "output_price", "input_tokens_num", "output_tokens_num", "cost")
    }
    for c, v in num.items():
        neg = v < 0
        if neg.fillna(False).any():
            raise LogImportError(
                f"{source}: column {c!r} has negative values, e.g. {examples(neg, rows, raw[c])}"
            )
    expected = (
        num["input_tokens_num"] * num["input_price"] + num["output_tokens_num"] * num["output_price"]
    ) / 1e6
    cost = num["cost"].copy()
    estimated = cost.isna() & expected.notna()
    if estimated.any():
        cost[estimated] = expected[estimated]
        notes.append(
            f"{int(estimated.sum()):,} rows had no cost: estimated as tokens x price / 1M "
            f"(input_tokens_num x input_price + output_tokens_num x output_price)"
        )
    both = num["cost"].notna() & expected.notna()
    diff = (num["cost"] - expected).abs()
    scale = expected.abs().where(expected.abs() > 0, 1e-12)
    disagree = both & (diff > COST_TOLERANCE * scale) & (diff > 1e-12)
    disagree = disagree.fillna(False).astype(bool)
    if disagree.any():
        i = disagree[disagree].index[0]
        notes.append(
            f"{int(disagree.sum()):,} of {int(both.sum()):,} rows have a cost that differs by more than "
            f"{COST_TOLERANCE:.0%} from tokens x price / 1M (e.g. {rows[i]}: file {float(num['cost'][i]):.6g} "
            f"vs computed {float(expected[i]):.6g}); kept the file's values"
        )
    no_cost = cost.isna()
    if no_cost.any():
        notes.append(f"{int(no_cost.sum()):,} rows have no cost and no tokens x price to estimate it")

    if split is not None:
        splits = pd.Series(split, index=raw.index, dtype="string")
        notes.append(f"FusionBench has no splits: all rows put in split {split!r} (option split)")
    else:
        splits = hash_splits(query_id, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
        notes.append(
            "FusionBench has no splits: assigned per query by hashing query_id "
            f"(test_fraction={test_fraction}, val_fraction={val_fraction}, seed={seed})"
        )

    kept_out = [c for c in ("task_id", "task_description") if raw[c].notna().any()]
    if kept_out:
        notes.append(f"columns not kept (the log has no place for them): {kept_out}")

    frame = pd.DataFrame(
        {
            "query_id": query_id,
            "task": task,
            "domain": domains_for(task),
            "split": splits,
            "query": query,
            "prompt": pd.NA,
            "ground_truth": raw["ground_truth"].astype("string"),
            "metric": raw["metric"].astype("string"),
            "llm": llm,
            "mode": mode,
            "candidate": llm + ":" + mode,
            "response": raw["response"].astype("string"),
            "input_tokens": num["input_tokens_num"],
            "output_tokens": num["output_tokens_num"],
            "cost_usd": cost,
            "latency_s": pd.NA,
            "performance": performance,
            "judge_score": judge if judge is not None else pd.NA,
            "error": missing_score_errors(performance),
            "backend": f"import:{FORMAT}",
            "collected_at": mtime_utc(src),
            ROW: rows,
        }
    )
    logger.debug("read %d FusionBench rows from %s", len(frame), source)
    return Imported(frame=frame, notes=notes, files=[src])
