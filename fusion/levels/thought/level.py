"""The thought level's two stage implementations over DataFrames: :func:`build_templates` (selection ->
summaries -> bank) and :func:`evaluate_templates` (zero-shot vs few-shot vs templates on held-out queries)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fusion.backends import make_backend
from fusion.core.embedding import Encoder, shared_prefixes, strip_prefixes
from fusion.core.evaluation import compare, held_out_queries, run_arm
from fusion.core.selection import select_responses
from fusion.levels.thought.bank import (
    FEW_SHOT,
    TEMPLATE,
    augmented_prompts,
    bank_counts,
    build_bank,
    retrieve,
)
from fusion.levels.thought.config import ThoughtConfig
from fusion.levels.thought.templates import summarise

ZERO_SHOT = "zero-shot"
ARMS = (ZERO_SHOT, FEW_SHOT, "templates")
PAIRS = (("templates", ZERO_SHOT), ("templates", FEW_SHOT), (FEW_SHOT, ZERO_SHOT))


def question_groups(log: pd.DataFrame, cfg: ThoughtConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per training query with a usable response: ``query_id, task, domain, question, answers,
    sources, best_answer``; and the count of training queries without one, by reason."""
    if cfg.max_queries is not None:
        train_ids = sorted(log.loc[log["split"] == "train", "query_id"].unique())[:cfg.max_queries]
        log = log[(log["split"] != "train") | log["query_id"].isin(set(train_ids))]
    sel = select_responses(log, strategy=cfg.selection, n=cfg.top_n, min_performance=cfg.min_performance,
                           first_pass=cfg.first_pass, one_per_llm=cfg.one_per_llm, llms=cfg.source_llms)
    prefixes = shared_prefixes(log)
    rows = []
    for qid, g in sel.picks.groupby("query_id", sort=True):
        g = g.sort_values("rank")
        rows.append({"query_id": str(qid), "task": str(g["task"].iloc[0]), "domain": str(g["domain"].iloc[0]),
                     "question": strip_prefixes([str(g["query"].iloc[0])], prefixes)[0].strip(),
                     "answers": [str(r) for r in g["response"]], "sources": [str(x) for x in g["llm"]],
                     "best_answer": str(g["response"].iloc[0])})
    cols = ["query_id", "task", "domain", "question", "answers", "sources", "best_answer"]
    return pd.DataFrame(rows, columns=cols), sel.reason_counts()


def build_templates(log: pd.DataFrame, cfg: ThoughtConfig, parts_dir: Path, encoder: Encoder, *,
                    model_cache: Path, backend_factory: Callable = make_backend) -> tuple[pd.DataFrame, dict]:
    """The template bank of ``log``'s training queries, and its report."""
    groups, unusable = question_groups(log, cfg)
    summarised = summarise(groups, cfg, parts_dir, model_cache=model_cache, backend_factory=backend_factory)
    emb = encoder.encode(summarised["question"].tolist())
    bank = build_bank(summarised, emb)
    report = {"questions": len(bank), "templates": int(bank["template"].notna().sum()),
              "failed": int(bank["template"].isna().sum()),
              "failure_reasons": {str(k): int(v) for k, v in bank["error"].dropna().value_counts().items()},
              "unusable_queries": unusable, "per_task": bank_counts(bank), "recipe": cfg.recipe,
              "selection": cfg.selection, "top_n": cfg.top_n, "summary_prompt": cfg.summary_prompt,
              "summariser": cfg.summariser.model,
              "summary_tokens": {"input": int(summarised["summary_input_tokens"].fillna(0).sum()),
                                 "output": int(summarised["summary_output_tokens"].fillna(0).sum())}}
    return bank, report


@dataclass
class ThoughtEval:
    report: dict
    arms: dict[str, pd.DataFrame]
    prompts: dict[str, list[str]]


def evaluate_templates(log: pd.DataFrame, bank: pd.DataFrame, cfg: ThoughtConfig, encoder: Encoder, *,
                       cache_dir: Path, model_cache: Path, backend_factory: Callable = make_backend) -> ThoughtEval:
    """The target model on held-out queries: zero-shot, few-shot (retrieved questions with their best answers)
    and templates (the retrieved templates), with paired-bootstrap intervals of each difference."""
    queries, skipped = held_out_queries(log, cfg.eval)
    if queries.empty:
        raise ValueError(f"no {cfg.eval.split!r} query can be scored (no ground truth): nothing to evaluate")
    qemb = encoder.encode(queries["question"].tolist())
    prompts = {ZERO_SHOT: queries["prompt"].tolist()}
    retrieval = {}
    for arm, kind in ((FEW_SHOT, FEW_SHOT), ("templates", TEMPLATE)):
        r = retrieve(bank, queries, qemb, k=cfg.k, threshold=cfg.near_duplicate_threshold, kind=kind)
        prompts[arm] = augmented_prompts(bank, queries, r, kind, style=cfg.retrieval_prompt)
        retrieval[arm] = {"fallbacks_to_zero_shot": r.fallbacks, "per_task_fallbacks": r.per_task_fallbacks,
                          "excluded_own": r.excluded_self, "excluded_near_duplicates": r.excluded_near_duplicates}
    arms = {arm: run_arm(cfg.target, queries, prompts[arm], cfg.eval, cache_dir=cache_dir, model_cache=model_cache,
                         label=arm, backend_factory=backend_factory) for arm in ARMS}
    report = compare(arms, PAIRS, n_boot=cfg.eval.n_boot)
    report.update(target=cfg.target.model, k=cfg.k, recipe=cfg.recipe, retrieval_prompt=cfg.retrieval_prompt,
                  retrieval=retrieval, skipped=skipped,
                  near_duplicate_threshold=cfg.near_duplicate_threshold)
    return ThoughtEval(report, arms, prompts)
