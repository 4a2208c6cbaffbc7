"""The trained router in the MLflow registry (``fusion-tokenroute``): a pyfunc model logged from code
(:mod:`fusion.levels.token.pyfunc_model`) whose ``router`` artifact is the saved router folder (an HF checkpoint plus
its head) and whose metadata lists the experts it was trained for (name, model reference, adapter, fingerprint of
their weights). :func:`router_dir` turns ``models:/fusion-tokenroute@alias`` back into that folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from fusion.levels.token.router import META_FILE, read_meta
from fusion.models.refs import REGISTRY_PREFIX, ModelNotFoundError, registry_version
from fusion.tracking import pinned_requirements

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
ROUTER_ARTIFACT = "router"


def log_tokenroute(ml, router: Path, *, registered_model: str, tags: dict[str, str] | None = None) -> str:
    """Log ``router`` (a folder written by :meth:`RouterLM.save`) in the active run ``ml`` (the mlflow module) and
    register a version of ``registered_model``; the experts go into the model's metadata and the version's tags."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    meta = read_meta(router)
    experts = meta["experts"]
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "prompt")]),
        outputs=Schema([ColSpec("string", "text"), ColSpec("string", "expert_shares"), ColSpec("double", "change_rate")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", 128), ParamSpec("temperature", "double", 0.0),
                            ParamSpec("seed", "long", 0)]))
    info = ml.pyfunc.log_model(
        name="model", python_model=MODEL_CODE, artifacts={ROUTER_ARTIFACT: str(router)}, signature=signature,
        code_paths=[str(Path(__file__).resolve().parents[1])],
        pip_requirements=pinned_requirements("torch", "transformers", "accelerate", "peft",
                                             unpinned=("mlflow", "pandas", "numpy", "safetensors")),
        registered_model_name=registered_model,
        metadata={"experts": experts, "n_experts": meta["n_experts"]})
    version = str(info.registered_model_version)
    client = ml.MlflowClient()
    for k, v in {"fusion.experts": ",".join(e["name"] for e in experts),
                 **{f"fusion.expert.{e['name']}": f"{e['model']}" + (f" + {e['adapter']}" if e.get("adapter") else "")
                    + f" ({e['fingerprint']})" for e in experts}, **(tags or {})}.items():
        client.set_model_version_tag(registered_model, version, k, str(v)[:5000])
    return version


def router_dir(ref: str | Path, cache_dir: Path) -> Path:
    """The router folder of ``ref``: a folder as is, or a registered version (``models:/name@alias`` or
    ``models:/name/version``) downloaded once into ``cache_dir/registry/<name>-v<version>``."""
    ref = str(ref)
    if not ref.startswith(REGISTRY_PREFIX):
        path = Path(ref)
        if not (path / META_FILE).is_file():
            raise ModelNotFoundError(f"{ref} is not a saved token-level router (no {META_FILE}); give a router "
                                     "folder or models:/<name>@<alias>")
        return path
    import mlflow

    name, version = registry_version(ref)
    out = Path(cache_dir) / "registry" / f"{name.replace('/', '__')}-v{version}"
    if (out / META_FILE).is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp)))
    found = local / "artifacts" / ROUTER_ARTIFACT
    if not (found / META_FILE).is_file():
        raise ModelNotFoundError(f"{ref} (version {version}) is not a token-level router: no artifacts/router")
    if out.exists():
        shutil.rmtree(out)
    found.replace(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return out
