"""MLflow: one run per stage execution, routers as registered pyfunc models.

The default store is a local SQLite file with a local artifact folder; point ``tracking.uri`` at a tracking server
for a shared deployment. Nothing here runs at import time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.config import TrackingConfig

logger = logging.getLogger(__name__)

ROUTER_ARTIFACT = "router"


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


def _router_model_class():
    import mlflow.pyfunc

    class RouterModel(mlflow.pyfunc.PythonModel):
        """Text in, candidate out: embeds ``query`` with the router's encoder, then routes."""

        def load_context(self, context) -> None:
            from fusion.embed import Encoder
            from fusion.routers import load_router

            self.router = load_router(context.artifacts[ROUTER_ARTIFACT])
            self.encoder = Encoder(self.router.meta["encoder"])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            return predict_frame(self.router, self.encoder, model_input)

    return RouterModel


def predict_frame(router, encoder, frame: pd.DataFrame) -> pd.DataFrame:
    """The router's prediction on a frame with a ``query`` column (and an optional ``task``)."""
    if "query" not in frame.columns:
        raise ValueError("router input needs a 'query' column of texts")
    from fusion.embed import strip_prefixes

    X = encoder.encode(strip_prefixes(frame["query"].astype(str).tolist(), router.meta.get("text_prefixes", [])))
    tasks = frame["task"].astype(str).to_numpy() if "task" in frame.columns else None
    U = router.predict_utility(X, tasks, frame["query"].astype(str).to_numpy(dtype=object))
    out = pd.DataFrame(U, columns=[f"utility:{c}" for c in router.candidates])
    out.insert(0, "candidate", [router.candidates[i] for i in np.argmax(U, axis=1)])
    return out


def log_router_model(router_dir: Path, cfg: TrackingConfig, example_queries: list[str],
                     name: str = "router", encoder=None) -> str | None:
    """Log the saved router as a pyfunc model (artifact path ``name``) in the active run and register it as a
    new version of ``cfg.registered_router``; returns the version. The model's metadata holds the router, the
    encoder reference, the candidate pool and the scenario; the version is tagged with them too. ``encoder``
    (an :class:`fusion.embed.Encoder` of the router's encoder) saves loading it again for the signature."""
    if not cfg.enabled:
        return None
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    from fusion.embed import Encoder
    from fusion.routers import load_router

    router = load_router(router_dir)
    example = pd.DataFrame({"query": example_queries[:3]})
    if encoder is None or encoder.ref != router.meta["encoder"]:
        encoder = Encoder(router.meta["encoder"])
    output = infer_signature(example, predict_frame(router, encoder, example)).outputs
    # `task` is optional: routers that use task identity read it when given
    inputs = Schema([ColSpec("string", "query"), ColSpec("string", "task", required=False)])
    signature = ModelSignature(inputs=inputs, outputs=output)
    metadata = {"router": router.name, "candidates": router.candidates, "encoder": router.meta["encoder"],
                "scenario": router.meta.get("scenario", {}), "alpha": router.meta["alpha"],
                "beta": router.meta["beta"], "objective": router.meta.get("objective", "reward")}
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=_router_model_class()(),
        artifacts={ROUTER_ARTIFACT: str(router_dir)},
        signature=signature,
        input_example=example,
        code_paths=[str(Path(__file__).resolve().parent)],
        pip_requirements=["mlflow", "scikit-learn", "sentence-transformers", "pandas", "numpy", "joblib", "torch"],
        registered_model_name=cfg.registered_router,
        metadata=metadata,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in (("router", router.name), ("encoder", router.meta["encoder"]),
                       ("candidates", ",".join(router.candidates)), ("scenario", json.dumps(metadata["scenario"]))):
        client.set_model_version_tag(cfg.registered_router, version, key, str(value)[:5000])
    logger.info("registered %s version %s (%s)", cfg.registered_router, version, router.name)
    return version


# registry: aliases and scoring a registered model ----------------------------------------------------------------
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


def predict_registered(model_uri: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Load a registered router (``models:/name@alias`` or ``models:/name/version``) and route ``frame``."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).predict(frame)
