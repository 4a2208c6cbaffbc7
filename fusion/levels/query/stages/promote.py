"""Stage ``promote``: the promotion gate (:mod:`fusion.levels.query.promotion`) on the evaluation's best router; writes
its decision."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fusion.core.promotion import record_decision
from fusion.levels.query.evaluation import split_fingerprint
from fusion.levels.query.promotion import promote
from fusion.levels.query.stages.routing import read_manifest, routing_data
from fusion.tracking import registry_client, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params


def run(params: Params) -> dict:
    """The promotion gate on the evaluation's best router (see :mod:`fusion.levels.query.promotion`); writes its decision."""
    metrics = json.loads(params.paths.eval_metrics.read_text())
    model = read_manifest(params)["registered_model"]  # where train registered the versions
    best = metrics["best_router"]
    version = metrics["versions"].get(best)
    if not params.tracking.enabled:
        decision = {"promoted": False, "challenger": None, "reason": "tracking disabled: no model registry"}
    elif model is None or version is None:
        decision = {"promoted": False, "challenger": None,
                    "reason": f"the routers were trained without registering them (no version of {best!r}): "
                              "re-run train with tracking enabled"}
    else:
        _, data = routing_data(params)
        test = data.split(params.evaluate.split)
        if split_fingerprint(test) != metrics["split_fingerprint"]:
            raise RuntimeError("the evaluation metrics are stale (another split than the current log's): "
                               "re-run evaluate before promote")
        cfg = params.promote
        with stage_run(params.tracking, "promote", {**cfg.model_dump(), "challenger_router": best,
                                                    "challenger_version": version}) as ml:
            client = registry_client(params.tracking)
            decision = promote(client, model, version, test, cfg.metric, cfg.margin, n_boot=cfg.n_boot).to_dict()
            decision["challenger_router"] = best
            ml.log_metrics({k: decision[k] for k in ("challenger_score", "champion_score")
                            if decision[k] is not None})
            record_decision(ml, decision, params.paths.promotion, "promotion.json")
            return decision
    return record_decision(None, decision, params.paths.promotion, "promotion.json")
