"""The token level's parameters (``tokenroute``): its experts (declared once here; the ``experts`` stage trains the
domain ones), the router's data, training and evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from fusion.core.config import LoraConfigSpec, Strict, TargetEvalConfig, TrainerConfig, unique_names
from fusion.models.refs import SMOLLM2


class ExpertTraining(Strict):
    """How the ``experts`` stage trains a domain expert: a LoRA adapter on ``tokenroute.base`` learnt from a task's
    worked reference solutions (GSM8K's reasoning, MBPP's code, the synthetic tasks' solutions), registered as
    ``registered_model`` (default ``fusion-expert-<name>``)."""

    task: str
    source: str = Field(description='where the training records come from: "synthetic", "hf", "package" or a local '
                                    "file path")
    split: str = "train"
    #: keep records whose ``task_id`` is in [lo, hi] (MBPP's standard train split is 601-974 of the full file)
    id_range: tuple[int, int] | None = None
    #: at most this many training records (a seeded sample; None: all)
    limit: int | None = Field(default=None, gt=0)
    mode: Literal["direct", "think"] = "think"
    seed: int = 0
    #: the expert's own training settings (None: tokenroute.expert_train)
    trainer: TrainerConfig | None = None
    registered_model: str | None = None


class TokenExpertConfig(Strict):
    """One expert of the token-level router, declared once: a model reference (None: ``tokenroute.base``) with,
    optionally, a LoRA adapter on it: one trained elsewhere (``adapter``, a folder) or a domain expert the
    ``experts`` stage trains (``train``; its adapter goes to ``paths.experts_dir/<name>/adapter``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    model: str | None = None
    adapter: Path | None = None
    train: ExpertTraining | None = None

    @model_validator(mode="after")
    def _one_adapter(self) -> TokenExpertConfig:
        if self.adapter is not None and self.train is not None:
            raise ValueError(f"expert {self.name!r}: give either adapter (trained elsewhere) or train (trained by "
                             "the experts stage), not both")
        return self


class TokenRouteDataConfig(Strict):
    #: SFT examples per domain (a seeded sample of the model-level SFT data and the experts' training examples)
    per_domain: int | None = Field(default=64, gt=0)
    #: also the domain experts' own training examples (the experts with ``train``), beside the model-level SFT data
    expert_examples: bool = True
    #: preference pairs (chosen = a correct response, rejected = a wrong one to the same query) from the log
    max_pairs: int | None = Field(default=64, ge=0)
    min_performance: float = Field(default=1.0, gt=0, le=1)
    max_length: int = Field(default=384, gt=8)
    seed: int = 0


class TokenRouteTrainConfig(Strict):
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


class TokenRouteConfig(Strict):
    """Token-level fusion (FusionRoute): a router LM with a routing head picks an expert per decoding step and adds
    its complementary logits (stages ``tokenroute_data``, ``tokenroute_train``, ``tokenroute_eval``)."""

    enabled: bool = True
    #: the experts' shared base (a model reference); the router is initialised from ``router_init`` (None: base)
    base: str = SMOLLM2
    router_init: str | None = None
    experts: list[TokenExpertConfig] = Field(default=[TokenExpertConfig(name="base")], min_length=1)
    #: how the experts stage trains the domain experts (an expert's ``train.trainer`` overrides it)
    expert_train: TrainerConfig = TrainerConfig()
    data: TokenRouteDataConfig = TokenRouteDataConfig()
    train: TokenRouteTrainConfig = TokenRouteTrainConfig()
    eval: TokenRouteEvalConfig = TokenRouteEvalConfig()
    stats_batch_size: int = Field(default=8, gt=0)
    registered_model: str = "fusion-tokenroute"

    @field_validator("experts")
    @classmethod
    def _unique_experts(cls, v: list[TokenExpertConfig]) -> list[TokenExpertConfig]:
        return unique_names(v, "tokenroute.experts")
