"""What every level's parameters share: the strict base model, a pool entry (``LLMSpec``), how a target model is
evaluated, LoRA training settings, MLflow tracking and the pipeline's paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: the named presets of the levels' recipes: ``cpu`` (the embedded default's settings, small prompts for 135M
#: models on a CPU) and ``fusionfactory`` (FusionFactory's official settings, arXiv 2507.10540 and its code)
Recipe = Literal["cpu", "fusionfactory"]


def with_recipe(data: Any, presets: dict[str, dict[str, Any]]) -> Any:
    """A level's raw parameters with its ``recipe``'s values filled in where the parameters do not set them (a key
    given in ``params.yaml`` wins over the preset). For a ``model_validator(mode="before")``."""
    if not isinstance(data, dict):
        return data
    recipe = data.get("recipe", "cpu")
    if recipe not in presets:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(presets)}")
    return {**presets[recipe], **data}


class LLMSpec(Strict):
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


class TargetEvalConfig(Strict):
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


class LoraConfigSpec(Strict):
    r: int = Field(default=8, gt=0)
    alpha: int = Field(default=16, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "v_proj"]


class TrainerConfig(Strict):
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


class TrackingConfig(Strict):
    uri: str = "sqlite:///mlflow.db"
    artifact_root: str = "mlartifacts"
    experiment: str = "fusion-pipeline"
    registered_router: str = "fusion-router"
    enabled: bool = True


class PathsConfig(Strict):
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
    eval_per_query: Path = Path("reports/heldout/query.parquet")  # every level's held-out rows, one layout
    thought_per_query: Path = Path("reports/heldout/thought.parquet")
    distill_per_query: Path = Path("reports/heldout/model.parquet")
    tokenroute_per_query: Path = Path("reports/heldout/token.parquet")
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


def repeated(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


def unique_names(items: list, what: str, why: str = "") -> list:
    """``items`` unchanged when their ``name``\ s are unique, else a ValueError naming the repeats (a validator's
    body)."""
    dup = repeated([i.name for i in items])
    if dup:
        raise ValueError(f"{what} has repeated names {dup}{why}")
    return items


class JudgeConfig(Strict):
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
