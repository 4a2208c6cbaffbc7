"""The router contract: fit on routing data, predict a utility per candidate, route to the argmax.

A router never calls an LLM. It sees query embeddings, and may see the task identity, the query text and the
candidates' descriptions; its utilities estimate the scenario's reward of each candidate (the training target is
``RoutingData.reward``). Model selection and early stopping use a validation split carved from the training data
(``RoutingData.validation_split``), never the test split.

Each router declares its hyper-parameters once, as a typed :class:`RouterParams` model (defaults, bounds and a
description per field, unknown keys refused) in its class attribute ``Params``; the router reads them as
``self.hp.<name>``. Building a router validates its parameters, so a misspelt or ill-typed key fails before any
training, naming the router and the key (:class:`RouterParamError`).

Routers that use task identity (``uses_tasks``) also learn to do without it (:class:`TaskParams`): each fits a
:class:`fusion.levels.query.task_inference.TaskModel` on its training queries and a *text-only* part (by default a twin
of itself trained with no task labels). :meth:`Router.predict` routes a query with a known task label by it; a
query without one (or with a task never seen) by the task posterior, which weights the router's task-conditioned
utilities (the expected utility over the tasks the query may belong to); and a query far from every known task by
the text-only part. It returns which path each query took (``task``, ``inferred``, ``text-only``; ``prior`` for
routers that fall back to the overall prior, such as the ``task-best`` baseline), so a degradation is visible.
``task_labels: false`` trains a router that never sees a label (for logs without them).

Saved routers are a folder: ``router.json`` (name, parameters, candidates, scenario, reward normalisation,
encoder, task vocabulary) plus the router's own state file(s), the task model (``task_model.joblib``) and the
text-only twin (``text-only/``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fusion.core.registry import Registry
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import choose, task_index
from fusion.levels.query.rewards import TaskNormaliser
from fusion.levels.query.task_inference import NO_TASK, PATH_INFERRED, PATH_PRIOR, PATH_TASK, PATH_TEXT

if TYPE_CHECKING:  # pragma: no cover
    from fusion.levels.query.task_inference import TaskModel

ROUTERS: Registry[type[Router]] = Registry("router")
META_FILE = "router.json"
STATE_FILE = "state.joblib"

# every router module, imported on first use of the registry (each registers itself; heavy imports are lazy)
ROUTER_MODULES = ("baselines", "knn", "mlp", "svm", "mf", "graph", "encoder", "budget", "cluster", "ensemble")
TASK_MODEL_FILE = "task_model.joblib"
TEXT_ONLY_DIR = "text-only"
#: task posteriors below this share of a query's mass are dropped (the rest renormalised) when mixing utilities
MIN_POSTERIOR = 0.05


class RouterParams(BaseModel):
    """A router's hyper-parameters (none for the baselines). Subclasses declare each field once, typed, with its
    default and a description; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SelectionParams(RouterParams):
    """Parameters of routers that select hyper-parameters or checkpoints on a validation split."""

    validation_fraction: float = Field(0.2, gt=0, lt=1, description="share of the training queries carved out "
                                       "for model selection when no validation split is given")


class TaskParams(SelectionParams):
    """Parameters of routers that use task identity (and infer it when a query comes without one)."""

    task_labels: bool = Field(True, description="train with the task labels; False: never see them (logs "
                                                "without labels; every query is then routed by its text)")
    ood_quantile: float = Field(0.02, ge=0, lt=1, description="share of held-out training queries flagged as far "
                                "from every known task (sets the out-of-distribution threshold; 0: never flag)")


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
    #: True for baselines that need the task label and infer none (``task-best``): path ``task`` for a known
    #: label, ``prior`` otherwise; marked as such in task-blind evaluations
    needs_labels: ClassVar[bool] = False
    #: True for routers that read the query text (they re-encode it themselves) rather than the embedding.
    uses_texts: ClassVar[bool] = False
    #: True for routers that use task identity: they take :class:`TaskParams` and infer the task when absent.
    uses_tasks: ClassVar[bool] = False
    #: for ``uses_tasks`` routers: their text-only part is a twin trained without task labels (False: the router
    #: overrides :meth:`_text_only_utility`)
    text_only_twin: ClassVar[bool] = True

    def __init__(self, seed: int = 0, **params: Any) -> None:
        self.seed = int(seed)
        #: the typed hyper-parameters: the one way a router reads a parameter
        self.hp = parse_router_params(self.name, self.Params, params)
        #: the parameters as given (saved in ``router.json`` and logged; defaults live in ``Params``)
        self.params = dict(params)
        self.candidates: list[str] = []
        self.meta: dict[str, Any] = {}
        self.state: dict[str, Any] = {}
        #: task inference (``uses_tasks`` routers trained with labels; None otherwise or for old saved routers)
        self.task_model: TaskModel | None = None
        #: the text-only part (a twin trained without task labels), for queries far from every known task
        self.text_only: Router | None = None

    @property
    def labelled(self) -> bool:
        """True for a router that routes by task labels it was trained with (and infers them when absent)."""
        return self.uses_tasks and bool(self.hp.task_labels)

    def fit(self, data: RoutingData, val: RoutingData | None = None, *, task_free: bool = True) -> Router:
        """Fit on ``data`` (the training split). ``val``, when given, is the validation split for model
        selection; routers that need one and get none carve it from ``data`` with ``validation_fraction``.
        ``task_free=False`` skips the task model and the text-only twin (a fit only ever scored with labels, such
        as an ensemble's selection stage)."""
        if len(data) == 0:
            raise ValueError(f"{self.name}: no training queries")
        if self.uses_tasks and not self.hp.task_labels:
            data, val = data.without_tasks(), (val.without_tasks() if val is not None else None)
        self.candidates = list(data.candidates)
        self.meta.update(alpha=data.alpha, beta=data.beta, objective=data.objective,
                         normaliser=data.normaliser.to_dict(), task_vocab=sorted({str(t) for t in data.tasks}),
                         n_train=len(data))
        self._fit(data, val)
        self.task_model, self.text_only = None, None
        if self.labelled and task_free:
            from fusion.levels.query.task_inference import TaskModel

            self.task_model = TaskModel.fit_cached(data.X, data.tasks, seed=self.seed,
                                                   ood_quantile=self.hp.ood_quantile)
            self.meta["task_model"] = {"holdout_accuracy": self.task_model.holdout_accuracy,
                                       "temperature": self.task_model.temperature,
                                       "ood_threshold": self.task_model.threshold}
            if self.text_only_twin:
                self.text_only = make_router(self.name, seed=self.seed, **{**self.params, "task_labels": False})
                self.text_only.meta.update({k: v for k, v in self.meta.items() if k not in ("task_vocab", "n_train",
                                                                                             "task_model")})
                self.text_only.fit(data, val)
        return self

    def selection_split(self, data: RoutingData, val: RoutingData | None) -> tuple[RoutingData, RoutingData]:
        if val is not None:
            return data, val
        return data.validation_split(float(self.hp.validation_fraction), self.seed)

    @abstractmethod
    def _fit(self, data: RoutingData, val: RoutingData | None) -> None: ...

    @abstractmethod
    def _utility(self, X: np.ndarray, tasks: np.ndarray | None, texts: np.ndarray | None) -> np.ndarray:
        """(n, c) estimated reward of each candidate given the tasks as they are (the router's own model;
        :meth:`predict` decides which tasks it sees)."""

    def _text_only_utility(self, X: np.ndarray, texts: np.ndarray | None) -> np.ndarray:
        """(n, c) utilities from the query alone (the twin trained without task labels)."""
        if self.text_only is None:
            raise RuntimeError(f"{self.name}: no text-only part (fit the router again)")
        return self.text_only.predict_utility(X, None, texts)

    def predict(self, X: np.ndarray, tasks: np.ndarray | None = None, texts: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(n, c) estimated reward of each candidate, and (n,) the path each query took (see the module doc)."""
        n = len(X) if X is not None else len(texts)
        if texts is not None and len(texts) != n:
            raise ValueError(f"{self.name}: got {len(texts)} texts for {n} queries")
        if not (self.uses_tasks or self.needs_labels):
            return self._utility(X, tasks, texts), np.full(n, PATH_TEXT, dtype=object)  # no task used
        if self.uses_tasks and not self.hp.task_labels:
            return self._utility(X, np.full(n, NO_TASK, dtype=object), texts), np.full(n, PATH_TEXT, dtype=object)
        vocab = self.task_vocab
        known = task_index(tasks, vocab, n) < len(vocab)
        if known.all():
            return self._utility(X, tasks, texts), np.full(n, PATH_TASK, dtype=object)
        if self.task_model is not None and X is not None and not known.any():  # the common serving case, fast
            post, ood = self.task_model.infer(X)
            if not ood.any():
                return self._mixture(X, texts, post), np.full(n, PATH_INFERRED, dtype=object)
        if self.task_model is None:  # labels only (task-best, routers saved before inference): the overall prior
            return self._utility(X, tasks, texts), np.where(known, PATH_TASK, PATH_PRIOR).astype(object)
        paths = np.full(n, PATH_TASK, dtype=object)
        X = np.asarray(X) if X is not None else None
        rest = np.flatnonzero(~known)
        # no embeddings (a router that reads the texts, given only those): nothing to infer the task from
        if X is not None:
            post, ood = self.task_model.infer(X[rest])
        else:
            post, ood = None, np.ones(len(rest), dtype=bool)
        U = np.zeros((n, len(self.candidates)))
        if known.any():
            k = np.flatnonzero(known)
            U[k] = self._utility(_take(X, k), np.asarray(tasks, dtype=object)[k], _take(texts, k))
        inf, txt = rest[~ood], rest[ood]
        if len(inf):
            U[inf] = self._mixture(_take(X, inf), _take(texts, inf), post[~ood])
            paths[inf] = PATH_INFERRED
        if len(txt):
            U[txt] = self._text_only_utility(_take(X, txt), _take(texts, txt))
            paths[txt] = PATH_TEXT
        return U, paths

    def _mixture(self, X: np.ndarray, texts: np.ndarray | None, P: np.ndarray) -> np.ndarray:
        """Sum over tasks of posterior x the task-conditioned utilities (tasks under :data:`MIN_POSTERIOR`
        dropped, the rest renormalised): the expected utility when the task is uncertain."""
        P = np.where(P >= np.minimum(MIN_POSTERIOR, P.max(1, keepdims=True)), P, 0.0)
        rows, cols = np.nonzero(P)
        vocab = np.asarray(self.task_model.vocab, dtype=object)
        if len(rows) == len(X):  # one task per query: its utilities as they are
            return self._utility(X, vocab[cols], texts)
        P /= P.sum(1, keepdims=True)
        Ue = self._utility(X[rows], vocab[cols], _take(texts, rows))
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])  # rows come sorted, each query at least once
        return np.add.reduceat(P[rows, cols][:, None] * Ue, starts, axis=0)

    def predict_utility(self, X: np.ndarray, tasks: np.ndarray | None = None,
                        texts: np.ndarray | None = None) -> np.ndarray:
        """(n, c) estimated reward of each candidate (:meth:`predict` without the paths)."""
        return self.predict(X, tasks, texts)[0]

    def predict_data(self, data: RoutingData) -> np.ndarray:
        """Utilities on a whole RoutingData (what evaluation calls; the oracle overrides it)."""
        return self.predict_utility(data.X, data.tasks, data.texts)

    def route(self, X: np.ndarray, tasks: np.ndarray | None = None, texts: np.ndarray | None = None) -> np.ndarray:
        """Index of the chosen candidate per query (ties go to the first candidate)."""
        return choose(self.predict_utility(X, tasks, texts))

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
        if self.task_model is not None:
            joblib.dump(self.task_model.to_dict(), path / TASK_MODEL_FILE)
        if self.text_only is not None:
            self.text_only.save(path / TEXT_ONLY_DIR)
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
    if (path / TASK_MODEL_FILE).is_file():
        from fusion.levels.query.task_inference import TaskModel

        router.task_model = TaskModel.from_dict(joblib.load(path / TASK_MODEL_FILE))
    if (path / TEXT_ONLY_DIR / META_FILE).is_file():
        router.text_only = load_router(path / TEXT_ONLY_DIR)
    return router


def _take(a: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    if a is None:
        return None
    return (a if isinstance(a, np.ndarray) else np.asarray(a, dtype=object))[idx]


def _import_all() -> None:
    import importlib

    for mod in ROUTER_MODULES:
        importlib.import_module(f"fusion.levels.query.{mod}")
