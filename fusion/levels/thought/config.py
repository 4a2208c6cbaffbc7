"""The thought level's parameters (``thought``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from fusion.core.config import LLMSpec, Recipe, Strict, TargetEvalConfig, with_recipe
from fusion.models.refs import SMOLLM2

#: what each recipe sets (a key given in params.yaml wins). ``fusionfactory`` is the official code's
#: (thought_level/thought_template_gen.py, get_thought_prompt.py): the 5 best responses by performance (ties to the
#: cheaper), re-ranked by the judge, the top 3 summarised in three parts (core task, reasoning step, answer
#: template) with no correctness filter and direct and think answers of one LLM both eligible; 3 templates
#: retrieved, each shown beside its question, with the instruction to use them and reason step by step
RECIPES = {
    "cpu": {"selection": "hybrid", "top_n": 3, "first_pass": 5, "min_performance": 1.0, "one_per_llm": True,
            "summary_prompt": "compact", "summary_max_new_tokens": 96, "k": 2, "retrieval_prompt": "compact"},
    "fusionfactory": {"selection": "two_pass", "top_n": 3, "first_pass": 5, "min_performance": 0.0,
                      "one_per_llm": False, "summary_prompt": "fusionfactory", "summary_max_new_tokens": 256,
                      "k": 3, "retrieval_prompt": "fusionfactory"},
}


class ThoughtConfig(Strict):
    """Thought-level fusion: templates summarised from the top responses of training queries, retrieved for new
    queries of the same task (stages ``templates`` and ``thought_eval``)."""

    enabled: bool = True
    #: the preset the settings below default to (``cpu`` or ``fusionfactory``; the top-level ``recipe`` sets it)
    recipe: Recipe = "cpu"
    selection: Literal["performance", "judge", "hybrid", "two_pass"] = "hybrid"
    #: responses summarised per query
    top_n: int = Field(default=3, gt=0)
    #: two_pass: the responses the first pass (performance, then cost) keeps for the judge to re-rank
    first_pass: int = Field(default=5, gt=0)
    #: at most one response per LLM (its direct and think answers count once)
    one_per_llm: bool = True
    #: summarise only these LLMs' responses (FusionFactory: its 7-12B models); None: every LLM of the log
    source_llms: list[str] | None = None
    #: a response counts as correct when its performance is at least this (1.0: exactly right on 0/1 metrics)
    min_performance: float = Field(default=1.0, ge=0, le=1)
    #: summarise at most this many training queries (the first by query id; None: all)
    max_queries: int | None = Field(default=None, gt=0)
    #: the summariser (a pool-style entry: any backend)
    summariser: LLMSpec = LLMSpec(name="smollm2-summariser", backend="transformers", model=SMOLLM2,
                                  input_price=0.01, output_price=0.02)
    #: ``compact`` (a short method summary, prefilled: what a 135M summariser can do) or ``fusionfactory`` (the
    #: official three-part template prompt)
    summary_prompt: Literal["compact", "fusionfactory"] = "compact"
    summary_max_new_tokens: int = Field(default=96, gt=0)
    batch_size: int = Field(default=8, gt=0)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    #: templates retrieved per query (same task)
    k: int = Field(default=2, gt=0)
    #: how retrieved templates join the prompt: ``compact`` (numbered guides) or ``fusionfactory`` (each similar
    #: question beside its template, then the instruction to use them and reason step by step)
    retrieval_prompt: Literal["compact", "fusionfactory"] = "compact"
    #: a template whose source question is this similar to the query (cosine) is never retrieved for it
    near_duplicate_threshold: float = Field(default=0.95, gt=0, le=1)
    #: the model the templates serve (a pool-style entry)
    target: LLMSpec = LLMSpec(name="smollm2-target", backend="transformers", model=SMOLLM2,
                              input_price=0.01, output_price=0.02)
    eval: TargetEvalConfig = TargetEvalConfig()

    @model_validator(mode="before")
    @classmethod
    def _recipe(cls, data):
        return with_recipe(data, RECIPES)
