"""Stage ``tokenroute_data``: the token-level router's training sequences (the model-level SFT data and the
domain experts' examples, mixed across domains; preference pairs from the routing log's responses) and every
expert's statistics over them (gold-token log-prob and greedy token per position), under
``paths.tokenroute_data`` (a DVC output). The statistics are computed in ``paths.tokenroute_work`` first (one
expert at a time, resumable, reused while the sequences and the expert's weights are unchanged), then copied."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fusion.core.examples import read_examples
from fusion.core.outputs import fresh_output
from fusion.core.selection import level_log
from fusion.levels.token.experts import expert_examples
from fusion.levels.token.level import compute_stats, experts_of, training_data
from fusion.models.refs import materialize
from fusion.tracking import data_version, flat_metrics, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)
SEQUENCES, REPORT, STATS = "sequences.parquet", "report.json", "stats"


def sft_sources(params: Params) -> list[pd.DataFrame]:
    """The model-level SFT data (the distilled set) and, when asked, the domain experts' training examples."""
    frames = []
    distilled = params.paths.sft_data / "distilled.jsonl"
    if distilled.is_file():
        frames.append(read_examples(distilled))
    if params.tokenroute.data.expert_examples:
        frames.extend(expert_examples(e) for e in params.tokenroute.experts if e.train is not None)
    return frames


def run(params: Params) -> Path:
    from transformers import AutoTokenizer

    cfg = params.tokenroute
    out = params.paths.tokenroute_data
    if not fresh_output(out, enabled=cfg.enabled, report=REPORT):
        return out
    experts = experts_of(cfg, params.paths.experts_dir)
    base = cfg.base
    tok = AutoTokenizer.from_pretrained(materialize(base, params.paths.model_cache))
    log, _ = level_log(params.paths.routing_log)
    with stage_run(params.tracking, "tokenroute_data", {**cfg.data.model_dump(), "experts": [e.name for e in experts],
                                                        "base": base}) as ml:
        seqs, report = training_data(tok, sft_sources(params), log, cfg.data)
        if not report["sft_examples"]:
            raise ValueError("no SFT example to train the token-level router on: the model-level SFT data and the "
                             "experts' examples are empty, or every one was left out "
                             f"({report['sequences_skipped'] or 'none left out'})")
        work = params.paths.tokenroute_work / STATS
        manifest = compute_stats(seqs, experts, tok, work, model_cache=params.paths.model_cache,
                                 device=cfg.train.device, dtype=cfg.train.dtype, batch_size=cfg.stats_batch_size)
        seqs.to_parquet(out / SEQUENCES, index=False)
        shutil.copytree(work, out / STATS)
        report = {"enabled": True, **report, "experts": manifest["experts"]}
        (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        logger.info("tokenroute data: %d SFT examples %s, %d preference pairs; statistics of %s",
                    report["sft_examples"], report["sft_per_domain"], report["pairs"], list(manifest["experts"]))
        if ml:
            ml.set_tags(data_version(params.paths.routing_log))
            ml.log_metrics(flat_metrics({k: report[k] for k in ("sft_examples", "pairs", "completion_tokens")}))
            ml.log_artifact(str(out / REPORT))
    return out
