"""Stage ``distill_eval``: the base, distilled and label-only models answer the same held-out queries; per-task
performance, tokens, and each difference with its paired-bootstrap 95% interval (JSON, table, plot, MLflow; the
registered version is tagged with its score), and every arm's per-query rows (Parquet: the gate reads them)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from rich.console import Console

from fusion.core.evaluation import log_comparison, placeholder_plot, plot, rich_table
from fusion.core.heldout import per_query_table, write_per_query
from fusion.core.identity import local_spec as model_spec
from fusion.core.selection import level_log
from fusion.levels.model.level import BASE, evaluate_models
from fusion.levels.model.stages.distill import read_manifest
from fusion.tracking import registry_client, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> dict:
    cfg = params.distill
    out = params.paths.distill_eval
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(params)
    if not cfg.enabled or not manifest["models"].get("distilled"):
        why = "the model level is disabled" if not cfg.enabled else "no distilled model (no SFT example)"
        report = {"enabled": False, "reason": why}
        out.write_text(json.dumps(report) + "\n")
        write_per_query(per_query_table("model", {}), params.paths.distill_per_query)
        placeholder_plot(params.paths.distill_plot, why)
        return report
    log, _ = level_log(params.paths.routing_log)
    base = model_spec("base", cfg.base)
    models = {BASE: base}
    for kind, entry in manifest["models"].items():
        if entry:  # (None: the set was empty, nothing was trained)
            models[kind] = model_spec(kind, str(params.paths.distill_dir / entry["adapter"]), base)
    with stage_run(params.tracking, "distill_eval", {**cfg.eval.model_dump(), "base": cfg.base}) as ml:
        report, arms = evaluate_models(log, models, cfg, cache_dir=params.paths.generation_cache,
                                       model_cache=params.paths.model_cache)
        report = {"enabled": True, **report, "version": manifest["models"]["distilled"].get("version")}
        out.write_text(json.dumps(report, indent=2) + "\n")
        write_per_query(per_query_table("model", arms, params.price_of(cfg.base)), params.paths.distill_per_query)
        plot(report, params.paths.distill_plot, "distillation: differences (95% CI)")
        Console().print(rich_table(report, f"model level on {report['n_queries']} held-out queries"))
        if ml:
            log_comparison(ml, report, arms, "distill_eval", [out, params.paths.distill_plot])
            if report["version"]:
                client = registry_client(params.tracking)
                for k in ("performance", "input_tokens", "output_tokens"):
                    client.set_model_version_tag(cfg.registered_model, report["version"], f"eval.{k}",
                                                 f"{report['arms']['distilled'][k]:.4f}")
                client.set_model_version_tag(cfg.registered_model, report["version"], "eval.queries_fingerprint",
                                             report["queries_fingerprint"])
    return report
