"""The query level's parameters (``scenario``, ``routers``, ``evaluate``, ``promote``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from fusion.core.config import Strict
from fusion.levels.query.rewards import Scenario, resolve_scenario


class ScenarioConfig(Strict):
    """Reward = alpha * perf - beta * cost, both min-max normalised per task (FusionFactory); or ``llm_judge``:
    the judge score. Resolved by :func:`fusion.levels.query.rewards.resolve_scenario` (the one place scenarios are defined)."""

    name: str = "performance_first"
    alpha: float | None = Field(default=None, ge=0)
    beta: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _known(self) -> ScenarioConfig:
        self.resolve()
        return self

    def resolve(self) -> Scenario:
        return resolve_scenario(self.name, self.alpha, self.beta)


class RouterConfig(Strict):
    """One router to train: a registered router name (see `fusion route list`), its parameters, its seed. The
    name and the parameters are checked against the router's own typed parameters where routers are built
    (:func:`fusion.levels.query.check_router_specs`, called when a driver loads params.yaml)."""

    name: str = "knn"
    params: dict[str, Any] = {}
    seed: int = 0


class EvaluateConfig(Strict):
    split: str = "test"
    #: also evaluate every router served without the queries' task (as a client that sends none): the routers
    #: infer it, and the report says which path each query took
    task_blind: bool = True


class PromoteConfig(Strict):
    """The promotion gate: the best router of a run (the challenger) becomes ``champion`` only when the lower bound
    of the paired-bootstrap 95% interval of its per-query advantage over the current champion, on the same
    evaluation split, is above ``margin`` (in units of ``metric``; ``n_boot`` resamples)."""

    metric: Literal["reward", "performance"] = "reward"
    margin: float = Field(default=0.0, ge=0)
    n_boot: int = Field(default=1000, ge=100)
