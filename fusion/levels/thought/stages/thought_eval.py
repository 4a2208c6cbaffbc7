"""Stage ``thought_eval``: the target model on held-out queries zero-shot, few-shot and with retrieved templates;
per-task performance, tokens, and each difference with its paired-bootstrap 95% interval (JSON, table, plot,
MLflow), and every arm's per-query rows (Parquet)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console

from fusion.core.embedding import Encoder
from fusion.core.evaluation import log_comparison, placeholder_plot, plot, rich_table
from fusion.core.heldout import per_query_table, write_per_query
from fusion.core.selection import level_log
from fusion.levels.thought.level import evaluate_templates
from fusion.tracking import stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> dict:
    cfg = params.thought
    out = params.paths.thought_eval
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        out.write_text(json.dumps({"enabled": False}) + "\n")
        write_per_query(per_query_table("thought", {}), params.paths.thought_per_query)
        placeholder_plot(params.paths.thought_plot, "the thought level is disabled")
        return {"enabled": False}
    log, _ = level_log(params.paths.routing_log)
    bank = pd.read_parquet(params.paths.template_bank)
    encoder = Encoder(params.embed.encoder, params.paths.embedding_cache, params.embed.batch_size)
    with stage_run(params.tracking, "thought_eval", {"target": cfg.target.model, "k": cfg.k,
                                                     **cfg.eval.model_dump()}) as ml:
        result = evaluate_templates(log, bank, cfg, encoder, cache_dir=params.paths.generation_cache,
                                    model_cache=params.paths.model_cache)
        report = {"enabled": True, **result.report}
        out.write_text(json.dumps(report, indent=2) + "\n")
        write_per_query(per_query_table("thought", result.arms, (cfg.target.input_price, cfg.target.output_price)),
                        params.paths.thought_per_query)
        plot(report, params.paths.thought_plot, "thought templates: differences (95% CI)")
        Console().print(rich_table(report, f"thought level on {report['n_queries']} held-out queries"))
        if ml:
            log_comparison(ml, report, {arm: frame.assign(prompt=result.prompts[arm])
                                        for arm, frame in result.arms.items()}, "thought_eval",
                           [out, params.paths.thought_plot])
    return report
