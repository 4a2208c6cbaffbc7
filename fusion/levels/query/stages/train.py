"""Stage ``train``: every router of ``params.routers`` fitted on the train split, saved under
``routers_dir/<name>/`` and registered as a version of the registered router; ``manifest.json`` lists them."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fusion.core.embedding import Encoder
from fusion.levels.query.serving import log_router_model
from fusion.levels.query.stages.routing import MANIFEST, routing_data
from fusion.levels.query.training import train_router
from fusion.tracking import data_version, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

logger = logging.getLogger(__name__)


def run(params: Params) -> Path:
    log, data = routing_data(params)
    root = params.paths.routers_dir
    if root.exists():
        shutil.rmtree(root)
    scenario = params.scenario.resolve()
    examples = log["query"].drop_duplicates().head(3).tolist()
    logged = {"routers": {r.name: {"seed": r.seed, **r.params} for r in params.routers},
              "scenario": params.scenario.model_dump(), "encoder": params.embed.encoder}
    entries = []
    encoder = Encoder(params.embed.encoder, params.paths.embedding_cache, params.embed.batch_size)  # loads lazily
    data_tags = data_version(params.paths.routing_log)  # the champion names the data it learnt from
    with stage_run(params.tracking, "train", logged) as ml:
        if ml:
            ml.set_tags(data_tags)
        for spec in params.routers:
            t0 = time.perf_counter()
            router = train_router(spec.name, data, log, encoder=params.embed.encoder, scenario=scenario,
                                  seed=spec.seed, params=spec.params)
            fit_s = time.perf_counter() - t0
            out = router.save(root / spec.name)
            version = (log_router_model(out, params.tracking, examples, name=f"router-{spec.name}", encoder=encoder,
                                        tags=data_tags) if ml else None)
            entries.append({"name": spec.name, "dir": spec.name, "version": version, "fit_s": round(fit_s, 3)})
            logger.info("trained %s in %.1f s%s", spec.name, fit_s, f", registered version {version}" if version else "")
            if ml:
                ml.log_metric(f"{spec.name}.fit_s", fit_s)
        manifest = {"registered_model": params.tracking.registered_router if params.tracking.enabled else None,
                    "routers": entries, "train_run_id": ml.active_run().info.run_id if ml else None}
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if ml:
            ml.log_dict(manifest, "routers_manifest.json")
    return root
