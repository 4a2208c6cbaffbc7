"""The thought level's parameters (``thought``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fusion.core.config import LLMSpec, Strict, TargetEvalConfig
from fusion.models.refs import SMOLLM2


class ThoughtConfig(Strict):
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
