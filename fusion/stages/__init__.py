"""The pipeline's stage runners, one module per stage (as DVC's stages list them): each ``run(params)`` reads the
stage's input files, calls the stage's one implementation, writes its outputs and logs an MLflow run. The CLI
(``fusion <stage>``, which the DVC stages run) and the Prefect flow (``flows/``) are thin drivers over them, through
:mod:`fusion.stages.driving` (parameters loaded and checked, then one stage run).

This package's ``__init__`` stays light: it is imported by every stage, so what it imports is code every stage
depends on (``dvc.yaml`` lists it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

STAGES = ("queries", "collect", "judge", "ingest", "validate", "embed", "train", "evaluate", "promote", "templates",
          "thought_eval", "sft_data", "distill", "distill_eval", "promote_distilled", "experts", "tokenroute_data",
          "tokenroute_train", "tokenroute_eval")


def runner(stage: str) -> Callable[[Any], Any]:
    """The ``run`` function of ``stage`` (its module is imported on first use)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return importlib.import_module(f"fusion.stages.{stage}").run
