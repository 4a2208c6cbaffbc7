"""Stage ``promote``: the promotion gate (:mod:`fusion.routers.promotion`) on the evaluation's best router; writes
its decision."""

from __future__ import annotations

import json

from fusion.config import Params
from fusion.routers.evaluation import split_fingerprint
from fusion.routers.promotion import promote
from fusion.stages.routing import read_manifest, routing_data
from fusion.tracking import registry_client, stage_run


def run(params: Params) -> dict:
    """The promotion gate on the evaluation's best router (see :mod:`fusion.routers.promotion`); writes its decision."""
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
            decision = promote(client, model, version, test, cfg.metric, cfg.margin).to_dict()
            decision["challenger_router"] = best
            ml.log_metrics({k: decision[k] for k in ("challenger_score", "champion_score")
                            if decision[k] is not None})
            ml.log_metric("promoted", float(decision["promoted"]))
            ml.set_tags({"fusion.promotion.decision": "promoted" if decision["promoted"] else "kept",
                         "fusion.promotion.reason": decision["reason"][:5000]})
            ml.log_dict(decision, "promotion.json")
    params.paths.promotion.parent.mkdir(parents=True, exist_ok=True)
    params.paths.promotion.write_text(json.dumps(decision, indent=2) + "\n")
    return decision
