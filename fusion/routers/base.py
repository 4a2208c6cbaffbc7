"""The router contract: fit on routing data, predict a utility per candidate, route to the argmax.

A router never calls an LLM. It sees query embeddings, and may see the task identity, the query text and the
candidates' descriptions; its utilities estimate the scenario's reward of each candidate (the training target is
``RoutingData.reward``). Model selection and early stopping use a validation split carved from the training data
(``RoutingData.validation_split``), never the test split.

Saved routers are a folder: ``router.json`` (name, parameters, candidates, scenario, reward normalisation,
encoder, task vocabulary) plus the router's own state file(s).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np

from fusion.registry import Registry
from fusion.rewards import TaskNormaliser
from fusion.routers.data import RoutingData

ROUTERS: Registry[type[Router]] = Registry("router")
META_FILE = "router.json"
STATE_FILE = "state.joblib"

# every router module, imported on first use of the registry (each registers itself; heavy imports are lazy)
ROUTER_MODULES = ("baselines", "knn", "mlp", "svm", "mf", "graph", "encoder", "budget")


class Router(ABC):
    name: ClassVar[str]
    #: True for routers that need the true outcomes of the queries they route (the oracle): evaluation only.
    evaluation_only: ClassVar[bool] = False
    #: True for routers that read the query text (they re-encode it themselves) rather than the embedding.
    uses_texts: ClassVar[bool] = False

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = int(seed)
        self.params = dict(params)
        self.candidates: list[str] = []
        self.meta: dict[str, Any] = {}
        self.state: dict[str, Any] = {}

    def param(self, key: str, default: Any) -> Any:
        return self.params.get(key, default)

    def fit(self, data: RoutingData, val: RoutingData | None = None) -> Router:
        """Fit on ``data`` (the training split). ``val``, when given, is the validation split for model
        selection; routers that need one and get none carve it from ``data`` with ``validation_fraction``."""
        if len(data) == 0:
            raise ValueError(f"{self.name}: no training queries")
        self.candidates = list(data.candidates)
        self.meta.update(alpha=data.alpha, beta=data.beta, objective=data.objective,
                         normaliser=data.normaliser.to_dict(), task_vocab=sorted({str(t) for t in data.tasks}),
                         n_train=len(data))
        self._fit(data, val)
        return self

    def selection_split(self, data: RoutingData, val: RoutingData | None) -> tuple[RoutingData, RoutingData]:
        if val is not None:
            return data, val
        return data.validation_split(float(self.param("validation_fraction", 0.2)), self.seed)

    @abstractmethod
    def _fit(self, data: RoutingData, val: RoutingData | None) -> None: ...

    @abstractmethod
    def predict_utility(self, X: np.ndarray, tasks: np.ndarray | None = None,
                        texts: np.ndarray | None = None) -> np.ndarray:
        """(n, c) estimated reward of each candidate."""

    def predict_data(self, data: RoutingData) -> np.ndarray:
        """Utilities on a whole RoutingData (what evaluation calls; the oracle overrides it)."""
        return self.predict_utility(data.X, data.tasks, data.texts)

    def route(self, X: np.ndarray, tasks: np.ndarray | None = None, texts: np.ndarray | None = None) -> np.ndarray:
        """Index of the chosen candidate per query (ties go to the first candidate)."""
        return np.argmax(self.predict_utility(X, tasks, texts), axis=1)

    def derived(self, key: str, build: Callable[[], Any], of: Any = None) -> Any:
        """``build()``, computed once per ``of`` (default: the fitted or loaded ``state``; refitting or loading
        makes a new one). For forms derived from the state (numpy weights, indexes) that are never saved."""
        of = self.state if of is None else of
        cache = self.__dict__.setdefault("_derived", {})
        hit = cache.get(key)
        if hit is None or hit[0] is not of:
            hit = cache[key] = (of, build())
        return hit[1]

    @property
    def task_vocab(self) -> list[str]:
        return list(self.meta.get("task_vocab", []))

    @property
    def normaliser(self) -> TaskNormaliser:
        return TaskNormaliser.from_dict(self.meta["normaliser"])

    # persistence -------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {"router": self.name, "seed": self.seed, "params": self.params, "candidates": self.candidates,
                **self.meta}
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=json_default) + "\n")
        self._save_state(path)
        return path

    def _save_state(self, path: Path) -> None:
        """Default: the picklable ``self.state`` dict in one joblib file."""
        joblib.dump(self.state, path / STATE_FILE)

    def _load_state(self, path: Path) -> None:
        self.state = joblib.load(path / STATE_FILE)


def json_default(o: Any) -> Any:
    """``json.dumps`` fallback for numpy scalars and arrays (anything else as its string)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def make_router(name: str, seed: int = 0, **params: Any) -> Router:
    _import_all()
    return ROUTERS.get(name)(seed=seed, **params)


def router_names(*, deployable_only: bool = False) -> list[str]:
    _import_all()
    return [n for n, cls in ROUTERS.items() if not (deployable_only and cls.evaluation_only)]


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
    import importlib

    for mod in ROUTER_MODULES:
        importlib.import_module(f"fusion.routers.{mod}")
