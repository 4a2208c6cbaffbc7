"""``params.yaml`` -> typed configuration.

``params.yaml`` is the single source of parameters: the CLI, the DVC stages and the Prefect flow all load it
through :func:`load_params`. A wrong key or type fails with a message that names the key.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import (
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationError,
    field_validator,
    model_validator,
)

from fusion.core.config import (  # noqa: F401
    JudgeConfig,
    LLMSpec,
    LoraConfigSpec,
    PathsConfig,
    Recipe,
    Strict,
    TargetEvalConfig,
    TrackingConfig,
    TrainerConfig,
    unique_names,
)
from fusion.data.config import (  # noqa: F401
    CollectConfig,
    EmbedConfig,
    QueriesConfig,
    QuerySource,
    ScaleOutConfig,
    SourceConfig,
    ValidateConfig,
)
from fusion.levels.model.config import DistillConfig, SFTDataConfig  # noqa: F401
from fusion.levels.query.config import EvaluateConfig, PromoteConfig, RouterConfig, ScenarioConfig  # noqa: F401
from fusion.levels.thought.config import ThoughtConfig  # noqa: F401
from fusion.levels.token.config import (  # noqa: F401
    ExpertTraining,
    TokenExpertConfig,
    TokenRouteConfig,
    TokenRouteDataConfig,
    TokenRouteEvalConfig,
    TokenRouteTrainConfig,
)

DEFAULT_PARAMS = Path("params.yaml")


class PipelineConfig(Strict):
    """How the Prefect flow ``fusion-pipeline`` drives the stages of dvc.yaml: ``retries`` of a failed stage by its
    dvc.yaml name (the flow fails on a name dvc.yaml lacks), else ``default_retries``, each after ``retry_delay_s``;
    a stage ``dvc status`` finds up to date is skipped (``skip_up_to_date``), and a stage the flow ran is recorded
    in dvc.lock (``lock``), as ``dvc repro`` does; independent stages run at once, up to ``max_parallel``."""

    retries: dict[str, NonNegativeInt] = {}
    default_retries: NonNegativeInt = 0
    retry_delay_s: float = Field(default=10.0, ge=0)
    skip_up_to_date: bool = True
    lock: bool = True
    #: at most this many stages at once (the stages share the flow's process: 1 runs them one at a time, e.g.
    #: for one GPU); null: as many as the DAG allows
    max_parallel: int | None = Field(default=None, gt=0)


class Params(Strict):
    #: the levels' recipe (``cpu``: the embedded default's; ``fusionfactory``: the official settings); a level's own
    #: ``recipe`` (``thought.recipe``, ``distill.data.recipe``) wins
    recipe: Recipe = "cpu"
    pool: list[LLMSpec] = Field(min_length=1)
    queries: QueriesConfig
    collect: CollectConfig = CollectConfig()
    sources: list[SourceConfig] = []
    judge: JudgeConfig = JudgeConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    embed: EmbedConfig = EmbedConfig()
    scenario: ScenarioConfig = ScenarioConfig()
    routers: list[RouterConfig] = Field(default=[RouterConfig()], min_length=1)
    evaluate: EvaluateConfig = EvaluateConfig()
    promote: PromoteConfig = PromoteConfig()
    thought: ThoughtConfig = ThoughtConfig()
    distill: DistillConfig = DistillConfig()
    tokenroute: TokenRouteConfig = TokenRouteConfig()
    tracking: TrackingConfig = TrackingConfig()
    pipeline: PipelineConfig = PipelineConfig()
    paths: PathsConfig = PathsConfig()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _recipe_to_levels(cls, data):
        if not isinstance(data, dict) or "recipe" not in data:
            return data
        out = dict(data)
        thought = out.get("thought") or {}
        distill = out.get("distill") or {}
        if isinstance(thought, dict):
            out["thought"] = {"recipe": data["recipe"], **thought}
        if isinstance(distill, dict) and isinstance(distill.get("data") or {}, dict):
            out["distill"] = {**distill, "data": {"recipe": data["recipe"], **(distill.get("data") or {})}}
        return out

    @field_validator("pool")
    @classmethod
    def _unique_names(cls, v: list[LLMSpec]) -> list[LLMSpec]:
        return unique_names(v, "pool")

    @field_validator("routers")
    @classmethod
    def _unique_routers(cls, v: list[RouterConfig]) -> list[RouterConfig]:
        return unique_names(v, "routers", " (each router is trained once)")

    def price_of(self, model: str) -> tuple[float, float] | None:
        """USD per 1M input and output tokens of a local model (the pool entry, judge, summariser or thought target
        with these weights): what a level's held-out answers by that model are priced at; None when none has it."""
        specs = [*self.pool, *([self.judge.llm] if self.judge.llm else []), self.thought.summariser,
                 self.thought.target]
        for spec in specs:
            if spec.model == model:
                return spec.input_price, spec.output_price
        return None

    def resolve(self, base: Path) -> Params:
        """Make relative paths relative to ``base`` (the folder holding params.yaml)."""
        paths = {k: (v if v.is_absolute() else base / v) for k, v in self.paths.model_dump().items()}
        tracking = self.tracking.model_dump()
        prefix = "sqlite:///"
        if tracking["uri"].startswith(prefix) and not tracking["uri"][len(prefix):].startswith("/"):
            tracking["uri"] = prefix + str(base / tracking["uri"][len(prefix):])
        if "://" not in tracking["artifact_root"] and not Path(tracking["artifact_root"]).is_absolute():
            tracking["artifact_root"] = str(base / tracking["artifact_root"])
        sources = [s if Path(s.path).is_absolute() else s.model_copy(update={"path": str(base / s.path)})
                   for s in self.sources]
        experts = [e if e.adapter is None or e.adapter.is_absolute() else e.model_copy(update={"adapter": base / e.adapter})
                   for e in self.tokenroute.experts]
        return self.model_copy(update={"paths": PathsConfig(**paths), "tracking": TrackingConfig(**tracking),
                                       "sources": sources,
                                       "tokenroute": self.tokenroute.model_copy(update={"experts": experts})})


class ConfigError(ValueError):
    """params.yaml is missing, unreadable or wrong; the message names the key."""


def _format_errors(exc: ValidationError, source: Path) -> str:
    lines = [f"{source}: invalid parameters"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a parameter; check its spelling)"
        lines.append(f"  - {key}: {msg}")
    return "\n".join(lines)


def parse_params(data: dict, source: Path = DEFAULT_PARAMS) -> Params:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_params(path: str | Path = DEFAULT_PARAMS, *, resolve_paths: bool = True) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"parameters file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    params = parse_params(data, path)
    return params.resolve(path.resolve().parent) if resolve_paths else params
