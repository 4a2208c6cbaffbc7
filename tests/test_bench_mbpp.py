"""benchmarks/mbpp_data.py, the data of the MBPP level benchmarks: RouterBench's MBPP teachers with MBPP's reference
solution only where the texts match, held-out MBPP test problems never close to a teacher prompt, and the SFT sets the
model-level benchmark builds from them (read from ../shared/data; skipped without it)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "mbpp_data.py"


@pytest.fixture(scope="module")
def mbpp():
    spec = importlib.util.spec_from_file_location("mbpp_data", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        if not mod.available():
            pytest.skip(f"../shared/data (RouterBench MBPP, MBPP) not found under {mod.SHARED}")
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def data(mbpp):
    records = mbpp.load_records()
    return records, mbpp.load_teachers(records)


def test_teachers_get_a_gold_solution_only_where_the_texts_match(mbpp, data):
    records, log = data
    q = log.drop_duplicates("query_id")
    assert len(q) == 427 and log["llm"].nunique() == 11 and set(log["split"]) == {"train"}
    by_id = {r["task_id"]: r for r in records}
    gold = q[q["solution"].notna()]
    assert 0 < len(gold) < len(q)
    for row in gold.itertuples():
        rec = by_id[row.mbpp_task_id]
        assert mbpp.norm(rec["text"]) == mbpp.norm(row.query)
        assert rec["code"].strip().splitlines()[0] in row.solution
        assert json.loads(row.ground_truth)["tests"] == rec["test_list"]
    assert q.loc[q["solution"].isna(), "ground_truth"].isna().all()
    assert (q["prompt"].str.contains("Python function") & q.apply(lambda r: r["query"] in r["prompt"], axis=1)).all()


def test_held_out_problems_are_mbpp_test_problems_far_from_every_teacher_prompt(mbpp, data):
    import difflib

    records, log = data
    texts = log["query"].drop_duplicates().tolist()
    queries, dropped = mbpp.held_out(records, texts, 0.8, 40)
    assert len(queries) == 40 and dropped > 0
    ids = [int(q.removeprefix("mbpp-")) for q in queries["query_id"]]
    assert ids == sorted(ids) and all(11 <= i <= 510 for i in ids)
    seen = [mbpp.norm(t) for t in texts]
    by_id = {r["task_id"]: r for r in records}
    for i in ids:
        text = mbpp.norm(by_id[i]["text"])
        assert max(difflib.SequenceMatcher(None, text, s).ratio() for s in seen) < 0.8
    first = queries.iloc[0]
    assert by_id[ids[0]]["test_list"][0] in first["prompt"] and first["metric"] == "pass@1"
    rows = mbpp.as_log_rows(queries)
    assert set(rows["split"]) == {"test"} and rows["query"].tolist() == queries["question"].tolist()


def test_the_fused_set_holds_the_gold_first_then_several_teachers(data):
    from fusion.levels.model.data import DISTILLED, LABEL_ONLY, build_sft_data

    _, log = data
    fused = build_sft_data(log, kind=DISTILLED, strategy="performance", k=3, gold=True, tie_break="longer",
                           one_per_llm=False, max_queries=60).examples
    labels = build_sft_data(log, kind=LABEL_ONLY, max_queries=60).examples
    assert fused.groupby("query_id")["source"].nunique().max() == 4  # gold + 3 teachers
    assert set(labels["query_id"]) <= set(fused["query_id"])
    firsts = fused.groupby("query_id").head(1)
    assert (firsts.loc[firsts["query_id"].isin(labels["query_id"]), "source"] == "gold").all()
    assert fused.loc[fused["source"] == "gold", "completion"].tolist() == labels["completion"].tolist()
    assert fused["completion"].str.startswith("```python\n").all()


def test_the_token_level_benchmark_holds_out_test_problems_of_both_tasks(mbpp):
    spec = importlib.util.spec_from_file_location("bench_tokenroute_mix", SCRIPT.parent / "tokenroute_mix.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not (mod.GSM8K / "test.jsonl").is_file():
        pytest.skip("GSM8K not in ../shared/data")
    log = mod.held_out(3)
    assert log.groupby("task").size().to_dict() == {"gsm8k": 3, "mbpp": 3}
    assert set(log["split"]) == {"test"} and log["query_id"].is_unique
    assert log.set_index("task")["mode"].to_dict() == {"gsm8k": "think", "mbpp": "direct"}
    train = {json.loads(line)["question"] for line in (mod.GSM8K / "train.jsonl").read_text().splitlines()}
    assert not set(log.loc[log["task"] == "gsm8k", "query"]) & train
    mbpp_ids = {r["task_id"] for r in mbpp.load_records() if r["text"] in " ".join(log["query"])}
    assert mbpp_ids and all(11 <= i <= 510 for i in mbpp_ids)  # MBPP's test split, never the experts' 601-974
