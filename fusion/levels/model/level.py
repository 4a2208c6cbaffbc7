"""The model level's stage implementations over DataFrames: SFT data (:func:`build_sets`), and the evaluation of
the base, distilled and label-only models on the same held-out queries (:func:`evaluate_models`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.backends import make_backend
from fusion.core.config import LLMSpec
from fusion.core.evaluation import compare, held_out_queries, run_arm
from fusion.levels.model.config import DistillConfig
from fusion.levels.model.data import DISTILLED, LABEL_ONLY, SFTData, build_sft_data

BASE = "base"
PAIRS = ((DISTILLED, BASE), (DISTILLED, LABEL_ONLY), (LABEL_ONLY, BASE))


def build_sets(log: pd.DataFrame, cfg: DistillConfig) -> dict[str, SFTData]:
    """The distilled set, and the label-only set when ``cfg.label_only``."""
    d = cfg.data
    kinds = [DISTILLED, *([LABEL_ONLY] if cfg.label_only else [])]
    return {kind: build_sft_data(log, kind=kind, strategy=d.selection, k=d.k, min_performance=d.min_performance,
                                 max_queries=d.max_queries, gold=d.gold, tie_break=d.tie_break,
                                 one_per_llm=d.one_per_llm) for kind in kinds}


def queries_fingerprint(queries: pd.DataFrame) -> str:
    return hashlib.sha1("\n".join(queries["query_id"]).encode()).hexdigest()[:16]


def evaluate_models(log: pd.DataFrame, models: dict[str, LLMSpec], cfg: DistillConfig, *, cache_dir: Path,
                    model_cache: Path, backend_factory: Callable = make_backend) -> tuple[dict, dict[str, pd.DataFrame]]:
    """Each model of ``models`` (arm -> pool entry) answers the same held-out queries (the prompts of the log in
    ``cfg.eval.mode``); the report compares them with paired-bootstrap intervals."""
    queries, skipped = held_out_queries(log, cfg.eval)
    if queries.empty:
        raise ValueError(f"no {cfg.eval.split!r} query can be scored (no ground truth): nothing to evaluate")
    prompts = queries["prompt"].tolist()
    arms = {arm: run_arm(spec, queries, prompts, cfg.eval, cache_dir=cache_dir, model_cache=model_cache, label=arm,
                         backend_factory=backend_factory) for arm, spec in models.items()}
    report = compare(arms, PAIRS, n_boot=cfg.eval.n_boot)
    report.update(skipped=skipped, queries_fingerprint=queries_fingerprint(queries),
                  models={arm: spec.model for arm, spec in models.items()})
    return report, arms


def score_model(spec: LLMSpec, log: pd.DataFrame, cfg: DistillConfig, *, cache_dir: Path, model_cache: Path,
                backend_factory: Callable = make_backend) -> tuple[np.ndarray, str]:
    """One model's performance on each held-out query (in query-id order), and their fingerprint (what the gate
    compares)."""
    queries, _ = held_out_queries(log, cfg.eval)
    arm = run_arm(spec, queries, queries["prompt"].tolist(), cfg.eval, cache_dir=cache_dir, model_cache=model_cache,
                  label=spec.name, backend_factory=backend_factory)
    return arm["performance"].to_numpy(float), queries_fingerprint(queries)
