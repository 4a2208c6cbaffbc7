"""Matrix-factorisation router (RouteLLM's MF, generalised to N candidates).

utility(q, c) = <P x_q + e_task(q), v_c> + b_c  [+ prior(task(q), c)]

``x_q`` is the (standardised) query embedding, ``P`` a learned projection to ``dim``, ``e_task`` a learned task
embedding (zero for a task never seen in training), ``v_c``/``b_c`` a learned vector and bias per candidate. With
``residual`` (the default) the factorisation learns a residual over the per-task mean reward (``TaskPrior``), so
the untrained model *is* task-best and training only moves away from it where the embedding says more.

Trained with MSE on ``rewards_filled()`` (Adam with weight decay, minibatches of queries); early stopping on the
validation split by ``routed_value`` (the mean true reward of the argmax choice) with a patience, keeping the best
epoch's weights (epoch 0, the untrained model, included). By default (``folds=5``) this is done once per disjoint,
task-stratified validation fold and the router averages the five members' utilities (a cross-fitted ensemble: every
training query is used for fitting and, once, for model selection; see docs/benchmarks.md). With ``folds=1`` one ``validation_fraction`` split is used, and ``refit`` then
retrains from the same initialisation on all the training queries for the chosen number of epochs.
``loss="centred"`` fits only the differences between candidates (the per-query mean error is removed).

The model is linear in the embedding, so prediction needs no torch: the members' weights fold into one
``(d, c)`` matrix, one bias and one ``(T + 1, c)`` per-task table (task embedding, prior and the standardisation
shift), computed once from ``state`` (:func:`fold_members`). Fitting runs with ``num_threads`` torch threads
(default 1, see :func:`fusion.levels.query.features.limit_threads`). The training loop is :func:`fit_loop`.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from pydantic import Field

from fusion.levels.query.base import ROUTERS
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import TaskPrior, task_index
from fusion.levels.query.torch_fit import Prelude, TorchParams, TorchRouter

logger = logging.getLogger(__name__)


class MFParams(TorchParams):
    dim: int = Field(64, ge=1, description="size of the latent space")
    batch_size: int = Field(128, ge=1, description="queries per minibatch")
    task_embedding: bool = Field(True, description="learn a task vector added to the projected query")
    loss: Literal["mse", "centred"] = Field("mse", description="'centred' fits only differences between "
                                                               "candidates (the per-query mean error removed)")


def _mf_module(d: int, c: int, n_tasks: int, dim: int, use_task: bool, dropout: float):
    import torch
    from torch import nn

    class MF(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.proj = nn.Linear(d, dim, bias=False)
            self.task = nn.Embedding(n_tasks + 1, dim, padding_idx=n_tasks) if use_task else None
            if self.task is not None:
                with torch.no_grad():
                    self.task.weight.normal_(0.0, 0.1)
                    self.task.weight[n_tasks].zero_()
            self.cand = nn.Parameter(0.01 * torch.randn(c, dim))
            self.bias = nn.Parameter(torch.zeros(c))

        def forward(self, x, t):
            q = self.proj(self.drop(x))
            if self.task is not None:
                q = q + self.task(t)
            return q @ self.cand.T + self.bias

    return MF()


@ROUTERS.register("mf")
class MFRouter(TorchRouter):
    name = "mf"
    Params = MFParams

    def build_module(self, **arch):
        return _mf_module(**arch)

    # fitting -----------------------------------------------------------------------------------------------
    def _arch(self, data: RoutingData) -> dict:
        return {"d": int(data.X.shape[1]), "c": len(data.candidates), "n_tasks": len(self.task_vocab),
                "dim": self.hp.dim, "use_task": self.hp.task_embedding, "dropout": self.hp.dropout}

    def batches(self, pre: Prelude, n: int) -> list:
        import torch

        perm = torch.randperm(n, generator=pre.gen)
        return [perm[start:start + self.hp.batch_size] for start in range(0, n, self.hp.batch_size)]

    def batch_loss(self, module, pre: Prelude, extra: dict, idx):
        import torch

        diff = module(pre.x[idx], pre.t[idx]) - pre.target[idx]
        if self.hp.loss == "centred":  # only the differences between candidates matter for routing
            diff = diff - diff.mean(1, keepdim=True)
        return torch.mean(diff ** 2)

    def utilities(self, module, pre: Prelude, extra: dict, vx, vt):
        return module(vx, vt)

    # prediction --------------------------------------------------------------------------------------------
    def folded(self) -> dict[str, np.ndarray]:
        """The ensemble as one linear map (see :func:`fold_members`), built once per fitted or loaded state."""
        return self.derived("folded", lambda: fold_members(self.state["members"], self.task_vocab))

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        """The mean over the ensemble members (one per validation fold) of each member's utilities."""
        X = self.check_embeddings(X)
        f = self.folded()
        return X.astype(np.float64) @ f["A"] + f["task_rows"][task_index(tasks, self.task_vocab, len(X))]


def fold_members(members: list[dict], vocab: list[str]) -> dict[str, np.ndarray]:
    """The mean of the members' utilities as ``X @ A + task_rows[task]``.

    A member computes ``u = ((x - mu) / sd) P^T V^T + b + e_t V^T + prior_t`` (``P`` projection, ``V`` candidate
    vectors, ``e_t`` the task embedding, zero for an unseen task; dropout is off at prediction), so
    ``A = (P / sd)^T V^T`` and the rest depends on the task only."""
    A, rows = 0.0, 0.0
    for m in members:
        w = {k: np.asarray(v, dtype=np.float64) for k, v in m["weights"].items()}
        P, V = w["proj.weight"], w["cand"]
        mu, sd = np.asarray(m["mu"], dtype=np.float64), np.asarray(m["sd"], dtype=np.float64)
        A_m = (P / sd[None, :]).T @ V.T  # (d, c)
        r = np.tile(w["bias"] - (mu / sd) @ P.T @ V.T, (len(vocab) + 1, 1))
        if "task.weight" in w:  # row T is the padding row (zero): an unseen task
            r = r + w["task.weight"] @ V.T
        if m["prior"] is not None:
            r = r + TaskPrior.from_dict(m["prior"]).rows_for(vocab)
        A, rows = A + A_m, rows + r
    return {"A": A / len(members), "task_rows": rows / len(members)}
