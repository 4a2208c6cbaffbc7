"""The one training loop of the torch routers (``mf``, ``graph``, ``encoder``), its early-stopping rule, and what
``mf`` and ``graph`` share beyond it (:class:`TorchRouter`: typed parameters, the prelude of a fit, the optimiser
step, cross-fitted members and the refit).

Early stopping (:class:`EarlyStopping`, the only rule): the model is evaluated on the validation split before
training and after every evaluation period; ``patience`` is the number of evaluations without improvement that
are tolerated, and the next one stops training (``0``: stop at the first evaluation that does not improve on the
best; ``None``: never stop early). The best evaluation's weights are restored in every case.

Nothing here imports torch at module import time; every helper imports it on first call.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from fusion.levels.query.base import Router, TaskParams, ThreadCount
from fusion.levels.query.features import DEFAULT_THREADS, TaskPrior, limit_threads, routed_value, task_index

logger = logging.getLogger(__name__)


def seed_torch(seed: int):
    """Seed torch's global generator; returns a dedicated ``torch.Generator`` for shuffling/masking."""
    import torch

    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


def state_to_numpy(module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_numpy_state(module, state: dict[str, np.ndarray]) -> None:
    import torch

    module.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})


@dataclass
class EarlyStopping:
    """Keep the best evaluation (score first, tie-break second, both higher-is-better) and say when to stop.

    ``patience``: evaluations without improvement tolerated; the next one stops (0: the first one that does not
    improve stops; None: never stop early). The first evaluation is the untrained model: for residual routers
    that is the per-task prior, so training only replaces it when validation says the learned part helps."""

    patience: int | None
    min_delta: float = 1e-9
    best: tuple[float, float] = (-np.inf, -np.inf)
    best_epoch: float = -1.0
    best_step: int = -1
    best_state: Any = None
    bad: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.patience is not None and int(self.patience) < 0:
            raise ValueError(f"patience must be >= 0 or None (never stop early), got {self.patience}")

    def update(self, step: int, epoch: float, score: float, tiebreak: float, snapshot: Callable[[], Any],
               **extra: float) -> bool:
        """Record an evaluation (``snapshot()`` is taken when it is the best so far); True: stop training."""
        self.history.append({"step": step, "epoch": epoch, "score": float(score), "tiebreak": float(tiebreak),
                             **extra})
        better = score > self.best[0] + self.min_delta or (
            abs(score - self.best[0]) <= self.min_delta and tiebreak > self.best[1] + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.best_step, self.bad = (float(score), float(tiebreak)), epoch, step, 0
            self.best_state = snapshot()
            return False
        self.bad += 1
        return self.patience is not None and self.bad > int(self.patience)


def fit_loop(
    *,
    epochs: int,
    batches: Callable[[], Sequence[Any]],
    step: Callable[[Any], float],
    set_training: Callable[[bool], Any],
    evaluate: Callable[[], tuple[float, float]] | None = None,
    snapshot: Callable[[], Any] | None = None,
    restore: Callable[[Any], Any] | None = None,
    patience: int | None = None,
    eval_every: int | None = None,
    progress: bool = False,
    name: str = "router",
) -> EarlyStopping | None:
    """Train for ``epochs`` passes over ``batches()`` (called once per epoch: its shuffling runs there), calling
    ``step(batch) -> loss`` (forward, loss, optimiser step) once per batch in training mode.

    With ``evaluate() -> (score, tiebreak)`` (higher is better, run in evaluation mode): evaluated before the
    first step, after every ``eval_every`` batches of an epoch and at each epoch's end; early stopping by
    :class:`EarlyStopping` with ``patience``; ``restore(snapshot())`` of the best evaluation at the end.
    Without ``evaluate``: exactly ``epochs`` epochs (a refit for an epoch count chosen on validation)."""
    stopper = EarlyStopping(patience) if evaluate is not None else None
    bar = None
    if progress and epochs > 0:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"{name} training", unit="step", leave=False, dynamic_ncols=True)
    step_no, loss_sum, loss_n, steps_per_epoch = 0, 0.0, 0, 1

    def check() -> bool:
        nonlocal loss_sum, loss_n
        set_training(False)
        score, tie = evaluate()
        extra = {"train_loss": loss_sum / loss_n} if loss_n else {}  # none before the first step
        loss_sum, loss_n = 0.0, 0
        epoch = round(step_no / steps_per_epoch, 3)
        logger.debug("%s: step %d (epoch %.2f) %s, validation value %.4f", name, step_no, epoch, extra, score)
        return stopper.update(step_no, epoch, score, tie, snapshot, **extra)

    if stopper is not None:
        check()
    stop = False
    for _ in range(int(epochs)):
        parts = batches()
        steps_per_epoch = max(len(parts), 1)
        if bar is not None and bar.total is None:
            bar.total = steps_per_epoch * int(epochs)
        for i, batch in enumerate(parts):
            set_training(True)
            loss = float(step(batch))
            step_no, loss_sum, loss_n = step_no + 1, loss_sum + loss, loss_n + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", **({"best": f"{stopper.best[0]:.4f}"} if stopper else {}))
            last = i == len(parts) - 1
            if stopper is not None and (last or (eval_every and (i + 1) % int(eval_every) == 0)) and check():
                stop = True
                break
        if stop:
            break
    if bar is not None:
        bar.close()
    if stopper is not None:
        restore(stopper.best_state)
        logger.debug("%s: best validation value %.4f at epoch %s of %s run", name, stopper.best[0],
                     stopper.best_epoch, stopper.history[-1]["epoch"])
    set_training(False)
    return stopper


def module_snapshot(module) -> Callable[[], Any]:
    return lambda: copy.deepcopy(module.state_dict())


def optimiser_step(optimiser, loss, *, clip: float | None = None, params=None, scheduler=None) -> float:
    """One optimiser step on ``loss`` (optionally clipping the gradient norm of ``params`` and stepping a
    learning-rate ``scheduler``); returns the loss as a float."""
    import torch

    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(params, float(clip))
    optimiser.step()
    if scheduler is not None:
        scheduler.step()
    return float(loss.detach())


def fold_splits(data, folds: int, seed: int, validation_fraction: float = 0.2) -> list[tuple[Any, Any]]:
    """(fit, val) pairs for a cross-fitted ensemble: ``folds`` >= 2 disjoint validation folds, stratified by task
    (a task with fewer queries than folds keeps some in every fit part; a single-query task never validates);
    ``folds`` <= 1: one ``validation_split(validation_fraction, seed)``."""
    if int(folds) <= 1:
        return [data.validation_split(float(validation_fraction), int(seed))]
    k = int(folds)
    fold_of = data.fold_ids(k, int(seed), keep_one_in_fit=True)
    out = []
    for f in range(k):
        val = fold_of == f
        if val.any() and not val.all():
            out.append((data.subset(~val), data.subset(val)))
    if not out:
        raise ValueError(f"cannot carve validation folds from {len(data)} queries")
    return out


class TorchParams(TaskParams):
    """What the torch routers over embeddings (``mf``, ``graph``) take; each router sets its own defaults."""

    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    epochs: int = Field(200, ge=0, description="training epochs at most")
    weight_decay: float = Field(1e-2, ge=0, description="Adam weight decay")
    patience: int | None = Field(20, ge=0, description="validation evaluations without improvement tolerated "
                                                       "before stopping (None: never stop early)")
    residual: bool = Field(True, description="learn the residual over the per-task prior (the untrained model "
                                             "is task-best)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the query input")
    folds: int = Field(5, ge=1, description="cross-fitted members, one per disjoint validation fold (1: one "
                                            "validation_fraction split)")
    refit: bool = Field(False, description="with folds=1: retrain on all training queries for the chosen epochs")
    num_threads: ThreadCount = Field(DEFAULT_THREADS, description="torch/BLAS threads while fitting")


@dataclass
class Prelude:
    """What every fit of an ``mf``/``graph`` member starts from: the shuffling generator, the standardisation,
    the task prior (residual routers) and the tensors of the fit part (standardised embeddings, task indices,
    the target: reward minus prior)."""

    gen: Any
    mu: np.ndarray
    sd: np.ndarray
    prior: TaskPrior | None
    x: Any
    t: Any
    target: Any


class TorchRouter(Router):
    """What the torch routers over embeddings share: fitting an ensemble of members (one per validation fold,
    each trained by :func:`fit_loop` with early stopping, optionally refitted), the selection summary, the
    validation inputs, and numpy forms derived once per fitted or loaded ``state``.

    A subclass gives ``build_module``, ``_arch``, ``batches`` (one epoch's batches), ``batch_loss`` and
    ``utilities`` (the module's output on validation inputs); optionally ``training_inputs`` (extra tensors of
    the fit part) and ``member_state``."""

    uses_tasks = True

    Params = TorchParams

    def build_module(self, **arch):
        raise NotImplementedError

    def _arch(self, data) -> dict:
        raise NotImplementedError

    def batches(self, pre: Prelude, n: int) -> Sequence[Any]:
        raise NotImplementedError

    def batch_loss(self, module, pre: Prelude, extra: dict, batch):
        raise NotImplementedError

    def utilities(self, module, pre: Prelude, extra: dict, vx, vt):
        raise NotImplementedError

    def training_inputs(self, fit, pre: Prelude) -> dict:
        return {}

    def member_state(self, module, prior, stats: tuple[np.ndarray, np.ndarray], data) -> dict[str, Any]:
        """What one member keeps (picklable); ``data`` is the whole training split."""
        return {"weights": state_to_numpy(module), "mu": stats[0], "sd": stats[1],
                "prior": prior.to_dict() if prior is not None else None}

    def prelude(self, fit, seed: int) -> Prelude:
        import torch

        gen = seed_torch(seed)
        X = np.asarray(fit.X, dtype=np.float32)
        mu, sd = X.mean(0), X.std(0) + 1e-6
        y = fit.rewards_filled().astype(np.float32)
        prior = TaskPrior.fit(fit.tasks, fit.rewards_filled()) if self.hp.residual else None
        base = prior(fit.tasks, len(fit)).astype(np.float32) if prior is not None else np.zeros_like(y)
        return Prelude(gen, mu, sd, prior, torch.from_numpy((X - mu) / sd),
                       torch.from_numpy(task_index(fit.tasks, self.task_vocab, len(fit))), torch.from_numpy(y - base))

    def _train(self, fit, val, seed: int, *, epochs: int, early_stop: bool):
        """One member: (module, prior, (mu, sd), stopper); stopper is None without early stopping."""
        import torch

        pre = self.prelude(fit, seed)
        extra = self.training_inputs(fit, pre)
        module = self.build_module(**self._arch(fit))
        opt = torch.optim.Adam(module.parameters(), lr=self.hp.lr, weight_decay=self.hp.weight_decay)
        evaluate = None
        if early_stop:
            vx, vt, vbase, vy = self.val_inputs(val, pre.mu, pre.sd, pre.prior)

            def evaluate() -> tuple[float, float]:
                with torch.no_grad():
                    u = self.utilities(module, pre, extra, vx, vt).numpy().astype(np.float64) + vbase
                return routed_value(u, vy), -float(np.mean((u - vy) ** 2))

        stopper = fit_loop(epochs=epochs, batches=lambda: self.batches(pre, len(fit)),
                           step=lambda b: optimiser_step(opt, self.batch_loss(module, pre, extra, b)),
                           set_training=module.train, evaluate=evaluate, snapshot=module_snapshot(module),
                           restore=module.load_state_dict, patience=self.hp.patience, name=self.name)
        return module, pre.prior, (pre.mu, pre.sd), stopper

    def _fit(self, data, val) -> None:
        import torch  # noqa: F401  (loaded before the thread limit, so that it applies to torch too)

        t0 = time.perf_counter()
        splits = self.member_splits(data, val)
        refit = self.hp.refit and len(splits) == 1 and splits[0][0] is not data
        members, selected = [], []
        with limit_threads(self.hp.num_threads):
            for i, (fit, fval) in enumerate(splits):
                module, prior, stats, stopper = self._train(fit, fval, self.seed + i, epochs=self.hp.epochs,
                                                            early_stop=True)
                best_epoch = int(round(stopper.best_epoch))
                if refit:
                    module, prior, stats, _ = self._train(data, None, self.seed + i, epochs=best_epoch,
                                                          early_stop=False)
                members.append(self.member_state(module, prior, stats, data))
                selected.append((best_epoch, stopper.best[0], int(round(stopper.history[-1]["epoch"]))))
        self.state = {"arch": self._arch(data), "members": members}
        self.record_selection(selected, len(members), t0)

    def val_inputs(self, val, mu: np.ndarray, sd: np.ndarray, prior):
        """The validation split as (standardised embeddings, task indices) tensors, the prior's utilities (0
        without one) and the rewards routing is scored on."""
        import torch

        vx = torch.from_numpy((np.asarray(val.X, dtype=np.float32) - mu) / sd)
        vt = torch.from_numpy(task_index(val.tasks, self.task_vocab, len(val)))
        vbase = prior(val.tasks, len(val)) if prior is not None else 0.0
        return vx, vt, vbase, val.rewards_filled()

    def check_embeddings(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        d = self.state["arch"]["d"]
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"{self.name}: expected embeddings of shape (n, {d}), got {X.shape}")
        return X

    def member_splits(self, data, val) -> list[tuple[Any, Any]]:
        """One (fit, val) pair when a validation split is given, else ``folds`` of them (see fold_splits)."""
        if val is not None:
            return [(data, val)]
        return fold_splits(data, self.hp.folds, self.seed, self.hp.validation_fraction)

    def record_selection(self, selected: list[tuple[int, float, int]], n_members: int, t0: float) -> None:
        """``selected``: (best epoch, best validation value, epochs run) per member."""
        self.meta["selected"] = {"epoch": int(round(np.mean([s[0] for s in selected]))),
                                 "epochs": [int(s[0]) for s in selected],
                                 "val_value": float(np.mean([s[1] for s in selected])),
                                 "epochs_run": [int(s[2]) for s in selected],
                                 "fit_seconds": round(time.perf_counter() - t0, 3)}
        logger.info("%s: %d member(s), best epochs %s (mean validation value %.4f), %.1fs", self.name, n_members,
                    self.meta["selected"]["epochs"], self.meta["selected"]["val_value"], time.perf_counter() - t0)

    def modules(self) -> list:
        """The members' torch modules, rebuilt once from ``state`` (after fitting or loading)."""
        def build() -> list:
            out = []
            for member in self.state["members"]:
                module = self.build_module(**self.state["arch"])
                load_numpy_state(module, member["weights"])
                out.append(module.eval())
            return out

        return self.derived("modules", build)
