"""What the drivers (the CLI, the Prefect flow) do around a stage: load ``params.yaml`` with every router to train
and every backend of the pool checked against its own typed parameters, then run one stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion.config import DEFAULT_PARAMS, Params
from fusion.config import load_params as load_config
from fusion.stages import runner


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """``params.yaml`` as typed configuration, with every router to train and every pool entry's backend options
    checked against their own typed parameters (a misspelt or ill-typed key fails here, before any stage runs,
    naming the router or LLM and the key)."""
    from fusion.backends import check_pool
    from fusion.routers.base import check_router_specs

    params = load_config(path)
    check_pool([*params.pool, *([params.judge.llm] if params.judge.llm else [])])
    check_router_specs(params.routers)
    return params


def run_stage(stage: str, params_path: str | Path = DEFAULT_PARAMS) -> Any:
    """Load the parameters and run one stage (what the Prefect tasks call)."""
    return runner(stage)(load_params(params_path))
