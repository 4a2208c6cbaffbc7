"""Stage ``validate``: the great-expectations suite on the routing log; a blocking failure stops the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fusion.collection.validate import ValidationFailed, validate_log, write_report
from fusion.config import Params
from fusion.log.schema import coerce_log
from fusion.tracking import stage_run

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    log = coerce_log(pd.read_parquet(params.paths.routing_log))
    with stage_run(params.tracking, "validate", params.validate_.model_dump()) as ml:
        report = validate_log(log, params.validate_.max_error_rate)
        out = write_report(report, params.paths.validation_report)
        if ml:
            ml.log_metric("expectations_failed", len(report.failures))
            ml.log_artifact(str(out))
    logger.info(report.render())
    if not report.success:
        raise ValidationFailed(report)
    return out
