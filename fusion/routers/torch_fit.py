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
    """What the torch routers share: defaults per parameter, the (fit, val) splits of their members, the
    selection summary, and rebuilding the members' modules from the numpy weights in ``state``."""

    defaults: ClassVar[dict[str, Any]] = {}

    def p(self, key: str):
        return self.param(key, self.defaults[key])

    def build_module(self, **arch):
        raise NotImplementedError

    def member_splits(self, data, val) -> list[tuple[Any, Any]]:
        """One (fit, val) pair when a validation split is given, else ``folds`` of them (see fold_splits)."""
        if val is not None:
            return [(data, val)]
        return fold_splits(data, int(self.p("folds")), self.seed, float(self.p("validation_fraction")))

    def record_selection(self, selected: list[tuple[int, float, int]], n_members: int, t0: float) -> None:
        """``selected``: (best epoch, best validation value, epochs run) per member."""
        self._modules = None
        self.meta["selected"] = {"epoch": int(round(np.mean([s[0] for s in selected]))),
                                 "epochs": [int(s[0]) for s in selected],
                                 "val_value": float(np.mean([s[1] for s in selected])),
                                 "epochs_run": [int(s[2]) for s in selected],
                                 "fit_seconds": round(time.perf_counter() - t0, 3)}
        logger.info("%s: %d member(s), best epochs %s (mean validation value %.4f), %.1fs", self.name, n_members,
                    self.meta["selected"]["epochs"], self.meta["selected"]["val_value"], time.perf_counter() - t0)

    def modules(self) -> list:
        """The members' modules, rebuilt once from ``state`` (after fitting or loading)."""
        if getattr(self, "_modules", None) is None:
            self._modules = []
            for member in self.state["members"]:
                module = self.build_module(**self.state["arch"])
                load_numpy_state(module, member["weights"])
                self._modules.append(module.eval())
        return self._modules
