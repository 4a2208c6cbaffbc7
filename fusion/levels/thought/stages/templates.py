"""Stage ``templates``: the thought-template bank of the routing log's training queries (selection, summaries,
embeddings; resumable), a DVC output and an MLflow artifact with per-task counts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fusion.core.embedding import Encoder
from fusion.core.selection import level_log
from fusion.levels.thought.bank import BANK_COLUMNS
from fusion.levels.thought.level import build_templates
from fusion.tracking import data_version, flat_metrics, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    cfg = params.thought
    out = params.paths.template_bank
    out.parent.mkdir(parents=True, exist_ok=True)
    params.paths.templates_report.parent.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        pd.DataFrame(columns=[*BANK_COLUMNS, "embedding"]).to_parquet(out, index=False)
        params.paths.templates_report.write_text(json.dumps({"enabled": False}) + "\n")
        return out
    log, recovered = level_log(params.paths.routing_log)
    encoder = Encoder(params.embed.encoder, params.paths.embedding_cache, params.embed.batch_size)
    logged = cfg.model_dump(exclude={"eval", "target"})
    with stage_run(params.tracking, "templates", logged) as ml:
        bank, report = build_templates(log, cfg, params.paths.template_parts, encoder,
                                       model_cache=params.paths.model_cache)
        report["recovered_ground_truth"] = recovered
        tmp = out.with_suffix(".tmp.parquet")
        bank.to_parquet(tmp, index=False)
        tmp.replace(out)
        params.paths.templates_report.write_text(json.dumps({"enabled": True, **report}, indent=2) + "\n")
        if ml:
            ml.set_tags(data_version(params.paths.routing_log))
            ml.log_metrics(flat_metrics({k: report[k] for k in ("questions", "templates", "failed")}, "bank."))
            ml.log_metrics(flat_metrics(report["per_task"], "bank."))
            ml.log_artifact(str(out), "template_bank")
            ml.log_artifact(str(params.paths.templates_report))
    logger.info("templates: %d of %d training questions have a template (%d failed summaries); %s",
                report["templates"], report["questions"], report["failed"],
                ", ".join(f"{k}: {v} unusable" for k, v in report["unusable_queries"].items()) or "none unusable")
    return out
