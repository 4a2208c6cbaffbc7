"""The model level's parameters (``distill``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusion.core.config import Strict, TargetEvalConfig, TrainerConfig
from fusion.models.refs import SMOLLM2


class SFTDataConfig(Strict):
    """SFT examples from a routing log: per training query up to ``k`` correct responses ranked by
    ``selection`` (one per LLM, ties to the shorter and cheaper), and the label-only baseline from gold answers."""

    selection: Literal["performance", "judge", "hybrid"] = "hybrid"
    k: int = Field(default=1, gt=0)
    min_performance: float = Field(default=1.0, ge=0, le=1)
    #: at most this many training queries (the first by query id; None: all)
    max_queries: int | None = Field(default=None, gt=0)


class DistillConfig(Strict):
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
    #: run the training on this Prefect deployment (a GPU work pool, prefect.yaml ``gpu-distill``) instead of
    #: in the pipeline's process
    gpu_deployment: str | None = None
