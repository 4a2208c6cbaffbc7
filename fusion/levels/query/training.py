"""Training one router for deployment: what the pipeline's train stage and ``fusion route train`` both call."""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from fusion.core.embedding import shared_prefixes
from fusion.levels.query.base import Router, make_router
from fusion.levels.query.data import RoutingData
from fusion.levels.query.rewards import Scenario


def train_router(name: str, data: RoutingData, log: pd.DataFrame, *, encoder: str, scenario: Scenario, seed: int = 0,
                 params: dict | None = None) -> Router:
    """Fit router ``name`` on ``data``'s training split (model selection on the log's own ``val`` split when it
    has one, else on a split the router carves from train) and record in its meta what serving needs: the
    encoder reference, the scenario and the few-shot prefixes stripped before embedding."""
    router = make_router(name, seed=seed, **(params or {}))
    if router.evaluation_only:
        raise ValueError(f"{name} is for evaluation only and cannot be trained for deployment")
    train, val = data.fit_and_val()
    router.fit(train, val)
    router.meta.update(encoder=encoder, scenario=asdict(scenario), text_prefixes=shared_prefixes(log))
    return router
