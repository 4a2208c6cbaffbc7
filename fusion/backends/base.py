"""The backend contract: prompts (user messages) in, generations with token counts out."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fusion.registry import Registry


@dataclass(frozen=True)
class Generation:
    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    error: str | None = None


class Backend(ABC):
    """Generates answers for user messages with one model. Tokens are counted with the model's own tokenizer."""

    name: str

    @abstractmethod
    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[Generation]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the model (GPU memory, servers)."""


# name -> module path defining it; imported on first use so that `import fusion` stays light.
_LAZY = {"transformers": "fusion.backends.hf"}
BACKENDS: Registry[type[Backend]] = Registry("backend")


def make_backend(name: str, model: str, *, model_cache: str | Path, **options) -> Backend:
    if name in _LAZY and name not in BACKENDS:
        importlib.import_module(_LAZY[name])
    return BACKENDS.get(name)(model, model_cache=model_cache, **options)
