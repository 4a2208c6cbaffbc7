"""Stage ``promote_distilled``: the distilled model's gate (:func:`fusion.levels.model.registry.promote_distilled`): the
new version becomes ``champion`` only when the lower bound of the 95% interval of its per-query advantage over the
champion (or the base model, when there is none) on the same held-out queries is above ``distill.margin``; the decision and its reason are written and logged."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fusion.core.heldout import arm_scores
from fusion.core.identity import local_spec as model_spec
from fusion.core.promotion import record_decision
from fusion.core.selection import level_log
from fusion.levels.model.level import score_model
from fusion.levels.model.registry import promote_distilled
from fusion.tracking import registry_client, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params


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
        log, _ = level_log(params.paths.routing_log)
        base = model_spec("base", cfg.base)

        rows = pd.read_parquet(params.paths.distill_per_query)
        order = rows.loc[rows["arm"] == "base", "query_id"].tolist()  # the held-out order, as score_model answers

        def score_version(uri: str) -> np.ndarray:
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
                                         challenger_scores=arm_scores(rows, "distilled", order),
                                         base_scores=arm_scores(rows, "base", order),
                                         score_version=score_version, margin=cfg.margin, n_boot=cfg.eval.n_boot)
            ml.log_metrics({k: float(decision[k]) for k in ("challenger_score", "reference_score", "base_score")})
            record_decision(ml, decision, params.paths.distill_promotion, "distill_promotion.json")
            return decision
    return record_decision(None, decision, params.paths.distill_promotion, "distill_promotion.json")
