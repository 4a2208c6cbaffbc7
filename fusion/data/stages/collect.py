"""Stage ``collect``: every candidate (LLM x mode) of ``params.pool`` on every query, scored (resumable)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fusion.data.collect import (
    Shard,
    assemble,
    check_estimate,
    collect,
    make_shards,
    plan,
    plan_frame,
    run_shard,
)
from fusion.data.queries import read_queries
from fusion.log.schema import write_log
from fusion.log.summary import error_summary, summarize
from fusion.tracking import flat_metrics, stage_run, use_registry

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def dry_run(params: Params, *, retry_errors: bool = False) -> pd.DataFrame:
    """The planned calls per candidate and their estimated tokens and cost; nothing is generated."""
    use_registry(params.tracking)  # a pool entry may be a registered model (models:/...)
    queries = read_queries(params.paths.queries)
    return plan_frame(plan(queries, list(params.pool), params.collect, params.paths.collect_parts,
                           retry_errors=retry_errors))


def plan_shards(params: Params, *, retry_errors: bool = False) -> list[dict]:
    """The shards of the remaining collection (``collect.scale_out.shards`` per candidate), as plain dicts for
    Prefect tasks; checks the cost estimate against ``collect.max_cost_usd`` first."""
    use_registry(params.tracking)  # a pool entry may be a registered model (models:/...)
    queries = read_queries(params.paths.queries)
    pool = list(params.pool)
    check_estimate(plan(queries, pool, params.collect, params.paths.collect_parts, retry_errors=retry_errors),
                    params.collect.max_cost_usd)
    shards = make_shards(queries, pool, params.collect, params.paths.collect_parts,
                         n_shards=params.collect.scale_out.shards, retry_errors=retry_errors)
    return [asdict(s) for s in shards]


def run_one_shard(params: Params, shard: dict) -> int:
    """Collect one shard (a Prefect task; it resumes like the whole stage)."""
    use_registry(params.tracking)  # a pool entry may be a registered model (models:/...)
    queries = read_queries(params.paths.queries)
    spec = next(s for s in params.pool if s.name == shard["llm"])
    return run_shard(Shard(**{**shard, "query_ids": tuple(shard["query_ids"])}), queries, spec, params.collect,
                     params.paths.collect_parts, model_cache=params.paths.model_cache)


def finish(params: Params) -> Path:
    """Assemble the parts into the collected log, with the stage's MLflow run."""
    use_registry(params.tracking)
    queries = read_queries(params.paths.queries)
    return _write(params, assemble(queries, list(params.pool), params.paths.collect_parts))


def run(params: Params, *, retry_errors: bool = False) -> Path:
    use_registry(params.tracking)  # a pool entry may be a registered model (models:/...)
    queries = read_queries(params.paths.queries)
    log = collect(queries, list(params.pool), params.collect, params.paths.collect_parts,
                  model_cache=params.paths.model_cache, retry_errors=retry_errors)
    return _write(params, log)


def _write(params: Params, log: pd.DataFrame) -> Path:
    logged = {"pool": [s.model_dump() for s in params.pool], "collect": params.collect.model_dump()}
    with stage_run(params.tracking, "collect", logged) as ml:
        out = write_log(log, params.paths.collected)
        errors = error_summary(log)
        if ml:
            by_cand = log.groupby("candidate", observed=True).agg(
                performance=("performance", "mean"), cost_usd=("cost_usd", "sum"),
                output_tokens=("output_tokens", "sum"), errors=("error", "count"))
            for cand, row in by_cand.iterrows():
                ml.log_metrics(flat_metrics(row.to_dict(), f"{cand}.".replace(":", "_")))
            ml.log_metrics({"rows": len(log), "total_cost_usd": float(log["cost_usd"].sum()),
                            "error_rows": int(log["error"].notna().sum())})
            ml.log_dict(summarize(log, source=str(out)).to_dict(), "routing_log_summary.json")
            ml.log_table(by_cand.reset_index(), "per_candidate.json")
            if len(errors):
                ml.log_table(errors, "errors.json")
    logger.info("collect: %d rows (%d queries x %d candidates), %d error row(s), %.6f USD", len(log),
                log["query_id"].nunique(), log["candidate"].nunique(), int(log["error"].notna().sum()),
                float(log["cost_usd"].sum()))
    for r in errors.itertuples(index=False):
        logger.warning("errors: %s: %d x %s (%.0f%% of its rows), e.g. %s", r.candidate, r.rows, r.kind,
                       100 * r.share, r.example)
    if len(errors):
        logger.warning("error rows are kept; `fusion collect --retry-errors` re-runs only those")
    return out
