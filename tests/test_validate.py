"""Validation with quarantine: each planted defect is caught with its expectation named, only the offending rows
are quarantined, blocking failures stop with a readable summary, and Data Docs are written."""

from __future__ import annotations

import pandas as pd
import pytest
from routing_fixtures import cluster_log as synthetic_log

from fusion.data.ingest import SOURCE, as_text
from fusion.data.validate import FAILED, validate_log
from fusion.log.schema import coerce_log


@pytest.fixture(scope="module")
def good_log():
    log, _ = synthetic_log(n_per_cluster=6)
    return coerce_log(log.assign(input_tokens=12, output_tokens=3))


def _raw(log: pd.DataFrame, source: str = "collected") -> pd.DataFrame:
    return as_text(log).assign(**{SOURCE: source})


def _quarantined(v) -> dict[tuple[str, str], str]:
    q = v.quarantine
    return {(r.query_id, r.candidate): getattr(r, FAILED) for r in q.itertuples()}


def test_clean_log_passes_untouched(good_log, tmp_path):
    v = validate_log(_raw(good_log), docs_dir=tmp_path / "docs")
    assert v.report.success and v.report.n_quarantined == 0, v.report.render()
    pd.testing.assert_frame_equal(v.clean, good_log)  # text and back: the same typed log
    assert (tmp_path / "docs" / "index.html").is_file() and v.report.data_docs.endswith("index.html")


def test_each_planted_defect_is_quarantined_alone_and_named(good_log):
    raw = _raw(good_log)
    key = lambda i: (raw.loc[i, "query_id"], raw.loc[i, "candidate"])  # noqa: E731
    planted = {}
    raw.loc[0, "performance"] = "1.5"  # out of range
    planted[key(0)] = "performance in [0, 1]"
    raw.loc[2, "cost_usd"] = "cheap"  # wrong type
    planted[key(2)] = "cost_usd is a number"
    raw.loc[4, "input_tokens"] = "0"  # no tokens on a successful row
    planted[key(4)] = "input_tokens > 0 on a successful row"
    # a missing candidate: query of rows 6/7 loses B -> its remaining row is quarantined
    missing_key = key(7)
    planted[key(6)] = "every query has every candidate"
    # train/test overlap by text: a test query that repeats a train query's text (case and spaces aside)
    train_q = raw[raw["split"] == "train"].iloc[0]
    test_rows = raw.index[(raw["split"] == "test") & (raw["query_id"] == raw.loc[raw["split"] == "test", "query_id"].iloc[0])]
    raw.loc[test_rows, "query"] = "  " + train_q["query"].upper() + " "
    for i in test_rows:
        planted[key(i)] = "train and test are disjoint by query text"
    # an exact duplicate (a file ingested twice) and a conflicting re-ingested row
    dup = raw.loc[[8]].assign(**{SOURCE: "incoming/day2.jsonl"})
    conflict = raw.loc[[10]].assign(performance="0.0" if raw.loc[10, "performance"] != "0.0" else "1.0",
                                    **{SOURCE: "incoming/day2.jsonl"})
    raw = pd.concat([raw.drop(index=[7]), dup, conflict], ignore_index=True)
    v = validate_log(raw)
    q = _quarantined(v)
    assert v.report.success, v.report.render()  # only non-blocking expectations failed: the rest goes on
    for k, name in planted.items():
        assert name in q.pop(k), (k, name)
    # the duplicate: one extra copy quarantined (the first kept); the conflict: every copy, named
    dup_rows = v.quarantine[v.quarantine[FAILED].str.contains("duplicate row")]
    assert len(dup_rows) == 1 and dup_rows[SOURCE].iloc[0] == "incoming/day2.jsonl"
    conflict_rows = v.quarantine[v.quarantine[FAILED].str.contains("conflicting rows")]
    assert len(conflict_rows) == 2 and set(conflict_rows[SOURCE]) == {"collected", "incoming/day2.jsonl"}
    assert len(v.quarantine) == len(planted) + 3
    assert missing_key not in set(zip(v.clean["query_id"], v.clean["candidate"], strict=True))
    # nothing else was touched
    assert len(v.clean) + len(v.quarantine) == len(raw)
    names = {r["name"]: r for r in v.report.failures}
    assert names["performance in [0, 1]"]["rows"] == 1 and not names["performance in [0, 1]"]["blocking"]
    rendered = v.report.render()
    assert "quarantined 1 row(s)" in rendered and "cost_usd is a number" in rendered


def test_blocking_failures_stop_with_a_summary(good_log):
    errs = good_log.copy()
    mask = errs["candidate"] == "B:direct"
    errs.loc[mask, "performance"] = pd.NA
    errs.loc[mask, "error"] = "http 500: boom"
    v = validate_log(_raw(errs), max_error_rate=0.2)
    assert not v.report.success
    blocking = v.report.blocking_failures
    assert [b["expectation"] for b in blocking] == ["error_rate_per_candidate_at_most"]
    assert "BLOCKING" in v.report.render() and "B:direct 100%" in v.report.render()

    wrong = _raw(good_log).rename(columns={"cost_usd": "price"})
    v = validate_log(wrong)
    assert not v.report.success and v.report.blocking_failures[0]["name"].startswith("the log has exactly")

    bad = _raw(good_log)
    bad["performance"] = "7"
    v = validate_log(bad, max_quarantine_fraction=0.5)
    assert not v.report.success and "quarantine_share_at_most" in {b["expectation"] for b in v.report.blocking_failures}


def test_query_table_suite(good_log):
    queries = good_log.drop_duplicates("query_id")[["query_id", "task", "domain", "split", "query",
                                                    "ground_truth", "metric"]]
    v = validate_log(_raw(good_log), queries=pd.concat([queries, queries.iloc[[0]]]))
    failed = {r["name"] for r in v.report.blocking_failures}
    assert failed == {"query_id is unique"}
