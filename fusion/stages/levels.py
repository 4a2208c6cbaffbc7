"""What the thought and model stages share: the routing log they learn from (with gold answers recovered where a
log scored answers without keeping them), and a pool-style entry for a model folder or registered model."""

from __future__ import annotations

import logging

import pandas as pd

from fusion.config import Params
from fusion.log.schema import read_log
from fusion.selection import recover_ground_truth

logger = logging.getLogger(__name__)


def level_log(params: Params) -> tuple[pd.DataFrame, dict[str, int]]:
    log, recovered = recover_ground_truth(read_log(params.paths.routing_log))
    for key, n in recovered.items():
        logger.info("gold answers recovered from correct responses: %s = %d", key, n)
    return log, recovered
