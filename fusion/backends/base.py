"""The backend contract: requests (a user message and the query it came from) in, generations with token
counts out; one registry of backends, each with its own typed options (the pool entry's ``options``).

Backends never raise for one failed request: a request that fails (after the backend's own retries) comes back
as a :class:`Generation` with ``error`` set, which the collector stores as an error row. Exceptions are for a
backend that cannot work at all (a model that does not load), and the collector turns those into error rows for
the whole batch.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from fusion.core.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from fusion.core.config import LLMSpec

#: where each row's token counts came from
TOKENS_FROM_TOKENIZER = "tokenizer"  # the model's own tokenizer, counted by us
TOKENS_FROM_SERVER = "server"  # the server's `usage` field
TOKENS_FROM_LOG = "log"  # copied from a replayed routing log


@dataclass(frozen=True)
class Request:
    """One call: the user message, and which (query, mode) it answers (replay looks answers up by these; the
    other backends only send ``prompt``). ``prefill`` starts the assistant's reply (the judge's ``Score:``, which
    keeps a small model to the format): the local backends (transformers, vllm) continue it, and the generation's
    text begins with it; the openai backend sends it only when its server continues a final assistant message
    (``options.prefill``), else the rubric's last line asks for the same form."""

    prompt: str
    query_id: str = ""
    mode: str = "direct"
    query: str = ""
    prefill: str = ""


@dataclass(frozen=True)
class Generation:
    text: str | None
    input_tokens: int | None
    output_tokens: int | None
    latency_s: float | None
    error: str | None = None
    tokens_source: str | None = None

    @classmethod
    def failed(cls, error: str, latency_s: float | None = None) -> Generation:
        return cls(None, None, None, latency_s, error=error)


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendOptionError(ValueError):
    """A pool entry's ``options`` do not fit its backend; the message names the LLM and the key."""


class Backend(ABC):
    """Generates answers with one model."""

    name: ClassVar[str]
    #: the typed options a pool entry may set under ``options`` (checked when params.yaml is loaded)
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: the options that change what the model answers (part of the collection's fingerprint: changing one
    #: re-collects that LLM); the others (concurrency, timeouts, addresses) do not
    identity_options: ClassVar[tuple[str, ...]] = ()
    #: leave identity options at their defaults out of the fingerprint (options added to a backend later)
    identity_defaults_omitted: ClassVar[bool] = False

    def __init__(self, spec: LLMSpec, *, model_cache: str | Path, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8) -> None:
        self.spec = spec
        self.options = parse_options(spec)
        self.batch_size = batch_size

    @abstractmethod
    def generate(
        self, requests: Sequence[Request], *, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[Generation]:
        """One generation per request, in order."""

    @classmethod
    def part_size_for(cls, options: BaseModel, batch_size: int) -> int:
        """How many requests the collector hands over at once (one durable part each), known before the backend
        is built (the collector plans its shards with it)."""
        return batch_size

    def part_size(self) -> int:
        return self.part_size_for(self.options, self.batch_size)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model (GPU memory, connections)."""


# name -> module defining it; imported on first use so that `import fusion` stays light.
_LAZY = {
    "transformers": "fusion.backends.hf",
    "openai": "fusion.backends.openai_compat",
    "vllm": "fusion.backends.vllm_engine",
    "replay": "fusion.backends.replay",
}
BACKENDS: Registry[type[Backend]] = Registry("backend")


def backend_class(name: str) -> type[Backend]:
    if name in _LAZY and name not in BACKENDS:
        importlib.import_module(_LAZY[name])
    return BACKENDS.get(name)


def parse_options(spec: LLMSpec):
    cls = backend_class(spec.backend)
    try:
        return cls.Options.model_validate(spec.options)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(options)"
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"pool[{spec.name}].options.{key}: {msg} (backend {spec.backend!r})")
        raise BackendOptionError("\n".join(lines)) from None


def identity(spec: LLMSpec) -> dict:
    """What of a pool entry decides its answers (the collection fingerprint)."""
    cls = backend_class(spec.backend)
    opts = parse_options(spec).model_dump()
    keep = cls.identity_options
    out = spec.model_dump(exclude={"options"})
    if cls.identity_defaults_omitted:  # only the options set away from their defaults (the fingerprint of an entry
        defaults = cls.Options().model_dump()  # that sets none is that of parts written before the options existed)
        keep = tuple(k for k in keep if opts[k] != defaults[k])
    if keep:  # (a backend without identity options keeps the fingerprint of parts written before options existed)
        out["options"] = {k: opts[k] for k in keep}
    if spec.model.startswith("models:/") and "@" in spec.model:  # an alias moves: the version it names answers
        from fusion.models.refs import registry_version

        out["registry_version"] = registry_version(spec.model)[1]
    return out


def check_pool(pool: Sequence[LLMSpec]) -> None:
    """Raise BackendOptionError when a pool entry names an unknown backend or has an unknown or ill-typed
    option (all problems at once)."""
    problems = []
    for spec in pool:
        try:
            parse_options(spec)
        except (BackendOptionError, UnknownNameError) as exc:
            problems.append(str(exc))
    if problems:
        raise BackendOptionError("\n".join(problems))


def part_size(spec: LLMSpec, batch_size: int) -> int:
    """The part size of a pool entry's backend (without building it)."""
    return backend_class(spec.backend).part_size_for(parse_options(spec), batch_size)


def make_backend(spec: LLMSpec, *, model_cache: str | Path, **settings) -> Backend:
    """Build the backend a pool entry names (``settings``: device, dtype, batch_size from ``collect``)."""
    return backend_class(spec.backend)(spec, model_cache=model_cache, **settings)
