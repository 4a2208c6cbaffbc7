"""The pipeline's stages as the drivers see them: each stage's runner (``run(params)`` in its level's ``stages``
folder, one module per stage as ``dvc.yaml`` lists them), and what a driver does around one (load ``params.yaml``
with every router to train and every backend of the pool checked against its own typed parameters, then run it).
The CLI (``fusion <level> <stage>``, which the DVC stages run) and the Prefect flow (``flows/``) are thin drivers
over :func:`run_stage`. Nothing here is imported by a stage: a stage's code is its level's folder and the core."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fusion.config import DEFAULT_PARAMS, Params
from fusion.config import load_params as load_config

#: stage -> the package that holds its runner module (the data stages, then each level's)
HOMES = {
    **dict.fromkeys(("queries", "collect", "judge", "ingest", "validate", "embed"), "fusion.data.stages"),
    **dict.fromkeys(("train", "evaluate", "promote"), "fusion.levels.query.stages"),
    **dict.fromkeys(("templates", "thought_eval"), "fusion.levels.thought.stages"),
    **dict.fromkeys(("sft_data", "distill", "distill_eval", "promote_distilled"), "fusion.levels.model.stages"),
    **dict.fromkeys(("experts", "tokenroute_data", "tokenroute_train", "tokenroute_eval"),
                    "fusion.levels.token.stages"),
}
STAGES = tuple(HOMES)


def runner_module(stage: str) -> str:
    if stage not in HOMES:
        raise ValueError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    return f"{HOMES[stage]}.{stage}"


def runner(stage: str) -> Callable[[Any], Any]:
    """The ``run`` function of ``stage`` (its module is imported on first use)."""
    return importlib.import_module(runner_module(stage)).run


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """``params.yaml`` as typed configuration, with every router to train and every pool entry's backend options
    checked against their own typed parameters (a misspelt or ill-typed key fails here, before any stage runs,
    naming the router or LLM and the key)."""
    from fusion.backends import check_pool
    from fusion.levels.query.base import check_router_specs

    params = load_config(path)
    check_pool([*params.pool, *([params.judge.llm] if params.judge.llm else [])])
    check_router_specs(params.routers)
    return params


def run_stage(stage: str, params_path: str | Path = DEFAULT_PARAMS) -> Any:
    """Load the parameters and run one stage (what the Prefect tasks call)."""
    return runner(stage)(load_params(params_path))
