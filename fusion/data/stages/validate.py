"""Stage ``validate``: the great-expectations suites on the ingested log (and the query table); offending rows
go to the quarantine file, the rest is written as the routing log the routers train on; a blocking failure stops
the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from fusion.data.queries import read_queries
from fusion.data.validate import ValidationFailed, validate_log, write_report
from fusion.log.schema import write_log
from fusion.tracking import data_version, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    cfg = params.validate_
    raw = pd.read_parquet(params.paths.ingested)
    queries = read_queries(params.paths.queries) if params.paths.queries.is_file() else None
    with stage_run(params.tracking, "validate", cfg.model_dump()) as ml:
        v = validate_log(raw, cfg.max_error_rate, max_quarantine_fraction=cfg.max_quarantine_fraction,
                         queries=queries, docs_dir=params.paths.data_docs if cfg.data_docs else None)
        report = write_report(v.report, params.paths.validation_report)
        params.paths.quarantine.parent.mkdir(parents=True, exist_ok=True)
        v.quarantine.to_parquet(params.paths.quarantine, index=False)
        if v.report.success:
            write_log(v.clean, params.paths.routing_log)
        if ml:
            ml.log_metrics({"expectations_failed": len(v.report.failures), "rows": v.report.n_rows,
                            "quarantined_rows": v.report.n_quarantined,
                            "blocking_failures": len(v.report.blocking_failures)})
            ml.log_artifact(str(report))
            if len(v.quarantine):
                ml.log_artifact(str(params.paths.quarantine))
            if v.report.data_docs:
                ml.log_artifacts(str(params.paths.data_docs), "data_docs")
                ml.set_tag("fusion.data_docs", "artifacts: data_docs/index.html; local: " + v.report.data_docs)
            if v.report.success:
                ml.set_tags(data_version(params.paths.routing_log))
    logger.info(v.report.render())
    if v.report.n_quarantined:
        logger.warning("%d row(s) quarantined in %s (each with its failed expectations)", v.report.n_quarantined,
                       params.paths.quarantine)
    if not v.report.success:
        raise ValidationFailed(v.report)
    return report
