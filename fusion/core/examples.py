"""The SFT examples' contract, shared by the model level (distillation data) and the token level (the router's SFT
data, the domain experts' training examples): the columns, the held-out texts no training example may hold, and
TRL's conversational prompt–completion records on disk (JSON lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fusion.core.selection import normalise_text

EXAMPLE_COLUMNS = ["query_id", "task", "domain", "source", "rank", "prompt", "completion"]


def held_out_texts(log: pd.DataFrame, train_split: str = "train") -> set[str]:
    return {normalise_text(q) for q in log.loc[log["split"] != train_split, "query"].dropna().unique()}


def to_conversations(examples: pd.DataFrame) -> list[dict]:
    """TRL's conversational prompt–completion records."""
    return [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}],
             "query_id": q} for p, c, q in zip(examples["prompt"], examples["completion"], examples["query_id"],
                                               strict=True)]


def write_examples(examples: pd.DataFrame, path: Path) -> Path:
    """JSON lines of the conversational records plus their metadata (``datasets.load_dataset("json", ...)``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as fh:
        for rec, (_, row) in zip(to_conversations(examples), examples.iterrows(), strict=True):
            rec.update(task=row["task"], domain=row["domain"], source=row["source"], rank=int(row["rank"]))
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def read_examples(path: Path) -> pd.DataFrame:
    recs = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return pd.DataFrame({"query_id": [r["query_id"] for r in recs], "task": [r["task"] for r in recs],
                         "domain": [r["domain"] for r in recs], "source": [r["source"] for r in recs],
                         "rank": [r["rank"] for r in recs], "prompt": [r["prompt"][0]["content"] for r in recs],
                         "completion": [r["completion"][0]["content"] for r in recs]}, columns=EXAMPLE_COLUMNS)
