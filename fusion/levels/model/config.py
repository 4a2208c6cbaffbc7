"""The model level's parameters (``distill``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fusion.core.config import Recipe, Strict, TargetEvalConfig, TrainerConfig, with_recipe
from fusion.models.refs import SMOLLM2

#: what each recipe sets (a key given in params.yaml wins). ``fusionfactory`` is the official code's
#: (model_level/sft_data_gen.py): per query the gold answer first, then the top 5 correct responses by performance
#: (ties to the longer output), the direct and think answers of one LLM both eligible
RECIPES = {
    "cpu": {"selection": "hybrid", "k": 1, "gold": False, "tie_break": "shorter", "one_per_llm": True},
    "fusionfactory": {"selection": "performance", "k": 5, "gold": True, "tie_break": "longer", "one_per_llm": False},
}


class SFTDataConfig(Strict):
    """SFT examples from a routing log: per training query (the gold answer first with ``gold``, then) up to ``k``
    correct responses ranked by ``selection`` (ties to the ``tie_break`` length, then the cheaper; one per LLM with
    ``one_per_llm``), and the label-only baseline from gold answers."""

    #: the preset the settings below default to (``cpu`` or ``fusionfactory``; the top-level ``recipe`` sets it)
    recipe: Recipe = "cpu"
    selection: Literal["performance", "judge", "hybrid"] = "hybrid"
    k: int = Field(default=1, gt=0)
    min_performance: float = Field(default=1.0, ge=0, le=1)
    #: the gold answer (in the form the task's prompt asks for) as each query's first example
    gold: bool = False
    tie_break: Literal["shorter", "longer"] = "shorter"
    one_per_llm: bool = True
    #: at most this many training queries (the first by query id; None: all)
    max_queries: int | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data):
        return with_recipe(data, RECIPES)


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
