"""The LLM judge: verdict parsing, the stage's caching and resume, scores kept from a source, agreement report."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fusion.config import JudgeConfig, LLMSpec
from fusion.data.judge import agreement, judge, judge_prompt, parse_verdict, read_verdicts, reference_of
from fusion.log.schema import coerce_log
from tests.fault_server import FaultServer


@pytest.mark.parametrize(("text", "score"), [
    ("Score: 0.8", 0.8), ("**Score**: 1.0", 1.0), ('{"score": 0.3}', 0.3), ("score = 6/10", 0.6),
    ("The scale is 0 to 1.\nScore: 0", 0.0), ("0.6", 0.6), ("Score: 0.75 because...", 0.8), ("Score: 1", 1.0),
    ("The final score is 0.3.", 0.3),
])
def test_readable_verdicts(text, score):
    assert parse_verdict(text) == (score, None)


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty verdict"), (None, "empty verdict"), ("Great answer!", "no score in verdict"),
    ("Score: 7", "outside the scale"), ("Score: excellent", "no score in verdict"),
])
def test_unreadable_verdicts_are_null_with_a_reason_never_zero(text, reason):
    score, why = parse_verdict(text)
    assert score is None and reason in why


def test_prompt_shows_a_short_reference_but_never_code_tests():
    assert reference_of("42", "math") == "42"
    assert reference_of('{"tests": "assert f(1) == 2"}', "code") is None
    assert reference_of("x" * 1000, "reading") is None
    p = judge_prompt("What is 6*7?", "42", "42")
    assert "What is 6*7?" in p and "Reference answer" in p and p.rstrip().endswith("Score: <number>")
    assert "Reference answer" not in judge_prompt("q", "a", None)


def _log(n: int = 12) -> pd.DataFrame:
    rows = []
    for i in range(n):
        for cand, grade in (("m:direct", [0.0, 0.3, 0.6, 0.8, 1.0][i % 5]), ("m:think", None)):
            rows.append({"query_id": f"t-{i}", "task": "arith_word" if i % 2 else "mc_reasoning",
                         "domain": "math", "split": "train", "query": f"question {i}", "prompt": f"question {i}",
                         "ground_truth": str(i), "metric": "em", "llm": "m", "mode": cand.split(":")[1],
                         "candidate": cand, "backend": "replay", "performance": float(grade or 0) > 0.5,
                         "response": f"answer {i} grade={grade}" if grade is not None else f"answer {i}"})
    log = coerce_log(pd.DataFrame(rows))
    log.loc[log.index[-1], ["response", "performance"]] = pd.NA  # an error row: nothing to judge
    log.loc[log.index[-1], "error"] = "generation failed: boom"
    return log


def _cfg(url: str, **kw) -> JudgeConfig:
    llm = LLMSpec(name="grader", backend="openai", model="grader-model", input_price=1.0, output_price=1.0,
                  options={"base_url": url, "max_retries": 0, "timeout_s": 5})
    return JudgeConfig(enabled=True, llm=llm, **kw)


def test_judge_fills_scores_caches_and_keeps_source_scores(tmp_path):
    log = _log()
    with FaultServer("judge") as srv:
        res = judge(log, _cfg(srv.base_url), tmp_path / "parts", model_cache=tmp_path / "mc")
        first_requests = srv.requests
        again = judge(log, _cfg(srv.base_url), tmp_path / "parts", model_cache=tmp_path / "mc")
        assert srv.requests == first_requests == 23  # 24 rows, one without an answer; the rerun asks nothing
        # a changed answer is judged again, nothing else
        changed = log.copy()
        changed.loc[0, "response"] = "answer 0 grade=1.0"
        res2 = judge(changed, _cfg(srv.base_url), tmp_path / "parts", model_cache=tmp_path / "mc")
        assert srv.requests == 24 and res2.log.loc[0, "judge_score"] == 1.0
        # scores a source already has are kept (unless rejudge)
        sourced = log.copy()
        sourced.loc[1, "judge_score"] = 0.3
        res3 = judge(sourced, _cfg(srv.base_url), tmp_path / "parts", model_cache=tmp_path / "mc")
        assert res3.log.loc[1, "judge_score"] == 0.3 and res3.verdicts.loc[1, "source"] == "source"
        # another rubric version or judge model is another cache key
        other = _cfg(srv.base_url).model_copy(update={"llm": _cfg(srv.base_url).llm.model_copy(
            update={"model": "grader-2"})})
        judge(log, other, tmp_path / "parts", model_cache=tmp_path / "mc")
        assert srv.requests == 24 + 23
    pd.testing.assert_frame_equal(again.log, res.log)
    got = res.log.set_index(["query_id", "candidate"])["judge_score"]
    assert got[("t-3", "m:direct")] == 0.8 and got[("t-5", "m:direct")] == 0.0
    think = res.verdicts[res.verdicts["candidate"] == "m:think"]
    assert think["judge_score"].isna().all()  # "I cannot decide." is unreadable: null, never 0
    assert think["reason"].iloc[0].startswith("no score in verdict")
    assert res.verdicts["reason"].iloc[-1] == "no response"
    cached = read_verdicts(tmp_path / "parts", _cfg("x"))
    assert cached["judge"].value_counts().to_dict() == {"grader-model": 24, "grader-2": 23}  # 23 + a re-judged one


def test_agreement_per_task():
    log = _log(20)
    log["judge_score"] = log["performance"].astype("Float64")  # a judge that agrees perfectly
    log.loc[log["candidate"] == "m:think", "judge_score"] = pd.NA
    table = agreement(log).set_index("task")
    assert table.loc["all", "accuracy_at_0.5"] == 1.0 and table.loc["all", "spearman"] == pytest.approx(1.0)
    assert table.loc["all", "judged"] == 20 and table.loc["all", "answered"] == 39
    assert math.isclose(table.loc["all", "coverage"], 20 / 39)
    assert set(table.index) == {"arith_word", "mc_reasoning", "all"}


def test_judge_needs_an_llm_when_enabled():
    with pytest.raises(ValueError, match="judge.llm"):
        JudgeConfig(enabled=True)


def test_judge_stage_writes_the_log_verdicts_report_and_mlflow_run(tmp_path):
    import json

    import mlflow

    from fusion.config import parse_params
    from fusion.data.stages import judge as stage
    from fusion.log.schema import read_log, write_log

    with FaultServer("judge") as srv:
        cfg = _cfg(srv.base_url)
        params = parse_params({
            "pool": [{"name": "m", "backend": "replay", "model": "m", "input_price": 0, "output_price": 0,
                      "options": {"log": "unused.jsonl"}}],
            "queries": {"sources": [{"task": "arith_word", "source": "synthetic"}]},
            "judge": cfg.model_dump(),
            "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_root": str(tmp_path / "art")},
        }).resolve(tmp_path)
        write_log(_log(), params.paths.collected)
        out = stage.run(params)
    log = read_log(out)
    assert log["judge_score"].notna().sum() == 12  # the direct answers carry a grade
    report = json.loads(params.paths.judge_report.read_text())
    assert report["judge"] == "grader-model" and report["null_reasons"] == {"no score in verdict": 11,
                                                                           "no response": 1}
    all_row = next(r for r in report["agreement"] if r["task"] == "all")
    assert all_row["judged"] == 12 and all_row["accuracy_at_0.5"] == 1.0
    client = mlflow.MlflowClient(params.tracking.uri)
    run = client.search_runs([client.get_experiment_by_name(params.tracking.experiment).experiment_id])[0]
    assert run.data.tags["fusion.stage"] == "judge"
    assert run.data.metrics["judge.accuracy_at_0.5"] == 1.0 and run.data.metrics["judge.judged"] == 12
