"""What decides an output, in one place: the digests every cache, fingerprint and resume check is keyed by.

- :func:`digest`: a stable hash of JSON-able parts (sorted keys), the one recipe every fingerprint uses;
- :func:`weights_key`: a model reference's weights: a local folder by its files (small ones — adapters, configs —
  by content, large weight files by size and modification time), a registered model by the version its alias
  names, anything else (a packaged GGUF file, a hub name, an API model) by the reference itself;
- :func:`model_key`: what names a model's answers: backend, model (its weights), the backend's identity options,
  and an adapter's weights; never an entry's display name or prices;
- :func:`output_key`: one output: the model key, the prompt and whatever else decides it (``max_new_tokens``,
  a prompt or rubric version).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

CONTENT_HASH_MAX_BYTES = 256 * 2**20


def digest(*parts, length: int = 16) -> str:
    """The sha1 of the parts as canonical JSON (one part: that value alone, so fingerprints written before this
    module existed keep their value)."""
    blob = json.dumps(parts[0] if len(parts) == 1 else list(parts), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


def text_key(text: str, length: int = 16) -> str:
    """A text's content hash (answers and prompts as keys)."""
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def _folder_key(path: Path) -> str:
    h = hashlib.sha1()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(path)}:{st.st_size}".encode())
            if st.st_size <= CONTENT_HASH_MAX_BYTES:  # an adapter, a config: by content (a re-save is the same)
                h.update(hashlib.sha1(f.read_bytes()).digest())
            else:  # full weights: by time (hashing gigabytes per evaluation costs more than it saves)
                h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()[:16]


def weights_key(ref: str) -> str:
    from fusion.models.refs import REGISTRY_PREFIX, registry_version, resolve_ref

    if ref.startswith(REGISTRY_PREFIX):  # an alias moves: the version names the weights
        return digest("registry", ref, "/".join(registry_version(ref)))
    try:
        path = Path(resolve_ref(ref))
    except Exception:  # noqa: BLE001 - a name no local resolver knows (a hub or API model) is its own identity
        path = None
    if path is not None and path.is_dir():
        return digest("folder", _folder_key(path))
    return digest("ref", ref)


def model_key(spec, *, adapter: str | Path | None = None) -> str:
    """``spec``: a pool entry (:class:`fusion.config.LLMSpec`)."""
    from fusion.backends.base import identity

    ident = identity(spec)
    decides = {k: ident[k] for k in ("backend", "model", "options", "registry_version") if k in ident}
    if adapter is not None:
        if not Path(adapter).is_dir():
            raise FileNotFoundError(f"adapter folder {adapter} does not exist")
        decides["adapter"] = weights_key(str(adapter))
    return digest(decides, weights_key(spec.model))


def local_spec(name: str, model: str, like=None):
    """A transformers pool entry for ``model`` (a folder, an adapter folder or a ``models:/`` reference), at the
    prices of ``like`` (the base model's entry) when given: how a level names and loads a model it trained."""
    from fusion.core.config import LLMSpec

    return LLMSpec(name=name, backend="transformers", model=str(model), modes=["direct"],
                   input_price=like.input_price if like else 0.0, output_price=like.output_price if like else 0.0)


def output_key(model: str, prompt: str, **decides) -> str:
    """One output of ``model`` (a :func:`model_key` or another name of what answers) to ``prompt``."""
    return digest(model, prompt, decides, length=40)
