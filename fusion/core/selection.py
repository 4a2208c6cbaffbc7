"""Which responses of a routing log are worth learning from: the one selection both the thought level (top-n
responses summarised into a template) and the model level (top-k responses distilled into one model) use.

Per training query, the usable responses are those with text and no error that are correct when the task has a
metric (``performance >= min_performance``; a row without a performance, e.g. an open-ended instruction, is
usable on its judge score alone). They are ranked by the strategy:

- ``performance``: the task metric;
- ``judge``: the LLM judge's score (a response without one is not usable under this strategy);
- ``hybrid``: the metric, then the judge, then the lower cost;
- ``two_pass`` (FusionFactory's template selection): the ``first_pass`` best by the metric (ties to the lower cost),
  re-ranked by the judge (ties to the lower cost);

ties go to the shorter (``tie_break="shorter"``) or the longer response (``"longer"``: more output tokens, then more
characters; FusionFactory's distillation), then the cheaper, then the candidate name (deterministic). With
``one_per_llm`` at most one response per LLM is kept (the ``direct`` and ``think`` answers of one LLM count once),
then the first ``n``; ``llms`` restricts the sources to those LLMs. A query left with no usable response is a row
of :attr:`Selection.unusable` with the reason, never dropped silently.

Ground truth recovered from correct answers (:func:`recover_ground_truth`) serves logs that score responses
without keeping the gold answer (RouterBench): for a task whose metric reads one option letter, the letter the
correct responses chose is the gold answer.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

Strategy = Literal["performance", "judge", "hybrid", "two_pass"]
STRATEGIES: tuple[str, ...] = ("performance", "judge", "hybrid", "two_pass")

logger = logging.getLogger(__name__)

NO_RESPONSE_TEXT = "no response text in the log"
ALL_FAILED = "every call failed"
NONE_CORRECT = "no correct response"
NO_JUDGE = "no judged response"
NOT_A_SOURCE = "no response from the source LLMs"


class SelectionError(ValueError):
    """The log cannot give any training example (no response texts, no correct answer); the message says why."""


@dataclass
class Selection:
    picks: pd.DataFrame  # the chosen rows of the log, with ``rank`` (1 = best) per query
    unusable: pd.DataFrame  # query_id, task, reason: training queries with no usable response

    def reason_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.unusable["reason"].value_counts().items()}


def _usable(log: pd.DataFrame, strategy: str, min_performance: float) -> tuple[pd.Series, pd.Series]:
    """(usable mask, the reason each unusable row is not) for every row of ``log``."""
    has_text = log["response"].notna() & (log["response"].astype("string").str.strip().str.len() > 0)
    ok = log["error"].isna()
    perf = log["performance"].astype("Float64")
    correct = perf.isna() | (perf >= min_performance)
    judged = log["judge_score"].notna() if strategy == "judge" else pd.Series(True, index=log.index)
    reason = pd.Series(pd.NA, index=log.index, dtype="string")
    reason = reason.mask(~judged.astype(bool), NO_JUDGE)
    reason = reason.mask(~correct.fillna(False).astype(bool), NONE_CORRECT)
    reason = reason.mask(~ok, ALL_FAILED)
    reason = reason.mask(~has_text.fillna(False).astype(bool), NO_RESPONSE_TEXT)
    return reason.isna(), reason


def rank_responses(rows: pd.DataFrame, strategy: str, *, tie_break: str = "shorter") -> pd.DataFrame:
    """``rows`` sorted best first within each query by ``strategy`` (ties: ``tie_break`` length, cheaper, candidate
    name). ``two_pass`` sorts by its first pass (the metric, then the lower cost); :func:`select_responses` re-ranks."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if tie_break not in ("shorter", "longer"):
        raise ValueError(f"unknown tie break {tie_break!r}; expected 'shorter' or 'longer'")
    chars = rows["response"].astype("string").str.len().fillna(0).astype(int)
    keyed = _sort_keys(rows).assign(
        _len=chars,
        _tok=rows["output_tokens"].astype("Float64").fillna(-1.0).astype(float) if "output_tokens" in rows
        else chars.astype(float),
    )
    primary = {"performance": [("_perf", False)], "judge": [("_judge", False)],
               "hybrid": [("_perf", False), ("_judge", False), ("_cost", True)],
               "two_pass": [("_perf", False), ("_cost", True)]}[strategy]
    length = [("_len", True)] if tie_break == "shorter" else [("_tok", False), ("_len", False)]
    keys = [("query_id", True), *primary, *length, ("_cost", True), ("candidate", True)]
    out = keyed.sort_values([k for k, _ in keys], ascending=[a for _, a in keys], kind="stable")
    return out.drop(columns=["_perf", "_judge", "_cost", "_len", "_tok"])


def _second_pass(first: pd.DataFrame) -> pd.DataFrame:
    """FusionFactory's second pass: the first pass's picks re-ranked by the judge, ties to the lower cost (then the
    first pass's order)."""
    keyed = _sort_keys(first).assign(_order=np.arange(len(first)))
    out = keyed.sort_values(["query_id", "_judge", "_cost", "_order"], ascending=[True, False, True, True],
                            kind="stable")
    return out.drop(columns=["_order", "_perf", "_judge", "_cost"])


def _sort_keys(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` with the sort keys both passes use: ``_perf`` and ``_judge`` (missing: -1, last) and ``_cost``
    (missing: infinite, last)."""
    return rows.assign(_perf=rows["performance"].astype("Float64").fillna(-1.0).astype(float),
                       _judge=rows["judge_score"].astype("Float64").fillna(-1.0).astype(float),
                       _cost=rows["cost_usd"].astype("Float64").fillna(np.inf).astype(float))


def select_responses(log: pd.DataFrame, *, strategy: str = "hybrid", n: int = 3, min_performance: float = 1.0,
                     split: str | None = "train", tie_break: str = "shorter", one_per_llm: bool = True,
                     first_pass: int = 5, llms: list[str] | None = None) -> Selection:
    """The top ``n`` usable responses per query of ``split`` (all splits with None), at most one per LLM with
    ``one_per_llm``, only from ``llms`` when given; ``first_pass`` is the two-pass strategy's first cut."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if strategy == "two_pass" and first_pass < n:
        raise ValueError(f"two_pass keeps n={n} of its first pass: first_pass must be >= n, got {first_pass}")
    if split is not None:
        log = log[log["split"] == split]
    if log.empty:
        raise SelectionError(f"the log has no {split or ''} rows to select responses from".replace("  ", " "))
    if log["response"].isna().all():
        raise SelectionError("the log has no response texts (scores only, like LLMRouter's): the thought and "
                             "model levels learn from responses; give a log with them (a collected log, "
                             "RouterBench, AlpacaEval)")
    usable, reason = _usable(log, "performance" if strategy == "two_pass" else strategy, min_performance)
    if llms is not None:
        source = log["llm"].isin(set(llms))
        if not source.any():
            raise SelectionError(f"none of the source LLMs {sorted(set(llms))} is in the log")
        reason = reason.mask(usable & ~source, NOT_A_SOURCE)
        usable = usable & source
    ranked = rank_responses(log[usable], strategy, tie_break=tie_break)
    if one_per_llm:
        ranked = ranked.drop_duplicates(["query_id", "llm"], keep="first")
    if strategy == "two_pass":
        ranked = _second_pass(ranked.groupby("query_id", sort=False, observed=True).head(first_pass))
    picks = ranked.groupby("query_id", sort=False, observed=True).head(n).copy()
    picks["rank"] = picks.groupby("query_id", sort=False, observed=True).cumcount() + 1
    missing = log[~log["query_id"].isin(set(picks["query_id"]))]
    unusable = (missing.assign(_reason=reason[missing.index])
                .groupby(["query_id", "task"], observed=True, sort=True)["_reason"]
                .agg(_why).rename("reason").reset_index())
    return Selection(picks.reset_index(drop=True), unusable)


def _why(reasons: pd.Series) -> str:
    """One reason for a query: the most telling of its rows' reasons (a correct answer without a judge score says
    more than the wrong answers beside it)."""
    found = set(reasons.dropna())
    for r in (NOT_A_SOURCE, NO_JUDGE, NONE_CORRECT, ALL_FAILED, NO_RESPONSE_TEXT):
        if r in found:
            return r
    return NO_RESPONSE_TEXT


def normalise_text(text: str) -> str:
    """Lower case, punctuation as spaces, whitespace collapsed: how "the same question" is recognised."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


# ---- gold answers recovered from correct responses ----------------------------------------------------------
def recover_ground_truth(log: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Fill ``ground_truth`` (and ``metric``) where a log lacks them, for tasks whose metric reads one option
    letter: the letter most correct responses (performance 1) chose. Returns the log and, per task, how many
    queries got a recovered answer and how many could not (no correct response)."""
    from fusion.tasks.extract import extract_choice
    from fusion.tasks.suite import TASKS

    out = log.copy()
    counts: dict[str, int] = {}
    for task in out.loc[out["ground_truth"].isna(), "task"].dropna().unique():
        if task not in TASKS or TASKS.get(task).metric != "mc_letter":
            continue
        rows = out[(out["task"] == task) & out["ground_truth"].isna()]
        right = rows[rows["performance"].astype("Float64") >= 1.0]
        letters = right.assign(letter=right["response"].map(lambda r: extract_choice(str(r)) if pd.notna(r) else None))
        gold = letters.dropna(subset=["letter"]).groupby("query_id", observed=True)["letter"].agg(
            lambda s: s.value_counts().index[0])
        mask = (out["task"] == task) & out["ground_truth"].isna()
        out.loc[mask, "ground_truth"] = out.loc[mask, "query_id"].map(gold)
        out.loc[mask & out["ground_truth"].notna(), "metric"] = "mc_letter"
        n_q = rows["query_id"].nunique()
        counts[f"{task}.recovered"] = int(gold.size)
        counts[f"{task}.unrecovered"] = int(n_q - gold.size)
    return out, counts


def level_log(path) -> tuple[pd.DataFrame, dict[str, int]]:
    """The routing log the thought, model and token levels learn from: the log at ``path`` with gold answers
    recovered where a log scored answers without keeping them (each recovery counted and logged)."""
    from fusion.log.schema import read_log

    log, recovered = recover_ground_truth(read_log(path))
    for key, n in recovered.items():
        logger.info("gold answers recovered from correct responses: %s = %d", key, n)
    return log, recovered

