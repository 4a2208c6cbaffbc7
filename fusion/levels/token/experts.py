"""Domain experts: LoRA adapters on one base, each trained on a task's worked reference solutions (a math expert
from GSM8K's train split, a code expert from MBPP's), with the same TRL + PEFT machinery as distillation; the
experts the token-level router (FusionRoute) fuses. Only training records are read (``split``, ``id_range``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusion.core.examples import EXAMPLE_COLUMNS
from fusion.levels.token.config import TokenExpertConfig
from fusion.log.schema import make_query_id
from fusion.tasks.loaders import task_records
from fusion.tasks.suite import get_task


def registered_name(expert: TokenExpertConfig) -> str:
    return expert.train.registered_model or f"fusion-expert-{expert.name}"


def expert_examples(expert: TokenExpertConfig) -> pd.DataFrame:
    """Prompt–completion examples of a domain expert (one with ``train``): the task's prompt in ``train.mode`` for
    each training record, and its worked solution as the completion."""
    if expert.train is None:
        raise ValueError(f"expert {expert.name!r} is not trained by the experts stage (no train section)")
    name, cfg = expert.name, expert.train
    task = get_task(cfg.task)
    if cfg.source == "synthetic":
        return _synthetic_examples(task, name, cfg)
    if task.solution is None or task.convert is None:
        raise ValueError(f"expert {name!r}: task {task.name!r} has no reference solutions to train on "
                         "(tasks with them: gsm8k, mbpp; and with source 'synthetic': arith_word, mc_reasoning, mental_math)")
    records = task_records(task, cfg.source, cfg.split)
    if cfg.id_range is not None:
        lo, hi = cfg.id_range
        records = [r for r in records if str(r.get("task_id", "")).isdigit() and lo <= int(r["task_id"]) <= hi]
    if not records:
        raise ValueError(f"expert {name!r}: no training records in {cfg.source}"
                         + (f" with task_id in {cfg.id_range}" if cfg.id_range else ""))
    if cfg.limit is not None and cfg.limit < len(records):
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(records), size=cfg.limit, replace=False))
        records = [records[i] for i in keep]
    rows = []
    for rec in records:
        query, _ = task.convert(rec, cfg.seed)
        rows.append({"query_id": make_query_id(task.name, query), "task": task.name, "domain": task.domain,
                     "source": f"{task.name}:{cfg.split}", "rank": 1, "prompt": task.build_prompt(query, cfg.mode),
                     "completion": task.solution(rec)})
    return pd.DataFrame(rows, columns=EXAMPLE_COLUMNS).drop_duplicates("query_id").reset_index(drop=True)


def _synthetic_examples(task, name: str, cfg) -> pd.DataFrame:
    """A synthetic task's generated problems of ``cfg.split`` with their worked solutions (the generator's
    splits are disjoint: the pipeline's synthetic queries come from its ``test`` part)."""
    if task.generate_solved is None:
        raise ValueError(f"expert {name!r}: task {task.name!r} has no synthetic worked solutions "
                         "(synthetic tasks with them: arith_word, mc_reasoning, mental_math)")
    rows = [{"query_id": make_query_id(task.name, q), "task": task.name, "domain": task.domain,
             "source": f"{task.name}:synthetic-{cfg.split}", "rank": 1, "prompt": task.build_prompt(q, cfg.mode),
             "completion": solution} for q, _, solution in task.generate_solved(cfg.limit or 256, cfg.seed, cfg.split)]
    return pd.DataFrame(rows, columns=EXAMPLE_COLUMNS).drop_duplicates("query_id").reset_index(drop=True)
