"""The cross-level summary: every level on the same held-out queries against the same best-single, each difference
with its paired interval and its word; the per-query layout every evaluation writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fusion.core.heldout import arm_scores, per_query_table
from fusion.core.stats import verdict
from fusion.core.summary import summarise, summary_table

IDS = [f"q{i:02d}" for i in range(20)]


def _arm(perf, ids=IDS, **extra) -> pd.DataFrame:
    return pd.DataFrame({"query_id": ids, "task": ["t"] * len(ids), "performance": perf,
                         "input_tokens": [100] * len(ids), "output_tokens": [10] * len(ids), **extra})


def _k(k, n=20):
    return np.r_[np.ones(k), np.zeros(n - k)]


def test_verdict_words():
    assert verdict({"lo": 0.01, "hi": 0.2}) == "gain"
    assert verdict({"lo": -0.2, "hi": -0.01}) == "loss"
    assert verdict({"lo": 0.0, "hi": 0.2}) == "no evidence"
    assert verdict({"lo": 0.05, "hi": 0.2}, margin=0.1) == "no evidence"


def test_per_query_table_prices_tokens_and_keeps_logged_costs():
    t = per_query_table("thought", {"templates": _arm(_k(5))}, price=(1.0, 2.0))
    assert list(t.columns[:8]) == ["level", "arm", "query_id", "task", "performance", "cost", "input_tokens",
                                   "output_tokens"]
    assert t["cost"].iloc[0] == pytest.approx((100 * 1.0 + 10 * 2.0) / 1e6)
    t = per_query_table("token", {"fusionroute": _arm(_k(5))}, price=(1.0, 2.0), models_per_token={"fusionroute": 2})
    assert t["cost"].iloc[0] == pytest.approx(2 * 120 / 1e6)
    assert per_query_table("model", {"base": _arm(_k(5))})["cost"].isna().all()  # no price: no cost
    q = per_query_table("query", {"best-single": _arm(_k(5), cost=[0.5] * 20, reward=_k(5))})
    assert q["cost"].iloc[0] == 0.5 and "reward" in q
    shuffled = IDS[::-1]
    assert list(arm_scores(q, "best-single", shuffled)) == list(_k(5)[::-1])
    with pytest.raises(KeyError, match="did not answer"):
        arm_scores(q, "best-single", ["nope"])


def _levels(token_ids=IDS):
    query = per_query_table("query", {"best-single": _arm(_k(6), cost=[2e-6] * 20),
                                      "knn": _arm(_k(16), cost=[1e-6] * 20)})
    thought = per_query_table("thought", {"zero-shot": _arm(_k(6)), "templates": _arm(_k(6))}, (0.01, 0.02))
    model = per_query_table("model", {"base": _arm(_k(6)), "distilled": _arm(np.r_[np.zeros(14), np.ones(6)])},
                            (0.01, 0.02))
    token = per_query_table("token", {"fusionroute": _arm(np.zeros(len(token_ids)), ids=token_ids)}, (0.01, 0.02),
                            {"fusionroute": 2})
    return {"query": query, "thought": thought, "model": model, "token": token}


def test_summary_compares_every_level_with_the_same_best_single_on_the_same_queries():
    s = summarise(_levels(), routed="knn", best_single="a:direct")
    rows = {r["system"]: r for r in s["rows"]}
    assert list(rows) == ["best single (a:direct)", "routed (knn)", "templates", "distilled", "FusionRoute"]
    assert s["n_queries"] == 20 and s["note"] is None
    best = rows["best single (a:direct)"]
    assert best["score"] == pytest.approx(0.3) and best["difference"] is None and best["cost_usd"] == pytest.approx(2e-6)
    assert rows["routed (knn)"]["difference"] == pytest.approx(0.5) and rows["routed (knn)"]["word"] == "gain"
    assert rows["templates"]["difference"] == 0 and rows["templates"]["word"] == "no evidence"
    # the same score as best-single on *other* queries: paired per query, the differences do not cancel
    assert rows["distilled"]["score"] == pytest.approx(0.3) and rows["distilled"]["difference"] == pytest.approx(0)
    assert rows["distilled"]["lo"] < 0 < rows["distilled"]["hi"]
    assert rows["FusionRoute"]["word"] == "loss" and rows["FusionRoute"]["hi"] < 0
    assert rows["FusionRoute"]["cost_usd"] == pytest.approx(2 * (100 * 0.01 + 10 * 0.02) / 1e6)
    assert summary_table(s).row_count == 5


def test_summary_uses_the_queries_every_level_answered_and_says_so():
    s = summarise(_levels(token_ids=IDS[:12]), routed="knn")
    assert s["n_queries"] == 12 and "12 queries all of them answered" in s["note"]
    rows = {r["system"]: r for r in s["rows"]}
    assert rows["best single"]["score"] == pytest.approx(0.5)  # 6 right among the first 12
    assert s["evaluated_on"]["token:fusionroute"] == 12 and s["evaluated_on"]["query:best-single"] == 20


def test_summary_without_the_later_levels_and_without_a_router_evaluation():
    levels = _levels()
    s = summarise({"query": levels["query"], "thought": None, "model": levels["model"].iloc[:0]}, routed="knn")
    assert [r["system"] for r in s["rows"]] == ["best single", "routed (knn)"]
    with pytest.raises(ValueError, match="evaluate"):
        summarise({"query": None}, routed=None)


def test_each_level_table_gives_every_difference_its_interval_and_word():
    from fusion.core.evaluation import compare, markdown, rich_table

    arms = {n: _arm(v, error=[None] * 20) for n, v in (("base", _k(6)), ("better", _k(16)), ("same", _k(6)))}
    report = compare(arms, [("better", "base"), ("same", "base")], n_boot=500)
    words = {d["arm"]: d["word"] for d in report["differences"]}
    assert words == {"better": "gain", "same": "no evidence"}
    better = report["differences"][0]
    assert better["mean"] == pytest.approx(0.5) and 0 < better["lo"] < 0.5 < better["hi"]
    assert "| gain |" in markdown(report) and "| no evidence |" in markdown(report)
    assert rich_table(report, "t").row_count == 5
