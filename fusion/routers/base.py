"""The router contract: fit on routing data, predict a utility per candidate, route to the argmax.

A router never calls an LLM. It sees query embeddings (and may see task identity); its utilities estimate the
scenario's reward of each candidate. Saved routers are a folder: ``router.json`` (name, parameters,
candidates, scenario, reward normalisation, encoder) plus the router's own state file(s).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fusion.registry import Registry
from fusion.rewards import TaskNormaliser
from fusion.routers.data import RoutingData

ROUTERS: Registry[type[Router]] = Registry("router")
META_FILE = "router.json"


class Router(ABC):
    name: ClassVar[str]

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = seed
        self.params = params
        self.candidates: list[str] = []
        self.meta: dict[str, Any] = {}

    def fit(self, data: RoutingData) -> Router:
        self.candidates = list(data.candidates)
        self.meta.update(alpha=data.alpha, beta=data.beta, normaliser=data.normaliser.to_dict())
        self._fit(data)
        return self

    @abstractmethod
    def _fit(self, data: RoutingData) -> None: ...

    @abstractmethod
    def predict_utility(self, X: np.ndarray, tasks: np.ndarray | None = None) -> np.ndarray:
        """(n, c) estimated reward of each candidate."""

    def route(self, X: np.ndarray, tasks: np.ndarray | None = None) -> np.ndarray:
        """Index of the chosen candidate per query (ties go to the first candidate)."""
        return np.argmax(self.predict_utility(X, tasks), axis=1)

    @property
    def normaliser(self) -> TaskNormaliser:
        return TaskNormaliser.from_dict(self.meta["normaliser"])

    # persistence -------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"router": self.name, "seed": self.seed, "params": self.params, "candidates": self.candidates,
                **self.meta}
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        self._save_state(path)
        return path

    @abstractmethod
    def _save_state(self, path: Path) -> None: ...

    @abstractmethod
    def _load_state(self, path: Path) -> None: ...


def make_router(name: str, seed: int = 0, **params: Any) -> Router:
    _import_all()
    return ROUTERS.get(name)(seed=seed, **params)


def load_router(path: str | Path) -> Router:
    path = Path(path)
    meta_file = path / META_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"no saved router at {path} ({META_FILE} missing)")
    meta = json.loads(meta_file.read_text())
    router = make_router(meta["router"], seed=meta.get("seed", 0), **meta.get("params", {}))
    router.candidates = meta["candidates"]
    router.meta = {k: v for k, v in meta.items() if k not in ("router", "seed", "params", "candidates")}
    router._load_state(path)
    return router


def _import_all() -> None:
    # Router modules register themselves on import; they import their heavy libraries lazily.
    from fusion.routers import knn  # noqa: F401
