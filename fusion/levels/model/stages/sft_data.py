"""Stage ``sft_data``: the SFT sets of the routing log's training queries (distilled: the top responses; and the
label-only baseline from gold answers), as JSON lines of TRL's conversational prompt–completion records, with a
report of counts per LLM and task, lengths, and what was left out and why."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.core.examples import write_examples
from fusion.core.outputs import fresh_output
from fusion.core.selection import level_log
from fusion.levels.model.level import build_sets
from fusion.tracking import data_version, flat_metrics, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)
REPORT = "report.json"


def run(params: Params) -> Path:
    cfg = params.distill
    out = params.paths.sft_data
    if not fresh_output(out, enabled=cfg.enabled, report=REPORT):
        return out
    log, recovered = level_log(params.paths.routing_log)
    with stage_run(params.tracking, "sft_data", cfg.data.model_dump() | {"label_only": cfg.label_only}) as ml:
        sets = build_sets(log, cfg)
        report = {"enabled": True, "recovered_ground_truth": recovered}
        for kind, data in sets.items():
            write_examples(data.examples, out / f"{kind}.jsonl")
            report[kind] = data.report()
            logger.info("sft_data %s: %d examples from %d queries; left out: %s", kind, len(data.examples),
                        report[kind]["queries"], data.skipped or "none")
        (out / REPORT).write_text(json.dumps(report, indent=2) + "\n")
        if ml:
            ml.set_tags(data_version(params.paths.routing_log))
            ml.log_metrics(flat_metrics({k: {"examples": report[k]["examples"]} for k in sets}, "sft."))
            ml.log_artifacts(str(out), "sft_data")
    return out
