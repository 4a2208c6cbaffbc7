"""Stage ``collect``: every candidate (LLM x mode) of ``params.pool`` on every query, scored (resumable)."""

from __future__ import annotations

import logging
from pathlib import Path

from fusion.collection.collect import collect
from fusion.collection.queries import read_queries
from fusion.config import Params
from fusion.log.schema import write_log
from fusion.log.summary import summarize
from fusion.tracking import flat_metrics, stage_run

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    queries = read_queries(params.paths.queries)
    logged = {"pool": [s.model_dump() for s in params.pool], "collect": params.collect.model_dump()}
    with stage_run(params.tracking, "collect", logged) as ml:
        log = collect(queries, list(params.pool), params.collect, params.paths.collect_parts,
                      model_cache=params.paths.model_cache)
        out = write_log(log, params.paths.routing_log)
        if ml:
            by_cand = log.groupby("candidate", observed=True).agg(
                performance=("performance", "mean"), cost_usd=("cost_usd", "sum"),
                output_tokens=("output_tokens", "sum"), errors=("error", "count"))
            for cand, row in by_cand.iterrows():
                ml.log_metrics(flat_metrics(row.to_dict(), f"{cand}.".replace(":", "_")))
            ml.log_metrics({"rows": len(log), "total_cost_usd": float(log["cost_usd"].sum())})
            ml.log_dict(summarize(log, source=str(out)).to_dict(), "routing_log_summary.json")
            ml.log_table(by_cand.reset_index(), "per_candidate.json")
    logger.info("collect: %d rows (%d queries x %d candidates), %d error row(s), %.6f USD", len(log),
                log["query_id"].nunique(), log["candidate"].nunique(), int(log["error"].notna().sum()),
                float(log["cost_usd"].sum()))
    return out
