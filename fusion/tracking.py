"""MLflow: one run per stage execution, and the registry client and aliases (serving a registered router as a
pyfunc model is :mod:`fusion.levels.query.serving`).

The default store is a local SQLite file with a local artifact folder; point ``tracking.uri`` at a tracking server
for a shared deployment. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fusion.core.config import TrackingConfig

logger = logging.getLogger(__name__)

def _setup(cfg: TrackingConfig):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlflow.set_tracking_uri(cfg.uri)
    exp = mlflow.get_experiment_by_name(cfg.experiment)
    if exp is None:
        root = Path(cfg.artifact_root)
        loc = root.resolve().as_uri() if "://" not in cfg.artifact_root else cfg.artifact_root
        mlflow.create_experiment(cfg.experiment, artifact_location=loc)
    mlflow.set_experiment(cfg.experiment)
    return mlflow


def use_registry(cfg: TrackingConfig) -> None:
    """Point MLflow at the configured tracking server and registry (what resolving a ``models:/`` model reference
    needs: a pool entry, a base model, a champion to score)."""
    if cfg.enabled:
        _setup(cfg)


@contextlib.contextmanager
def stage_run(cfg: TrackingConfig, stage: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
    """An MLflow run for one stage; yields the ``mlflow`` module (or None when tracking is disabled)."""
    if not cfg.enabled:
        yield None
        return
    mlflow = _setup(cfg)
    with mlflow.start_run(run_name=stage, tags={"fusion.stage": stage}):
        if params:
            mlflow.log_params(_flatten(params))
        yield mlflow


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)[:500] if not isinstance(v, int | float | bool) else v
    return out


def flat_metrics(metrics: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in metrics.items():
        key = f"{prefix}{k}".replace(" ", "_")
        if isinstance(v, dict):
            out.update(flat_metrics(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool) and v is not None and np.isfinite(v):
            out[key] = float(v)
    return out


def data_version(path: Path) -> dict[str, str]:
    """What names a version of a data file on MLflow runs and registered versions: its md5 (what DVC records
    for it in dvc.lock), its size, and for a routing log its rows, queries and candidates."""
    import hashlib

    path = Path(path)
    md5 = hashlib.md5()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            md5.update(block)
    tags = {"fusion.data.path": path.name, "fusion.data.md5": md5.hexdigest(), "fusion.data.bytes": str(path.stat().st_size)}
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["query_id", "candidate"])
        tags["fusion.data.rows"] = str(table.num_rows)
        tags["fusion.data.queries"] = str(len(set(table.column("query_id").to_pylist())))
        tags["fusion.data.candidates"] = str(len(set(table.column("candidate").to_pylist())))
    except Exception:  # not a routing log: the hash alone names it
        pass
    return tags


# registry: client and aliases ----------------------------------------------------------------
def registry_client(cfg: TrackingConfig):
    """An MlflowClient on the configured tracking/registry URI."""
    mlflow = _setup(cfg)
    return mlflow.MlflowClient(cfg.uri)


def alias_version(client, model: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the registered model) does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None


def pinned_requirements(*packages: str, unpinned: tuple[str, ...] = ()) -> list[str]:
    """``pip_requirements`` for a logged model: ``unpinned`` as given, each of ``packages`` pinned to the version
    installed here (skipped when not installed)."""
    import importlib.metadata

    reqs = list(unpinned)
    for pkg in packages:
        try:
            reqs.append(f"{pkg}=={importlib.metadata.version(pkg)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return reqs
