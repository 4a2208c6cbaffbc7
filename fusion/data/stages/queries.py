"""Stage ``queries``: the query table (tasks x sources in ``params.queries``) with train/test splits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.data.queries import build_queries, write_queries
from fusion.tracking import stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    with stage_run(params.tracking, "queries", params.queries.model_dump()) as ml:
        df = build_queries(params.queries)
        out = write_queries(df, params.paths.queries)
        if ml:
            ml.log_metrics({"n_queries": len(df), "n_test": int((df["split"] == "test").sum())})
            ml.log_dict(df.groupby(["task", "split"]).size().unstack(fill_value=0).to_dict(), "queries_per_task.json")
    logger.info("queries: %d (%d test) from %d task(s)", len(df), int((df["split"] == "test").sum()),
                df["task"].nunique())
    return out
