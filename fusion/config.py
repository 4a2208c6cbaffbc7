"""``params.yaml`` -> typed configuration.

``params.yaml`` is the single source of parameters: the CLI, the DVC stages and the Prefect flow all load it
through :func:`load_params`. A wrong key or type fails with a message that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    ValidationError,
    field_validator,
    model_validator,
)

from fusion.models.refs import MINILM, SMOLLM2
from fusion.rewards import Scenario, resolve_scenario

DEFAULT_PARAMS = Path("params.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLMSpec(_Strict):
    """One LLM of the candidate pool. A candidate is (LLM, mode)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/\-]*$")
    backend: Literal["transformers", "openai", "vllm", "replay"]
    model: str = Field(description="hub id, local path (a model or a LoRA adapter folder), models:/<name>@<alias> "
                                   "(a registered model, e.g. the distilled champion), or pkg:<module>/<file> for a model shipped in a package; "
                                   "for openai the served model's name, for replay the LLM's name in the log")
    modes: list[Literal["direct", "think"]] = ["direct", "think"]
    input_price: float = Field(ge=0, description="$ per 1M input tokens")
    output_price: float = Field(ge=0, description="$ per 1M output tokens")
    description: str = ""
    #: the backend's own typed options (fusion.backends: e.g. openai's base_url, api_key_env, max_concurrency),
    #: checked against the backend when a driver loads params.yaml
    options: dict[str, Any] = {}

    def cost_usd(self, input_tokens: float, output_tokens: float) -> float:
        """What ``input_tokens`` in and ``output_tokens`` out cost at this LLM's prices."""
        return (input_tokens * self.input_price + output_tokens * self.output_price) / 1e6

    @field_validator("modes")
    @classmethod
    def _modes_unique(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError("modes must be a non-empty list without repeats")
        return v


class QuerySource(_Strict):
    task: str
    source: str = Field(description='"hf", "synthetic", "package" or a local file path')
    split: str = "test"
    limit: int | None = Field(default=None, gt=0)


class QueriesConfig(_Strict):
    seed: int = 0
    test_fraction: float = Field(default=0.3, gt=0, lt=1)
    sources: list[QuerySource] = Field(min_length=1)


class ScaleOutConfig(_Strict):
    """How the Prefect flow fans collection out: each candidate's remaining calls in ``shards`` runs of whole
    parts, mapped to Prefect tasks on a thread pool or, with ``runner: dask``, on a Dask cluster (``dask_address``
    of a running scheduler, else a LocalCluster of ``dask_workers``). Shards of ``vllm`` pool entries go to the
    deployment ``gpu_deployment`` (a work pool of GPU workers, prefect.yaml) when it is set."""

    shards: int = Field(default=1, gt=0)
    runner: Literal["threads", "dask"] = "threads"
    dask_address: str | None = None
    dask_workers: int = Field(default=2, gt=0)
    dask_processes: bool = False
    gpu_deployment: str | None = None


class CollectConfig(_Strict):
    batch_size: int = Field(default=8, gt=0)
    max_new_tokens: dict[Literal["direct", "think"], int] = {"direct": 128, "think": 256}
    temperature: float = Field(default=0.0, ge=0)
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    sandbox_timeout_s: float = Field(default=10.0, gt=0)
    sandbox_workers: int = Field(default=2, gt=0)
    #: stop cleanly (finished parts are kept) when the estimated cost of a run, or its running total, passes this
    max_cost_usd: float | None = Field(default=None, ge=0)
    scale_out: ScaleOutConfig = ScaleOutConfig()


class SourceConfig(_Strict):
    """An imported routing log the pipeline ingests: a path or a glob (relative to params.yaml) in an importer
    format (`fusion data formats`), with the importer's options. Put daily drops under the drop folder
    (``paths.incoming``): DVC watches that folder, so a new file re-runs the pipeline from ``ingest``."""

    path: str
    format: str = "long"
    options: dict[str, Any] = {}


class JudgeConfig(_Strict):
    """The LLM judge (stage ``judge``): ``llm`` is a pool-style entry (any backend; its modes are unused)."""

    enabled: bool = False
    llm: LLMSpec | None = None
    rubric_version: Literal["v1"] = "v1"
    max_new_tokens: int = Field(default=32, gt=0)
    batch_size: int = Field(default=8, gt=0)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    #: judge rows that already have a judge score from their source too (default: keep the source's)
    rejudge: bool = False
    max_cost_usd: float | None = Field(default=None, ge=0)
    #: threshold for the agreement report's accuracy (judge >= t as a prediction of performance >= t)
    agreement_threshold: float = Field(default=0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _llm_when_enabled(self) -> JudgeConfig:
        if self.enabled and self.llm is None:
            raise ValueError("judge.enabled needs judge.llm (a pool-style entry: name, backend, model, prices)")
        return self


class ValidateConfig(_Strict):
    #: blocking: a candidate with more error rows than this stops the pipeline
    max_error_rate: float = Field(default=0.2, ge=0, le=1)
    #: blocking: more quarantined rows than this share of the log stops the pipeline
    max_quarantine_fraction: float = Field(default=0.5, ge=0, le=1)
    #: build great-expectations Data Docs (HTML) under paths.data_docs
    data_docs: bool = True


class EmbedConfig(_Strict):
    encoder: str = MINILM
    batch_size: int = Field(default=32, gt=0)


class ScenarioConfig(_Strict):
    """Reward = alpha * perf - beta * cost, both min-max normalised per task (FusionFactory); or ``llm_judge``:
    the judge score. Resolved by :func:`fusion.rewards.resolve_scenario` (the one place scenarios are defined)."""

    name: str = "performance_first"
    alpha: float | None = Field(default=None, ge=0)
    beta: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _known(self) -> ScenarioConfig:
        self.resolve()
        return self

    def resolve(self) -> Scenario:
        return resolve_scenario(self.name, self.alpha, self.beta)


class RouterConfig(_Strict):
    """One router to train: a registered router name (see `fusion route list`), its parameters, its seed. The
    name and the parameters are checked against the router's own typed parameters where routers are built
    (:func:`fusion.routers.check_router_specs`, called when a driver loads params.yaml)."""

    name: str = "knn"
    params: dict[str, Any] = {}
    seed: int = 0


class EvaluateConfig(_Strict):
    split: str = "test"
    #: also evaluate every router served without the queries' task (as a client that sends none): the routers
    #: infer it, and the report says which path each query took
    task_blind: bool = True


class PromoteConfig(_Strict):
    """The promotion gate: the best router of a run (the challenger) becomes ``champion`` only when it beats the
    current champion on the same evaluation split by more than ``margin`` (in units of ``metric``)."""

    metric: Literal["reward", "performance"] = "reward"
    margin: float = Field(default=0.0, ge=0)


class TargetEvalConfig(_Strict):
    """How a level is evaluated: one target model answers held-out queries (greedy) in each arm."""

    split: str = "test"
    #: at most this many held-out queries (the first by query id; None: all)
    limit: int | None = Field(default=None, gt=0)
    mode: Literal["direct", "think"] = "direct"
    max_new_tokens: int = Field(default=128, gt=0)
    batch_size: int = Field(default=8, gt=0)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    #: bootstrap resamples for each difference's 95% interval
    n_boot: int = Field(default=1000, gt=0)


class ThoughtConfig(_Strict):
    """Thought-level fusion: templates summarised from the top responses of training queries, retrieved for new
    queries of the same task (stages ``templates`` and ``thought_eval``)."""

    enabled: bool = True
    selection: Literal["performance", "judge", "hybrid"] = "hybrid"
    #: responses summarised per query (at most one per LLM)
    top_n: int = Field(default=3, gt=0)
    #: a response counts as correct when its performance is at least this (1.0: exactly right on 0/1 metrics)
    min_performance: float = Field(default=1.0, ge=0, le=1)
    #: summarise at most this many training queries (the first by query id; None: all)
    max_queries: int | None = Field(default=None, gt=0)
    #: the summariser (a pool-style entry: any backend)
    summariser: LLMSpec = LLMSpec(name="smollm2-summariser", backend="transformers", model=SMOLLM2,
                                  input_price=0.01, output_price=0.02)
    summary_max_new_tokens: int = Field(default=160, gt=0)
    batch_size: int = Field(default=8, gt=0)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    #: templates retrieved per query (same task)
    k: int = Field(default=2, gt=0)
    #: a template whose source question is this similar to the query (cosine) is never retrieved for it
    near_duplicate_threshold: float = Field(default=0.95, gt=0, le=1)
    #: the model the templates serve (a pool-style entry)
    target: LLMSpec = LLMSpec(name="smollm2-target", backend="transformers", model=SMOLLM2,
                              input_price=0.01, output_price=0.02)
    eval: TargetEvalConfig = TargetEvalConfig()


class LoraConfigSpec(_Strict):
    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]


class TrainerConfig(_Strict):
    """TRL SFTTrainer + PEFT LoRA settings (loss on the completion only)."""

    learning_rate: float = Field(default=2e-4, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    #: stop after this many optimiser steps (None: the epochs decide)
    max_steps: int | None = Field(default=None, gt=0)
    batch_size: int = Field(default=2, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    max_length: int = Field(default=512, gt=0)
    save_steps: int = Field(default=10, gt=0)
    save_total_limit: int = Field(default=2, gt=0)
    logging_steps: int = Field(default=1, gt=0)
    seed: int = 0
    device: str = "cpu"
    #: bfloat16 / float16 on a GPU; float32 on a CPU
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    gradient_checkpointing: bool = False
    lora: LoraConfigSpec = LoraConfigSpec()


class SFTDataConfig(_Strict):
    """SFT examples from a routing log: per training query up to ``k`` correct responses ranked by
    ``selection`` (one per LLM, ties to the shorter and cheaper), and the label-only baseline from gold answers."""

    selection: Literal["performance", "judge", "hybrid"] = "hybrid"
    k: int = Field(default=1, gt=0)
    min_performance: float = Field(default=1.0, ge=0, le=1)
    #: at most this many training queries (the first by query id; None: all)
    max_queries: int | None = Field(default=None, gt=0)


class ExpertConfig(_Strict):
    """A domain LoRA expert on the distillation base, trained on a task's worked reference solutions (GSM8K's
    reasoning, MBPP's code), registered as ``registered_model`` (default ``fusion-expert-<name>``): the experts the
    token-level router fuses."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    task: str
    source: str = Field(description='where the training records come from: "hf", "package" or a local file path')
    split: str = "train"
    #: keep records whose ``task_id`` is in [lo, hi] (MBPP's standard train split is 601-974 of the full file)
    id_range: tuple[int, int] | None = None
    #: at most this many training records (a seeded sample; None: all)
    limit: int | None = Field(default=None, gt=0)
    mode: Literal["direct", "think"] = "think"
    seed: int = 0
    #: the expert's own training settings (None: distill.train)
    train: TrainerConfig | None = None
    registered_model: str | None = None


class DistillConfig(_Strict):
    """Model-level fusion: the best responses distilled into ``base`` with LoRA (stages ``sft_data``,
    ``distill``, ``distill_eval``, ``promote_distilled``)."""

    enabled: bool = True
    #: the model distilled into (a model reference: local folder, pkg:, .gguf, hub id)
    base: str = SMOLLM2
    data: SFTDataConfig = SFTDataConfig()
    train: TrainerConfig = TrainerConfig()
    #: also train the label-only baseline (gold answers as targets) and evaluate it beside the distilled model
    label_only: bool = True
    eval: TargetEvalConfig = TargetEvalConfig()
    registered_model: str = "fusion-distilled"
    #: the distilled model becomes champion only when it beats the champion (or the base) by more than this
    margin: float = Field(default=0.0, ge=0)
    experts: list[ExpertConfig] = []
    #: run the training on this Prefect deployment (a GPU work pool, prefect.yaml ``gpu-distill``) instead of
    #: in the pipeline's process
    gpu_deployment: str | None = None


class TokenExpertConfig(_Strict):
    """One expert of the token-level router: a model reference (None: ``tokenroute.base``) with, optionally, a
    LoRA adapter folder on it (a domain expert of the ``experts`` stage: ``models/experts/<name>/adapter``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    model: str | None = None
    adapter: Path | None = None


class TokenRouteDataConfig(_Strict):
    #: SFT examples per domain (a seeded sample of the model-level SFT data and the experts' training examples)
    per_domain: int | None = Field(default=64, gt=0)
    #: also the domain experts' own training examples (distill.experts), beside the model-level SFT data
    expert_examples: bool = True
    #: preference pairs (chosen = a correct response, rejected = a wrong one to the same query) from the log
    max_pairs: int | None = Field(default=64, ge=0)
    min_performance: float = Field(default=1.0, gt=0, le=1)
    max_length: int = Field(default=384, gt=8)
    seed: int = 0


class TokenRouteTrainConfig(_Strict):
    """The router's training (a plain PyTorch loop: SFT steps, then mix steps alternating CDPO and SFT)."""

    sft_steps: int = Field(default=8, ge=1)
    mix_steps: int = Field(default=8, ge=0)
    batch_size: int = Field(default=2, gt=0)
    learning_rate: float = Field(default=1e-5, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    #: λ, the routing loss's weight in the SFT loss (paper: 1/3)
    routing_weight: float = Field(default=1 / 3, ge=0)
    #: β of CDPO (paper: 0.1)
    beta: float = Field(default=0.1, gt=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    save_steps: int = Field(default=8, gt=0)
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    #: LoRA on the router LM instead of full fine-tuning (for large routers); merged into the saved checkpoint
    lora: LoraConfigSpec | None = None
    #: also train the paper's "fine-tuned model without routing" baseline (same data and steps, no routing)
    plain_baseline: bool = True


class TokenRouteEvalConfig(TargetEvalConfig):
    #: decoding policy: ``lazy`` runs only the selected experts, ``all`` every expert at every token
    policy: Literal["all", "lazy"] = "lazy"
    #: requests whose per-position routing is drawn in the evaluation report
    plot_examples: int = Field(default=3, ge=0)
    #: what picks the sequence-selection baseline's answer among the experts' answers: ``judge`` (the paper's
    #: external scorer: the pipeline's judge grades each answer without the reference; ties and unreadable
    #: verdicts fall back to the router LM's likelihood) or ``router`` (the router LM's mean log-prob per token)
    selection_scorer: Literal["judge", "router"] = "judge"


class TokenRouteConfig(_Strict):
    """Token-level fusion (FusionRoute): a router LM with a routing head picks an expert per decoding step and adds
    its complementary logits (stages ``tokenroute_data``, ``tokenroute_train``, ``tokenroute_eval``)."""

    enabled: bool = True
    #: the experts' shared base (None: distill.base); the router is initialised from ``router_init`` (None: base)
    base: str | None = None
    router_init: str | None = None
    experts: list[TokenExpertConfig] = Field(default=[TokenExpertConfig(name="base")], min_length=1)
    data: TokenRouteDataConfig = TokenRouteDataConfig()
    train: TokenRouteTrainConfig = TokenRouteTrainConfig()
    eval: TokenRouteEvalConfig = TokenRouteEvalConfig()
    stats_batch_size: int = Field(default=8, gt=0)
    registered_model: str = "fusion-tokenroute"

    @field_validator("experts")
    @classmethod
    def _unique_experts(cls, v: list[TokenExpertConfig]) -> list[TokenExpertConfig]:
        dup = _repeated([e.name for e in v])
        if dup:
            raise ValueError(f"tokenroute.experts has repeated names {dup}")
        return v


class TrackingConfig(_Strict):
    uri: str = "sqlite:///mlflow.db"
    artifact_root: str = "mlartifacts"
    experiment: str = "fusion-pipeline"
    registered_router: str = "fusion-router"
    enabled: bool = True


class PipelineConfig(_Strict):
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


class PathsConfig(_Strict):
    queries: Path = Path("data/queries.parquet")
    collect_parts: Path = Path("data/collect_parts")
    collected: Path = Path("data/collected.parquet")
    judge_parts: Path = Path("data/judge_parts")
    judge_verdicts: Path = Path("data/judge_verdicts.parquet")
    judge_report: Path = Path("reports/judge.json")
    judged: Path = Path("data/judged.parquet")
    incoming: Path = Path("incoming")
    ingested: Path = Path("data/ingested.parquet")
    routing_log: Path = Path("data/routing_log.parquet")
    quarantine: Path = Path("data/quarantine.parquet")
    validation_report: Path = Path("reports/validation.json")
    data_docs: Path = Path("reports/data_docs")
    embeddings: Path = Path("data/embeddings.parquet")
    routers_dir: Path = Path("models/routers")
    eval_metrics: Path = Path("metrics/eval.json")
    eval_report: Path = Path("reports/eval.md")
    eval_plot: Path = Path("reports/eval.png")
    promotion: Path = Path("reports/promotion.json")
    template_parts: Path = Path("data/template_parts")
    template_bank: Path = Path("data/templates/bank.parquet")
    templates_report: Path = Path("reports/templates.json")
    thought_eval: Path = Path("metrics/thought_eval.json")
    thought_plot: Path = Path("reports/thought_eval.png")
    sft_data: Path = Path("data/sft")
    distill_dir: Path = Path("models/distilled")
    distill_eval: Path = Path("metrics/distill_eval.json")
    distill_plot: Path = Path("reports/distill_eval.png")
    distill_promotion: Path = Path("reports/distill_promotion.json")
    experts_dir: Path = Path("models/experts")
    tokenroute_data: Path = Path("data/tokenroute")
    tokenroute_dir: Path = Path("models/tokenroute")
    tokenroute_eval: Path = Path("metrics/tokenroute_eval.json")
    tokenroute_plot: Path = Path("reports/tokenroute_eval.png")
    tokenroute_routing_plot: Path = Path("reports/tokenroute_routing.png")
    tokenroute_work: Path = Path(".cache/tokenroute")  # training checkpoints (a killed run resumes)
    distill_work: Path = Path(".cache/distill")  # training checkpoints (kept across runs: a killed run resumes)
    generation_cache: Path = Path(".cache/generations")  # the target models' answers, by (model, prompt)
    model_cache: Path = Path(".cache/models")
    embedding_cache: Path = Path(".cache/embeddings")


class Params(_Strict):
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

    @field_validator("pool")
    @classmethod
    def _unique_names(cls, v: list[LLMSpec]) -> list[LLMSpec]:
        dup = _repeated([s.name for s in v])
        if dup:
            raise ValueError(f"pool has repeated LLM names {dup}")
        return v

    @field_validator("routers")
    @classmethod
    def _unique_routers(cls, v: list[RouterConfig]) -> list[RouterConfig]:
        dup = _repeated([r.name for r in v])
        if dup:
            raise ValueError(f"routers has repeated names {dup} (each router is trained once)")
        return v

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


def _repeated(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


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
