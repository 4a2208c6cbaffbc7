"""The router contract: fit on routing data, predict a utility per candidate, route to the argmax.

A router never calls an LLM. It sees query embeddings, and may see the task identity, the query text and the
candidates' descriptions; its utilities estimate the scenario's reward of each candidate (the training target is
``RoutingData.reward``). Model selection and early stopping use a validation split carved from the training data
(``RoutingData.validation_split``), never the test split.

Each router declares its hyper-parameters once, as a typed :class:`RouterParams` model (defaults, bounds and a
description per field, unknown keys refused) in its class attribute ``Params``; the router reads them as
``self.hp.<name>``. Building a router validates its parameters, so a misspelt or ill-typed key fails before any
training, naming the router and the key (:class:`RouterParamError`).

Saved routers are a folder: ``router.json`` (name, parameters, candidates, scenario, reward normalisation,
encoder, task vocabulary) plus the router's own state file(s).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fusion.registry import Registry
from fusion.rewards import TaskNormaliser
from fusion.routers.data import RoutingData

ROUTERS: Registry[type[Router]] = Registry("router")
META_FILE = "router.json"
STATE_FILE = "state.joblib"

# every router module, imported on first use of the registry (each registers itself; heavy imports are lazy)
ROUTER_MODULES = ("baselines", "knn", "mlp", "svm", "mf", "graph", "encoder", "budget")


class RouterParams(BaseModel):
    """A router's hyper-parameters (none for the baselines). Subclasses declare each field once, typed, with its
    default and a description; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SelectionParams(RouterParams):
    """Parameters of routers that select hyper-parameters or checkpoints on a validation split."""

    validation_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training queries carved out "
                                       "for model selection when no validation split is given")


#: the ``num_threads`` parameter: BLAS/torch threads while fitting (None or 0: leave the libraries' setting)
ThreadCount = int | None


class RouterParamError(ValueError):
    """A router parameter is unknown or ill-typed; the message names the router and the key."""


def parse_router_params(router: str, params_type: type[RouterParams], params: dict[str, Any]) -> RouterParams:
    """``params`` validated against ``params_type``; a :class:`RouterParamError` naming the router and key."""
    try:
        return params_type.model_validate(params)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(parameters)"
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = f"unknown parameter (known: {', '.join(params_type.model_fields) or 'none'})"
            lines.append(f"router {router!r}: parameter {key!r}: {msg}")
        raise RouterParamError("\n".join(lines)) from None


class Router(ABC):
    name: ClassVar[str]
    #: the router's typed hyper-parameters (see :class:`RouterParams`)
    Params: ClassVar[type[RouterParams]] = RouterParams
    #: True for routers that need the true outcomes of the queries they route (the oracle): evaluation only.
    evaluation_only: ClassVar[bool] = False
    #: True for routers that read the query text (they re-encode it themselves) rather than the embedding.
    uses_texts: ClassVar[bool] = False

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = int(seed)
        #: the typed hyper-parameters: the one way a router reads a parameter
        self.hp = parse_router_params(self.name, self.Params, params)
        #: the parameters as given (saved in ``router.json`` and logged; defaults live in ``Params``)
        self.params = dict(params)
        self.candidates: list[str] = []
        self.meta: dict[str, Any] = {}
        self.state: dict[str, Any] = {}

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
        return data.validation_split(float(self.hp.validation_fraction), self.seed)

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


class RouterSpec(Protocol):
    name: str
    seed: int
    params: dict[str, Any]


def check_router_specs(specs: Sequence[RouterSpec]) -> None:
    """Raise ValueError when a router to train is unknown, evaluation-only, ``random``, or has an unknown or
    ill-typed parameter (the message names the router and the key). Builds each router without fitting it."""
    known = router_names()
    problems = []
    for spec in specs:
        if spec.name not in known:
            problems.append(f"unknown router {spec.name!r}; known: {', '.join(known)}")
        elif ROUTERS.get(spec.name).evaluation_only:
            problems.append(f"router {spec.name!r} is for evaluation only and cannot be trained for deployment")
        elif spec.name == "random":
            problems.append("router 'random' is a baseline the evaluation always reports; list learned routers")
        else:
            try:
                make_router(spec.name, seed=spec.seed, **spec.params)
            except RouterParamError as exc:
                problems.append(str(exc))
    if problems:
        raise RouterParamError("routers: " + "\n".join(problems))


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
