"""Serving a trained router: text in, candidate out. The MLflow pyfunc model (its code in
:mod:`fusion.levels.query.pyfunc_model`; logged and registered by :func:`log_router_model`, loaded by
:func:`predict_registered` or ``mlflow.pyfunc.load_model``) and the one prediction path it and
``fusion route predict`` share (:func:`predict_frame`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from fusion.core.config import TrackingConfig
from fusion.levels.query.features import choose

logger = logging.getLogger(__name__)

#: the pyfunc model's code file (MLflow "models from code"): nothing is pickled
MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
ROUTER_ARTIFACT = "router"  # the artifact holding the router's folder


def predict_frame(router, encoder, frame: pd.DataFrame) -> pd.DataFrame:
    """The router's prediction on a frame with a ``query`` column (and an optional ``task``): the chosen
    ``candidate``, the ``route_path`` each query took (``task``: its known label; ``inferred``: the task inferred
    from the query; ``text-only``: far from every known task, or a router that uses none; ``prior``: the overall
    prior) and a ``utility:<candidate>`` column per candidate. A missing or empty ``task`` is inferred."""
    if "query" not in frame.columns:
        raise ValueError("router input needs a 'query' column of texts")
    from fusion.core.embedding import strip_prefixes

    X = encoder.encode(strip_prefixes(frame["query"].astype(str).tolist(), router.meta.get("text_prefixes", [])))
    tasks = None
    if "task" in frame.columns:  # a missing value (None/NaN/"") is no label: the router infers it
        tasks = frame["task"].where(frame["task"].notna(), "").astype(str).to_numpy(dtype=object)
    U, paths = router.predict(X, tasks, frame["query"].astype(str).to_numpy(dtype=object))
    out = pd.DataFrame(U, columns=[f"utility:{c}" for c in router.candidates])
    out.insert(0, "candidate", [router.candidates[i] for i in choose(U)])
    out.insert(1, "route_path", list(paths))
    return out


def log_router_model(router_dir: Path, cfg: TrackingConfig, example_queries: list[str],
                     name: str = "router", encoder=None, tags: dict[str, str] | None = None) -> str | None:
    """Log the saved router as a pyfunc model (artifact path ``name``) in the active run and register it as a
    new version of ``cfg.registered_router``; returns the version. The model's metadata holds the router, the
    encoder reference, the candidate pool and the scenario; the version is tagged with them too. ``encoder``
    (an :class:`fusion.core.embedding.Encoder` of the router's encoder) saves loading it again for the signature;
    ``tags`` are set on the version too (the pipeline's: the data version it learnt from)."""
    if not cfg.enabled:
        return None
    import mlflow
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema

    from fusion.core.embedding import Encoder
    from fusion.levels.query import load_router

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
        python_model=MODEL_CODE,
        artifacts={ROUTER_ARTIFACT: str(router_dir)},
        signature=signature,
        input_example=example,
        code_paths=[str(Path(__file__).resolve().parents[1])],  # the whole fusion package
        pip_requirements=["mlflow", "scikit-learn", "sentence-transformers", "pandas", "numpy", "joblib", "torch"],
        registered_model_name=cfg.registered_router,
        metadata=metadata,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in (("router", router.name), ("encoder", router.meta["encoder"]),
                       ("candidates", ",".join(router.candidates)), ("scenario", json.dumps(metadata["scenario"])),
                       *(tags or {}).items()):
        client.set_model_version_tag(cfg.registered_router, version, key, str(value)[:5000])
    logger.debug("registered %s version %s (%s)", cfg.registered_router, version, router.name)
    return version


def predict_registered(model_uri: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Load a registered router (``models:/name@alias`` or ``models:/name/version``) and route ``frame``."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(model_uri).predict(frame)
