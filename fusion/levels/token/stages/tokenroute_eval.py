"""Stage ``tokenroute_eval``: FusionRoute against each expert alone, FusionRoute after SFT, routing only (with the
router after SFT, as in the paper), sequence selection and the fine-tuned model without routing, on the held-out queries (task suite scores; per-task table; each difference with
its paired-bootstrap 95% interval), with each arm's expert token shares and argmax-change rate, a plot of the
routing over positions for a few requests; JSON, terminal, MLflow (the registered version tagged with its score)."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from rich.console import Console

from fusion.core.evaluation import log_comparison, placeholder_plot, plot, rich_table
from fusion.core.heldout import per_query_table, write_per_query
from fusion.core.selection import level_log
from fusion.levels.token.level import (
    FUSED,
    PLAIN_DIR,
    ROUTER_DIR,
    SFT_ROUTER_DIR,
    evaluate,
    experts_of,
    models_per_token,
    routing_plot,
)
from fusion.levels.token.stages.tokenroute_train import TRAIN_REPORT
from fusion.tracking import registry_client, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> dict:
    cfg = params.tokenroute
    out = params.paths.tokenroute_eval
    out.parent.mkdir(parents=True, exist_ok=True)
    trained = params.paths.tokenroute_dir / TRAIN_REPORT
    if not cfg.enabled or not trained.is_file() or not json.loads(trained.read_text()).get("enabled"):
        why = "the token level is disabled" if not cfg.enabled else "no trained token-level router"
        report = {"enabled": False, "reason": why}
        out.write_text(json.dumps(report) + "\n")
        write_per_query(per_query_table("token", {}), params.paths.tokenroute_per_query)
        placeholder_plot(params.paths.tokenroute_plot, why)
        placeholder_plot(params.paths.tokenroute_routing_plot, why)
        return report
    train = json.loads(trained.read_text())
    log, _ = level_log(params.paths.routing_log)
    experts = experts_of(cfg, params.paths.experts_dir)
    plain = params.paths.tokenroute_dir / PLAIN_DIR
    with stage_run(params.tracking, "tokenroute_eval", {**cfg.eval.model_dump(),
                                                        "experts": ",".join(e.name for e in experts)}) as ml:
        report, arms = evaluate(log, params.paths.tokenroute_dir / ROUTER_DIR, plain if plain.is_dir() else None, cfg,
                                experts, model_cache=params.paths.model_cache,
                                cache_dir=params.paths.tokenroute_work / "generations",
                                sft_router_dir=params.paths.tokenroute_dir / SFT_ROUTER_DIR,
                                judge=params.judge if params.judge.enabled else None)
        version = train.get(ROUTER_DIR, {}).get("version")
        report = {"enabled": True, **report, "version": version}
        out.write_text(json.dumps(report, indent=2, default=float) + "\n")
        write_per_query(per_query_table("token", arms, params.price_of(cfg.base),
                                        models_per_token(len(experts), cfg.eval.policy)),
                        params.paths.tokenroute_per_query)
        plot(report, params.paths.tokenroute_plot, "token level: FusionRoute − baseline (95% CI)")
        routing_plot(report, params.paths.tokenroute_routing_plot)
        console = Console()
        console.print(rich_table(report, f"token level on {report['n_queries']} held-out queries"))
        r = report["routing"][FUSED]["all"]
        console.print(f"FusionRoute token shares {', '.join(f'{k} {v:.0%}' for k, v in r['shares'].items())}; "
                      f"the router changed the expert's argmax at {r['change_rate']:.1%} of {r['tokens']} tokens")
        if ml:
            log_comparison(ml, report, arms, "tokenroute_eval",
                           [out, params.paths.tokenroute_plot, params.paths.tokenroute_routing_plot])
            ml.log_metrics({f"share.{k}": v for k, v in r["shares"].items()} | {"change_rate": r["change_rate"]})
            if version:
                client = registry_client(params.tracking)
                client.set_model_version_tag(cfg.registered_model, version, "eval.performance",
                                             f"{report['arms'][FUSED]['performance']:.4f}")
    return report
