import pandas as pd
import pytest
from routing_fixtures import cluster_log as synthetic_log

from fusion.collection.validate import validate_log
from fusion.log.schema import coerce_log


@pytest.fixture(scope="module")
def good_log():
    log, _ = synthetic_log(n_per_cluster=5)
    return log


def failed(report) -> set[str]:
    return {f"{r['expectation']}:{r['column']}" for r in report.failures}


def test_clean_log_passes(good_log):
    r = validate_log(good_log)
    assert r.success, r.render()


def test_planted_defects_are_named(good_log):
    bad = good_log.copy()
    bad.loc[0, "performance"] = 1.5
    bad.loc[1, "cost_usd"] = -0.1
    bad = coerce_log(pd.concat([bad, bad.iloc[[2]]], ignore_index=True))  # duplicate row
    r = validate_log(bad)
    assert not r.success
    f = failed(r)
    assert "expect_column_values_to_be_between:performance" in f
    assert "expect_column_values_to_be_between:cost_usd" in f
    assert any(x.startswith("expect_compound_columns_to_be_unique") for x in f)
    assert "1.5" in r.render()


def test_missing_candidate_and_error_rate(good_log):
    r = validate_log(good_log.iloc[1:].reset_index(drop=True))
    assert "every_query_has_every_candidate:None" in failed(r)
    errs = good_log.copy()
    mask = errs["candidate"] == "B:direct"
    errs.loc[mask, "performance"] = pd.NA
    errs.loc[mask, "error"] = "HTTP 500"
    r = validate_log(errs, max_error_rate=0.2)
    assert "error_rate_per_candidate_at_most:error" in failed(r)
    assert "B:direct 100%" in r.render()
