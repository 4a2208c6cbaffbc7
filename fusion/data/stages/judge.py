"""Stage ``judge``: the LLM judge fills ``judge_score`` of the collected log (resumable), and reports its
agreement with the task metric. With ``judge.enabled: false`` the log passes through unchanged (a source's own
judge scores are kept, and reported on when there are any)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.data.judge import agreement, empty_verdicts, judge, reason_counts
from fusion.log.schema import read_log, write_log
from fusion.tracking import flat_metrics, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    cfg = params.judge
    log = read_log(params.paths.collected)
    logged = cfg.model_dump(exclude={"llm"}) | {"llm": cfg.llm.model_dump() if cfg.llm else None}
    with stage_run(params.tracking, "judge", logged) as ml:
        report: dict = {"enabled": cfg.enabled, "rubric_version": cfg.rubric_version if cfg.enabled else None,
                        "judge": cfg.llm.model if cfg.enabled else None}
        verdicts = None
        if cfg.enabled:
            result = judge(log, cfg, params.paths.judge_parts, model_cache=params.paths.model_cache)
            log, verdicts = result.log, result.verdicts
            report["null_reasons"] = reason_counts(verdicts)
            report["judged_by_source"] = int((verdicts["source"] == "source").sum())
        params.paths.judge_verdicts.parent.mkdir(parents=True, exist_ok=True)
        (verdicts if verdicts is not None else empty_verdicts()).to_parquet(params.paths.judge_verdicts, index=False)
        table = agreement(log, cfg.agreement_threshold)
        overall = table.set_index("task").loc["all"] if len(table) else None
        report["agreement"] = json.loads(table.to_json(orient="records"))
        out = write_log(log, params.paths.judged)
        params.paths.judge_report.parent.mkdir(parents=True, exist_ok=True)
        params.paths.judge_report.write_text(json.dumps(report, indent=2) + "\n")
        if ml:
            ml.log_metrics(flat_metrics(overall.to_dict() if overall is not None else {}, "judge."))
            ml.log_table(table, "judge_agreement.json")
            ml.log_artifact(str(params.paths.judge_report))
    if cfg.enabled:
        if overall is not None:
            r = overall
            logger.info("judge: %d of %d answers scored (%s); agreement with the task metric: Spearman %.3f, "
                        "accuracy at %g %.3f", r["judged"], r["answered"], cfg.llm.model, r["spearman"],
                        cfg.agreement_threshold, r[f"accuracy_at_{cfg.agreement_threshold:g}"])
        for reason, n in report["null_reasons"].items():
            logger.info("judge: %d null score(s): %s", n, reason)
    return out
