"""Small shared helpers for the torch routers (``mf``, ``graph``): seeding, thread limits, early stopping, and
moving weights to and from plain numpy arrays (so a router's state stays a picklable dict).

Nothing here imports torch at module import time; every helper imports it on first call.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fusion.routers.base import Router

logger = logging.getLogger(__name__)


def seed_torch(seed: int):
    """Seed torch's global generator; returns a dedicated ``torch.Generator`` for shuffling/masking."""
    import torch

    torch.manual_seed(int(seed))
    return torch.Generator().manual_seed(int(seed))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads to ``n`` for the block (``None``/0: leave as is), restoring afterwards."""
    import torch

    before = torch.get_num_threads()
    if n and int(n) > 0 and int(n) != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def state_to_numpy(module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def load_numpy_state(module, state: dict[str, np.ndarray]) -> None:
    import torch

    module.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in state.items()})


@dataclass
class EarlyStopping:
    """Keep the weights of the best validation epoch (score first, tie-break second, both higher-is-better).

    Epoch 0 is the untrained model: for residual routers that is the per-task prior, so training only replaces
    it when validation says the learned part helps."""

    patience: int
    min_delta: float = 1e-9
    best: tuple[float, float] = (-np.inf, -np.inf)
    best_epoch: int = -1
    best_state: dict[str, Any] | None = None
    bad: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def update(self, epoch: int, score: float, tiebreak: float, module, **extra: float) -> bool:
        """Record an epoch; returns True when training should stop."""
        self.history.append({"epoch": epoch, "score": float(score), "tiebreak": float(tiebreak), **extra})
        better = score > self.best[0] + self.min_delta or (
            abs(score - self.best[0]) <= self.min_delta and tiebreak > self.best[1] + self.min_delta
        )
        if better:
            self.best, self.best_epoch, self.bad = (float(score), float(tiebreak)), epoch, 0
            self.best_state = copy.deepcopy(module.state_dict())
            return False
        self.bad += 1
        return self.bad > self.patience

    def restore(self, module) -> None:
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def train_early_stopping(
    module,
    run_epoch: Callable[[int], float],
    evaluate: Callable[[], tuple[float, float]],
    *,
    epochs: int,
    patience: int,
    name: str = "router",
) -> EarlyStopping:
    """Run ``run_epoch(epoch) -> train loss`` up to ``epochs`` times, scoring ``evaluate() -> (score, tiebreak)``
    on the validation split before training (epoch 0) and after every epoch; restores the best weights."""
    stopper = EarlyStopping(patience=int(patience))
    module.eval()
    score, tie = evaluate()
    stopper.update(0, score, tie, module, loss=float("nan"))
    for epoch in range(1, int(epochs) + 1):
        module.train()
        loss = run_epoch(epoch)
        module.eval()
        score, tie = evaluate()
        if stopper.update(epoch, score, tie, module, loss=loss):
            break
    stopper.restore(module)
    module.eval()
    logger.info("%s: best validation value %.4f at epoch %d of %d run", name, stopper.best[0], stopper.best_epoch,
                stopper.history[-1]["epoch"])
    return stopper


def train_epochs(module, run_epoch: Callable[[int], float], epochs: int) -> None:
    """Run ``run_epoch`` exactly ``epochs`` times (a refit for the epoch count chosen on validation)."""
    for epoch in range(1, int(epochs) + 1):
        module.train()
        run_epoch(epoch)
    module.eval()


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


class TorchRouter(Router):
    """What the torch routers share: defaults per parameter, fitting an ensemble of members (one per validation
    fold, each early-stopped, optionally refitted), the selection summary, the validation inputs, and numpy forms
    derived once per fitted or loaded ``state``.

    A subclass gives ``build_module``, ``_arch``, ``_train(fit, val, seed, epochs=, early_stop=)`` returning
    ``(module, prior, (mu, sd), stopper)`` (stopper None without early stopping), and ``member_state``."""

    defaults: ClassVar[dict[str, Any]] = {}

    def p(self, key: str):
        return self.param(key, self.defaults[key])

    def build_module(self, **arch):
        raise NotImplementedError

    def _arch(self, data) -> dict:
        raise NotImplementedError

    def _train(self, fit, val, seed: int, *, epochs: int, early_stop: bool):
        raise NotImplementedError

    def check_params(self) -> None:
        """Raise ValueError for a bad parameter before any training."""

    def member_state(self, module, prior, stats: tuple[np.ndarray, np.ndarray], data) -> dict[str, Any]:
        """What one member keeps (picklable); ``data`` is the whole training split."""
        return {"weights": state_to_numpy(module), "mu": stats[0], "sd": stats[1],
                "prior": prior.to_dict() if prior is not None else None}

    def _fit(self, data, val) -> None:
        self.check_params()
        t0 = time.perf_counter()
        splits = self.member_splits(data, val)
        refit = bool(self.p("refit")) and len(splits) == 1 and splits[0][0] is not data
        members, selected = [], []
        with torch_threads(self.p("num_threads")):
            for i, (fit, fval) in enumerate(splits):
                module, prior, stats, stopper = self._train(fit, fval, self.seed + i, epochs=int(self.p("epochs")),
                                                            early_stop=True)
                if refit:
                    module, prior, stats, _ = self._train(data, None, self.seed + i, epochs=stopper.best_epoch,
                                                          early_stop=False)
                members.append(self.member_state(module, prior, stats, data))
                selected.append((stopper.best_epoch, stopper.best[0], stopper.history[-1]["epoch"]))
        self.state = {"arch": self._arch(data), "members": members}
        self.record_selection(selected, len(members), t0)

    def val_inputs(self, val, mu: np.ndarray, sd: np.ndarray, prior):
        """The validation split as (standardised embeddings, task indices) tensors, the prior's utilities (0
        without one) and the rewards routing is scored on."""
        import torch

        from fusion.routers.features import task_index

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
        return fold_splits(data, int(self.p("folds")), self.seed, float(self.p("validation_fraction")))

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
