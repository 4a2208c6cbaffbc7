"""The thought and model levels' building blocks: selection, SFT data guards, retrieval's leakage guard,
summaries, the distilled gate."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fusion.config import ThoughtConfig
from fusion.core.examples import read_examples, write_examples
from fusion.core.selection import (
    NO_JUDGE,
    NO_RESPONSE_TEXT,
    NONE_CORRECT,
    SelectionError,
    recover_ground_truth,
    select_responses,
)
from fusion.levels.model.data import (
    DISTILLED,
    LABEL_ONLY,
    NO_CANONICAL,
    TEST_DUPLICATE,
    build_sft_data,
    code_target,
)
from fusion.levels.thought.bank import FEW_SHOT, TEMPLATE, augmented_prompts, retrieve
from fusion.levels.thought.templates import clean_template, summarise


def _row(qid, llm, mode="direct", *, perf=1.0, judge=None, cost=0.01, response="Answer: 4", split="train",
         task="arith_word", query=None, gt="4", domain="math", error=None, metric="gsm8k_number"):
    return {"query_id": qid, "task": task, "domain": domain, "split": split, "query": query or f"question {qid}?",
            "prompt": query or f"question {qid}?", "ground_truth": gt, "metric": metric, "llm": llm, "mode": mode,
            "candidate": f"{llm}:{mode}", "response": response, "input_tokens": 10, "output_tokens": 5,
            "tokens_source": "log", "cost_usd": cost, "latency_s": 0.1, "performance": perf, "judge_score": judge,
            "error": error, "backend": "import:long", "collected_at": pd.Timestamp("2026-12-01", tz="UTC")}


def _log(rows):
    return pd.DataFrame(rows)


@pytest.fixture()
def hand_log():
    return _log([
        # q1: three correct answers; big is dearer and longer, judged lower; small answers twice (direct, think)
        _row("q1", "big", perf=1.0, judge=0.6, cost=0.05, response="Reasoning... Answer: 4"),
        _row("q1", "small", "direct", perf=1.0, judge=1.0, cost=0.001, response="Answer: 4"),
        _row("q1", "small", "think", perf=1.0, judge=0.8, cost=0.002, response="Let me think. Answer: 4"),
        _row("q1", "mid", perf=1.0, judge=None, cost=0.01, response="So, Answer: 4"),
        _row("q1", "bad", perf=0.0, judge=1.0, cost=0.0001, response="Answer: 5"),
        # q2: nobody right
        _row("q2", "big", perf=0.0, judge=0.3, response="Answer: 1", gt="2"),
        _row("q2", "small", perf=0.0, judge=0.0, response="Answer: 3", gt="2"),
        # q3: one call failed, the other wrong
        _row("q3", "big", perf=None, judge=None, response=None, error="http 500"),
        _row("q3", "small", perf=0.0, response="Answer: 9"),
        # a test query: never selected
        _row("t1", "big", split="test", perf=1.0, judge=1.0),
    ])


def test_each_selection_strategy_picks_as_expected(hand_log):
    perf = select_responses(hand_log, strategy="performance", n=3).picks
    q1 = perf[perf["query_id"] == "q1"]
    # all correct: ties go to the shorter, then cheaper; one per LLM (small's shorter direct answer)
    assert q1["candidate"].tolist() == ["small:direct", "mid:direct", "big:direct"]
    assert q1["rank"].tolist() == [1, 2, 3]
    judge = select_responses(hand_log, strategy="judge", n=3).picks
    # by judge score; mid has none (not usable under judge); the wrong answer never, whatever its judge score
    assert judge["candidate"].tolist() == ["small:direct", "big:direct"]
    hybrid = select_responses(hand_log, strategy="hybrid", n=2).picks
    assert hybrid["candidate"].tolist() == ["small:direct", "big:direct"]  # perf tie, judge 1.0 > 0.6 > none
    assert set(perf["query_id"]) == {"q1"}  # the test query never
    assert select_responses(hand_log, strategy="performance", n=1).picks["candidate"].tolist() == ["small:direct"]


def test_unusable_queries_are_counted_with_a_reason(hand_log):
    sel = select_responses(hand_log, strategy="performance", n=3)
    assert sel.reason_counts() == {NONE_CORRECT: 2}  # q2 (all wrong) and q3 (one failed, one wrong)
    judged = select_responses(hand_log.assign(judge_score=None), strategy="judge", n=1)
    assert judged.picks.empty and judged.reason_counts() == {NONE_CORRECT: 2, NO_JUDGE: 1}  # q1 was right, unjudged
    with pytest.raises(SelectionError, match="no response texts"):
        select_responses(hand_log.assign(response=None), strategy="performance")
    blank = hand_log.copy()
    blank.loc[blank["query_id"] == "q1", "response"] = "  "
    assert select_responses(blank).reason_counts() == {NONE_CORRECT: 2, NO_RESPONSE_TEXT: 1}


def test_ground_truth_recovered_from_correct_letters():
    rows = [_row("a", "x", task="arc_challenge", metric=None, gt=None, response="B\n", perf=1.0),
            _row("a", "y", task="arc_challenge", metric=None, gt=None, response="B) the sun", perf=1.0),
            _row("a", "z", task="arc_challenge", metric=None, gt=None, response="C", perf=0.0),
            _row("b", "x", task="arc_challenge", metric=None, gt=None, response="A", perf=0.0)]
    log, counts = recover_ground_truth(_log(rows))
    assert log.loc[log["query_id"] == "a", "ground_truth"].tolist() == ["B"] * 3
    assert log.loc[log["query_id"] == "a", "metric"].tolist() == ["mc_letter"] * 3
    assert log.loc[log["query_id"] == "b", "ground_truth"].isna().all()
    assert counts == {"arc_challenge.recovered": 1, "arc_challenge.unrecovered": 1}


def test_sft_data_holds_no_wrong_answer_no_test_query_no_test_code(hand_log):
    test_text = "question t1?"
    leak = _row("q9", "small", query=test_text.upper() + "  ", response="Answer: 4")  # same normalised text
    tests = ["assert add(1, 2) == 3", "assert add(0, 0) == 0"]
    code_gt = json.dumps({"tests": tests, "setup": ""})
    code = _row("c1", "coder", task="mbpp", domain="code", metric="pass@1", gt=code_gt,
                response="```python\ndef add(a, b):\n    return a + b\n\nassert add(1, 2) == 3\n```")
    log = pd.concat([hand_log, _log([leak, code])], ignore_index=True)
    data = build_sft_data(log, kind=DISTILLED, strategy="hybrid", k=3)
    ex = data.examples
    assert set(ex["query_id"]) == {"q1", "c1"}  # q9 is a held-out question under another id
    assert data.skipped[TEST_DUPLICATE] == 1 and data.skipped[NONE_CORRECT] == 2
    wrong = set(log.loc[log["performance"] < 1, "response"].dropna())
    assert not set(ex["completion"]) & wrong
    completion = ex.loc[ex["query_id"] == "c1", "completion"].item()
    assert "def add" in completion and not any(t in completion for t in tests)
    assert completion.startswith("```python\n")
    labels = build_sft_data(log, kind=LABEL_ONLY)
    assert labels.skipped[NO_CANONICAL] == 1  # the code task's ground truth holds tests: never a target
    assert set(labels.examples["completion"]) == {"Answer: 4", "Answer: 2"}
    assert "c1" not in set(labels.examples["query_id"]) and "t1" not in set(labels.examples["query_id"])


def test_a_logged_reference_solution_is_the_gold_target_of_a_code_query(hand_log):
    code_gt = json.dumps({"tests": ["assert add(1, 2) == 3"], "setup": ""})
    code = _row("c1", "coder", task="mbpp", domain="code", metric="pass@1", gt=code_gt,
                response="```python\ndef plus(a, b):\n    return a + b\n```")
    log = pd.concat([hand_log, _log([code])], ignore_index=True)
    log["solution"] = None
    log.loc[log["query_id"] == "c1", "solution"] = "def add(a, b):\n    return a + b"
    labels = build_sft_data(log, kind=LABEL_ONLY)
    assert NO_CANONICAL not in labels.skipped
    gold = labels.examples.loc[labels.examples["query_id"] == "c1", "completion"].item()
    assert gold == "```python\ndef add(a, b):\n    return a + b\n```"
    fused = build_sft_data(log, kind=DISTILLED, strategy="performance", k=5, gold=True).examples
    c1 = fused[fused["query_id"] == "c1"]
    assert c1["source"].tolist() == ["gold", "coder"] and c1["completion"].iloc[0] == gold  # the gold answer first
    # without the column, the code query has no canonical solution: counted, never its tests
    assert build_sft_data(log.drop(columns="solution"), kind=LABEL_ONLY).skipped[NO_CANONICAL] == 1


def test_code_target_drops_test_lines():
    gt = json.dumps({"prompt": "def f(x):\n", "test": "def check(c):\n    assert c(1) == 2\n", "entry_point": "f"})
    out = code_target("Here:\n```python\ndef f(x):\n    return x + 1\ndef check(c):\n    assert c(1) == 2\n```", gt)
    assert "assert c(1) == 2" not in out and "return x + 1" in out
    assert code_target("no code at all", gt) is not None  # the response itself is taken as code


def test_examples_round_trip_as_conversations(tmp_path, hand_log):
    ex = build_sft_data(hand_log, k=2).examples
    path = write_examples(ex, tmp_path / "sft.jsonl")
    first = json.loads(path.read_text().splitlines()[0])
    assert first["prompt"][0]["role"] == "user" and first["completion"][0]["role"] == "assistant"
    pd.testing.assert_frame_equal(read_examples(path), ex.reset_index(drop=True), check_dtype=False)
    import datasets

    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds[0]["completion"][0]["content"] == ex["completion"].iloc[0]


def _bank():
    qs = ["How many apples are left after eating two of five?", "What is the capital of France?",
          "How many pears are left after eating one of four?", "Which planet is largest?"]
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(4, 8)).astype(np.float32)
    emb[2] = emb[0] + 0.3 * rng.normal(size=8)  # similar questions, similar embeddings
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return pd.DataFrame({"query_id": ["b0", "b1", "b2", "b3"], "task": ["math", "geo", "math", "geo"],
                         "domain": "x", "question": qs, "template": ["T0", "T1", None, "T3"],
                         "best_answer": ["A0", "A1", "A2", "A3"], "sources": "m", "error": [None, None, "empty", None],
                         "embedding": list(emb)}), emb


def test_retrieval_never_returns_own_or_near_duplicate_template():
    bank, emb = _bank()
    queries = pd.DataFrame({"query_id": ["b0", "new1", "new2", "new3"], "task": ["math", "math", "math", "bio"],
                            "question": [bank["question"][0], "  how many APPLES are left after eating two of five ",
                                         "Something else", "a new task"],
                            "prompt": ["p0", "p1", "p2", "p3"]})
    qemb = np.stack([emb[0], emb[1], emb[2], emb[3]])
    r = retrieve(bank, queries, qemb, k=2, threshold=0.99, kind=TEMPLATE)
    assert r.contexts[0] == []  # its own template only (b2 has no template): zero-shot
    assert 0 not in r.contexts[1]  # same normalised text as b0: a near-duplicate
    assert r.contexts[2] == [0]  # b2 (its embedding) has no template; b0 at cosine 0.988 is under the threshold
    assert retrieve(bank, queries, qemb, k=2, threshold=0.98, kind=TEMPLATE).contexts[2] == []  # now above it
    assert r.contexts[3] == [] and r.per_task_fallbacks["bio"] == 1  # no template of its task
    assert r.excluded_self == 1 and r.excluded_near_duplicates >= 1
    # by similarity: a query embedded exactly like b2 finds b2's twin b0 only when under the threshold
    near = retrieve(bank, queries.iloc[[2]], qemb[[2]], k=2, threshold=0.5, kind=FEW_SHOT)
    assert 2 not in near.contexts[0]  # cosine 1.0 with b2: excluded
    few = retrieve(bank, queries.iloc[[2]], qemb[[2]], k=2, threshold=1.01, kind=FEW_SHOT)
    assert few.contexts[0][0] == 2  # without the guard the twin is the best match (the guard is what removed it)
    prompts = augmented_prompts(bank, queries.iloc[[2]], few, FEW_SHOT)
    assert "A2" in prompts[0] and prompts[0].endswith("p2")


def test_clean_template():
    assert clean_template(None) == (None, "empty summary")
    assert clean_template("To solve problems like this,")[0] is None
    good = "To solve problems like this, add the numbers first, then write Answer: N."
    assert clean_template(good) == (good, None)
    echo = "To solve problems like this, explain the general method for solving problems like this one, so that"
    assert clean_template(echo) == (None, "summary repeats the instructions")


class _Counting:
    """The tiny model's backend, counting the prompts it is asked (the summaries' cache must spare it)."""

    calls = 0

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, requests, **kw):
        _Counting.calls += len(requests)
        return self.inner.generate(requests, **kw)


def test_summaries_are_cached_and_failures_are_rows(tmp_path, tiny_llama):
    from fusion.backends import make_backend

    cfg = ThoughtConfig(summariser={"name": "tiny", "backend": "transformers", "model": str(tiny_llama),
                                    "input_price": 0, "output_price": 0}, summary_max_new_tokens=6, batch_size=4)
    groups = pd.DataFrame({"query_id": ["a", "b", "c"], "task": "t", "domain": "d",
                           "question": ["What is 2+2?", "What is 3+3?", "Name a colour."],
                           "answers": [["Answer: 4"], ["Answer: 6", "6"], ["red"]], "sources": [["m"]] * 3})

    def factory(spec, **kw):
        return _Counting(make_backend(spec, **kw))

    out = summarise(groups, cfg, tmp_path, model_cache=tmp_path / "cache", backend_factory=factory)
    assert _Counting.calls == 3
    # the tiny model writes blank lines: each summary is a row with its error, not a gap
    assert out["template"].isna().all() and out["error"].notna().all()
    assert out["summary_output_tokens"].notna().all()

    def refuse(spec, **kw):
        raise AssertionError("a cached summary was generated again")

    again = summarise(groups, cfg, tmp_path, model_cache=tmp_path / "cache", backend_factory=refuse)
    pd.testing.assert_frame_equal(again, out)
    more = pd.concat([groups, groups.iloc[[0]].assign(query_id="d", question="What is 5+5?")], ignore_index=True)
    summarise(more, cfg, tmp_path, model_cache=tmp_path / "cache", backend_factory=factory)
    assert _Counting.calls == 4  # only the new question


def test_gate_never_promotes_a_worse_distilled_model(tmp_path):
    from mlflow import MlflowClient

    from fusion.levels.model.registry import promote_distilled
    from fusion.tracking import alias_version

    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    client.create_registered_model("d")
    for _ in range(4):
        client.create_model_version("d", source=str(tmp_path))

    def q(k):  # per-query scores on 20 held-out queries: the first k right
        return np.r_[np.ones(k), np.zeros(20 - k)]

    scores = {"1": q(16), "2": q(14), "3": q(17), "4": np.ones(20)}

    def score(uri):
        return scores[uri.rsplit("/", 1)[1]]

    # no champion: compared with the base; a version worse than the base is not promoted
    d = promote_distilled(client, "d", "1", challenger_scores=q(8), base_scores=q(9), score_version=score)
    assert not d["promoted"] and d["compared_with"] == "base" and alias_version(client, "d", "champion") is None
    d = promote_distilled(client, "d", "1", challenger_scores=q(16), base_scores=q(6), score_version=score)
    assert d["promoted"] and alias_version(client, "d", "champion") == "1" and d["advantage"]["lo"] > 0
    d = promote_distilled(client, "d", "2", challenger_scores=q(14), base_scores=q(6), score_version=score)
    assert not d["promoted"] and alias_version(client, "d", "champion") == "1"  # worse than the champion
    d = promote_distilled(client, "d", "3", challenger_scores=q(17), base_scores=q(6), score_version=score)
    assert not d["promoted"]  # one query better than the champion: a mean above the margin, no evidence
    assert d["advantage"]["mean"] == pytest.approx(0.05) and d["advantage"]["lo"] <= 0.0
    d = promote_distilled(client, "d", "4", challenger_scores=np.ones(20), base_scores=q(6), score_version=score)
    assert d["promoted"] and alias_version(client, "d", "champion") == "4"
    assert alias_version(client, "d", "challenger") == "4"

    def broken(uri):
        raise OSError("artifacts gone")

    client.create_model_version("d", source=str(tmp_path))
    d = promote_distilled(client, "d", "5", challenger_scores=q(4), base_scores=q(6), score_version=broken)
    assert not d["promoted"] and "cannot be scored" in d["reason"] and d["compared_with"] == "base"
