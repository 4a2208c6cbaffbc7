"""Stage ``promote_distilled``: the distilled model's gate (:func:`fusion.distill.registry.promote_distilled`): the
new version becomes ``champion`` only when it beats the champion (or the base model, when there is none) on the
same held-out queries by more than ``distill.margin``; the decision and its reason are written and logged."""

from __future__ import annotations

import json

from fusion.config import Params
from fusion.core.identity import local_spec as model_spec
from fusion.distill.level import score_model
from fusion.distill.registry import promote_distilled
from fusion.stages.levels import level_log
from fusion.tracking import registry_client, stage_run


def run(params: Params) -> dict:
    cfg = params.distill
    metrics = json.loads(params.paths.distill_eval.read_text())
    version = metrics.get("version")
    if not metrics.get("enabled"):
        decision = {"promoted": False, "challenger": None,
                    "reason": metrics.get("reason", "the model level is disabled")}
    elif not params.tracking.enabled or version is None:
        decision = {"promoted": False, "challenger": None,
                    "reason": "the distilled model was not registered (tracking disabled)"}
    else:
        log, _ = level_log(params)
        base = model_spec("base", cfg.base)

        def score_version(uri: str) -> float:
            score, fingerprint = score_model(model_spec("champion", uri, base), log, cfg,
                                             cache_dir=params.paths.generation_cache,
                                             model_cache=params.paths.model_cache)
            if fingerprint != metrics["queries_fingerprint"]:
                raise RuntimeError("the evaluation metrics are stale (other held-out queries): re-run distill_eval")
            return score

        with stage_run(params.tracking, "promote_distilled", {"challenger_version": version,
                                                              "margin": cfg.margin}) as ml:
            client = registry_client(params.tracking)
            decision = promote_distilled(client, cfg.registered_model, str(version),
                                         challenger_score=metrics["arms"]["distilled"]["performance"],
                                         base_score=metrics["arms"]["base"]["performance"],
                                         score_version=score_version, margin=cfg.margin)
            ml.log_metrics({k: float(decision[k]) for k in ("challenger_score", "reference_score", "base_score")})
            ml.log_metric("promoted", float(decision["promoted"]))
            ml.set_tags({"fusion.promotion.decision": "promoted" if decision["promoted"] else "kept",
                         "fusion.promotion.reason": decision["reason"][:5000]})
            ml.log_dict(decision, "distill_promotion.json")
    params.paths.distill_promotion.parent.mkdir(parents=True, exist_ok=True)
    params.paths.distill_promotion.write_text(json.dumps(decision, indent=2) + "\n")
    return decision
