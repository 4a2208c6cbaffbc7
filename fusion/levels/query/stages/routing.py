"""What the router stages (train, evaluate, promote) share: the routing data of the pipeline's files, and the
manifest of the trained routers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

from fusion.levels.query.data import RoutingData, load_routing_data

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params

MANIFEST = "manifest.json"


def routing_data(params: Params) -> tuple[pd.DataFrame, RoutingData]:
    """The pipeline's routing log and embeddings under the configured scenario."""
    return load_routing_data(params.paths.routing_log, embeddings=params.paths.embeddings,
                             scenario=params.scenario.resolve())


def read_manifest(params: Params) -> dict:
    path = params.paths.routers_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no trained routers at {params.paths.routers_dir} ({MANIFEST} missing): run train")
    return json.loads(path.read_text())
