"""Stage ``ingest``: the judged collected rows and every imported log of ``params.sources`` (paths or globs of
daily drops), as read, into one union for validation (``data/ingested.parquet``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.data.ingest import SOURCE, ingest
from fusion.log.schema import read_log
from fusion.tracking import stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    collected = read_log(params.paths.judged)
    incoming = params.paths.incoming.resolve()
    for src in params.sources:
        if not Path(src.path).resolve().is_relative_to(incoming):
            logger.warning("source %s is outside the drop folder %s: it is read, but DVC does not watch it (a "
                           "change to it re-runs nothing until something else changes)", src.path, incoming)
    logged = {"sources": [s.model_dump() for s in params.sources]}
    with stage_run(params.tracking, "ingest", logged) as ml:
        union, reads = ingest(collected, list(params.sources), params.paths.incoming.parent)
        out = params.paths.ingested
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        union.to_parquet(tmp, index=False)
        tmp.replace(out)
        if ml:
            ml.log_metrics({"rows": len(union), "files": len(reads) - 1,
                            "imported_rows": int((union[SOURCE] != "collected").sum())})
            ml.log_dict({"read": [r.__dict__ for r in reads]}, "sources.json")
    for r in reads:
        logger.info("ingest: %s: %d rows%s", r.path, r.rows, f" ({r.format})" if r.format != "collected" else "")
    return out
