"""GraphRouter (Feng et al., "GraphRouter: a graph-based router for LLM selections", ICLR 2025) in plain PyTorch.

A heterogeneous graph of task, query and candidate nodes. Every training query has an edge to its task and one
edge to each candidate, carrying the edge features (reward, cost_n, perf_n) of that (query, candidate) outcome.
Routing is edge prediction: the reward of a new query's edge to each candidate.

Node features: a query is its (standardised) embedding; a task is the mean embedding of its training queries plus
a learned task vector; a candidate is a learned vector. (Candidate descriptions are not encoded: this router loads
no model.) Two rounds of message passing:

1. task -> query: ``h_q = relu(W_q x_q + U t_task(q))`` (a query of an unseen task has no task edge: ``U t = 0``);
2. query -> candidate along the observed edges: a message ``relu(A h_q + B e_qc)`` per edge, averaged over all
   the candidate's edges (global state) and over its edges with queries of each task (task-conditioned state),
   so a candidate node reads ``h_c(t) = v_c + M_g mean_all + M_s mean_task(t)`` (global only for unseen tasks).

An MLP on ``[h_q, h_c, h_q * h_c]`` predicts the edge's reward; with ``residual`` (default) it predicts the residual
over the per-task mean reward (``TaskPrior``), so the untrained model is task-best. To keep labels out of the
messages, each epoch partitions the training queries into ``round(1 / mask_fraction)`` folds: each step predicts
the edges of one fold from messages carried by the edges of the other folds (as a new query at routing time has no
edges of its own). Early stopping on the validation split by ``routed_value``. After training, the task and
candidate node states are computed once from all training edges and stored, so routing a query only runs the
query encoder and the edge MLP. Defaults: ``refit`` retrains on all training queries for the selected epoch count; ``folds`` > 1 instead averages one model
per disjoint validation fold (a cross-fitted ensemble; ``folds`` times the training time).

Prediction runs in numpy from the stored weights (no torch call per query; :func:`numpy_member`). Fitting runs
with ``num_threads`` torch threads (default 1, see :func:`fusion.levels.query.features.limit_threads`); the training
loop is :func:`fusion.levels.query.torch_fit.fit_loop`.
"""

from __future__ import annotations

import logging

import numpy as np
from pydantic import Field

from fusion.levels.query.base import ROUTERS
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import TaskPrior, task_index
from fusion.levels.query.torch_fit import Prelude, TorchParams, TorchRouter

logger = logging.getLogger(__name__)


class GraphParams(TorchParams):
    hidden: int = Field(64, ge=1, description="size of the node states")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate")
    epochs: int = Field(60, ge=0, description="training epochs at most")
    weight_decay: float = Field(1e-3, ge=0, description="Adam weight decay")
    patience: int | None = Field(15, ge=0, description="validation evaluations without improvement tolerated "
                                                       "before stopping (None: never stop early)")
    mask_fraction: float = Field(0.25, gt=0, lt=1, description="share of the training queries whose edges are "
                                                                "predicted (not passed as messages) per step")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout on the query input and the edge MLP")
    folds: int = Field(1, ge=1, description="cross-fitted members, one per disjoint validation fold")
    refit: bool = Field(True, description="with folds=1: retrain on all training queries for the chosen epochs")


EDGE_FEATURES = ("reward", "cost_n", "perf_n")


def edge_features(data: RoutingData) -> np.ndarray:
    """(n, c, 3) features of each (query, candidate) edge: reward (errors filled), cost_n, perf_n (NaN -> 0)."""
    return np.stack([data.rewards_filled(), np.nan_to_num(data.cost_n, nan=0.0), np.nan_to_num(data.perf_n, nan=0.0)],
                    axis=-1).astype(np.float32)


def task_means(X: np.ndarray, tidx: np.ndarray, n_tasks: int) -> np.ndarray:
    """(n_tasks, d) mean embedding of each task's queries (zero for a task with none)."""
    out = np.zeros((n_tasks, X.shape[1]), dtype=np.float32)
    for t in range(n_tasks):
        m = tidx == t
        if m.any():
            out[t] = X[m].mean(0)
    return out


def _graph_module(d: int, c: int, n_tasks: int, hidden: int, dropout: float):
    import torch
    from torch import nn

    h = hidden

    class GraphRouterNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.drop = nn.Dropout(dropout)
            self.enc_q = nn.Linear(d, h)
            self.enc_t = nn.Linear(d, h)
            self.task_emb = nn.Parameter(0.1 * torch.randn(n_tasks, h))
            self.task_to_query = nn.Linear(h, h, bias=False)
            self.cand_emb = nn.Parameter(0.1 * torch.randn(c, h))
            self.msg_q = nn.Linear(h, h)
            self.msg_e = nn.Linear(len(EDGE_FEATURES), h, bias=False)
            self.agg_global = nn.Linear(h, h)
            self.agg_task = nn.Linear(h, h, bias=False)
            self.head = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, 1))

        def tasks(self, tmean):
            """(T + 1, h) task node states; the last row (unseen task) is zero."""
            t = torch.relu(self.enc_t(tmean) + self.task_emb)
            return torch.cat([t, torch.zeros(1, h, dtype=t.dtype)], 0)

        def queries(self, x, tq, tstate):
            """Round 1, task -> query: the query state given its task node (row T: no task edge)."""
            return torch.relu(self.enc_q(self.drop(x)) + self.task_to_query(tstate)[tq])

        def candidates(self, hq, tq, edges):
            """Round 2, query -> candidate along the message edges: (T + 1, c, h) task-conditioned candidate
            states (row T: global messages only)."""
            m = torch.relu(self.msg_q(hq)[:, None, :] + self.msg_e(edges))  # (m, c, h)
            glob = self.cand_emb + self.agg_global(m.mean(0))  # (c, h)
            per = torch.zeros(n_tasks + 1, c, h, dtype=m.dtype).index_add_(0, tq, m)
            cnt = torch.bincount(tq, minlength=n_tasks + 1).to(m.dtype)
            per = per / cnt.clamp(min=1.0)[:, None, None]
            has = (cnt > 0).to(m.dtype)[:, None, None]
            return glob[None] + has * self.agg_task(per)

        def states(self, x_msg, t_msg, e_msg, tmean):
            tstate = self.tasks(tmean)
            hq = self.queries(x_msg, t_msg, tstate)
            return tstate, self.candidates(hq, t_msg, e_msg)

        def predict(self, x, tq, tstate, cstate):
            hq = self.queries(x, tq, tstate)[:, None, :]  # (n, 1, h)
            hc = cstate[tq]  # (n, c, h)
            hq = hq.expand_as(hc)
            return self.head(torch.cat([hq, hc, hq * hc], -1)).squeeze(-1)

    return GraphRouterNet()


@ROUTERS.register("graph")
class GraphRouter(TorchRouter):
    name = "graph"
    Params = GraphParams

    def build_module(self, **arch):
        return _graph_module(**arch)

    # fitting -----------------------------------------------------------------------------------------------
    def member_state(self, module, prior, stats, data: RoutingData) -> dict:
        # node states from every training edge (the validation queries' too), computed once
        tstate, cstate = self._node_states(module, data, *stats)
        return {**super().member_state(module, prior, stats, data), "task_state": tstate, "cand_state": cstate}

    def _arch(self, data: RoutingData) -> dict:
        return {"d": int(data.X.shape[1]), "c": len(data.candidates), "n_tasks": len(self.task_vocab),
                "hidden": self.hp.hidden, "dropout": self.hp.dropout}

    def _graph_tensors(self, data: RoutingData, mu: np.ndarray, sd: np.ndarray):
        import torch

        X = (np.asarray(data.X, dtype=np.float32) - mu) / sd
        tidx = task_index(data.tasks, self.task_vocab, len(data))
        tmean = task_means(X, tidx, len(self.task_vocab))
        return (torch.from_numpy(X), torch.from_numpy(tidx), torch.from_numpy(edge_features(data)),
                torch.from_numpy(tmean))

    def _node_states(self, module, data: RoutingData, mu, sd) -> tuple[np.ndarray, np.ndarray]:
        import torch

        x, t, e, tmean = self._graph_tensors(data, mu, sd)
        module.eval()
        with torch.no_grad():
            tstate, cstate = module.states(x, t, e, tmean)
        return tstate.numpy().copy(), cstate.numpy().copy()

    def training_inputs(self, fit: RoutingData, pre: Prelude) -> dict:
        import torch

        tmean = task_means(pre.x.numpy(), pre.t.numpy(), len(self.task_vocab))
        return {"e": torch.from_numpy(edge_features(fit)), "tmean": torch.from_numpy(tmean)}

    def batches(self, pre: Prelude, n: int) -> list:
        """The training queries in ``round(1 / mask_fraction)`` folds: a step predicts one fold's edges from the
        messages of the others."""
        import torch

        k = max(2, min(n, int(round(1.0 / self.hp.mask_fraction))))
        return list(torch.tensor_split(torch.randperm(n, generator=pre.gen), k))

    def batch_loss(self, module, pre: Prelude, extra: dict, fold):
        import torch

        msg = torch.ones(len(pre.x), dtype=torch.bool)
        msg[fold] = False
        tstate, cstate = module.states(pre.x[msg], pre.t[msg], extra["e"][msg], extra["tmean"])
        pred = module.predict(pre.x[fold], pre.t[fold], tstate, cstate)
        return torch.mean((pred - pre.target[fold]) ** 2)

    def utilities(self, module, pre: Prelude, extra: dict, vx, vt):
        tstate, cstate = module.states(pre.x, pre.t, extra["e"], extra["tmean"])
        return module.predict(vx, vt, tstate, cstate)

    # prediction --------------------------------------------------------------------------------------------
    def numpy_members(self) -> list[dict[str, np.ndarray]]:
        """The members in numpy form (see :func:`numpy_member`), built once per fitted or loaded state."""
        return self.derived("numpy", lambda: [numpy_member(m, self.task_vocab) for m in self.state["members"]])

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        """The mean over the ensemble members (one per validation fold) of each member's utilities."""
        s = self.state
        X = self.check_embeddings(X)
        t = task_index(tasks, self.task_vocab, len(X))
        total = np.zeros((len(X), s["arch"]["c"]))
        for m in self.numpy_members():
            hq = X @ m["Wq"]
            hq += m["q_rows"][t]
            np.maximum(hq, 0, out=hq)
            hc = m["cand"][t]  # (n, c, h)
            z = (hq @ m["W_q"])[:, None, :] + m["hc_rows"][t] + (hq[:, None, :] * hc) @ m["W_qc"]
            np.maximum(z, 0, out=z)
            total += (z @ m["w_out"] + m["b_out"]).astype(np.float64)
            if m["prior_rows"] is not None:
                total += m["prior_rows"][t]
        return total / len(s["members"])


def numpy_member(member: dict, vocab: list[str]) -> dict[str, np.ndarray]:
    """One member's routing computation as float32 numpy arrays, with everything that depends only on the task
    precomputed per task row (row T: an unseen task): the query encoder with the standardisation folded in and
    the task -> query message added, and the candidate states' share of the edge MLP's first layer (dropout is
    off at prediction)."""
    w = {k: np.asarray(v, dtype=np.float32) for k, v in member["weights"].items()}
    mu, sd = np.asarray(member["mu"], dtype=np.float32), np.asarray(member["sd"], dtype=np.float32)
    tstate = np.asarray(member["task_state"], dtype=np.float32)  # (T + 1, h)
    cstate = np.asarray(member["cand_state"], dtype=np.float32)  # (T + 1, c, h)
    h = tstate.shape[1]
    W0 = w["head.0.weight"]  # (h, 3h): [h_q, h_c, h_q * h_c]
    prior = TaskPrior.from_dict(member["prior"]).rows_for(vocab) if member["prior"] is not None else None
    return {
        "Wq": np.ascontiguousarray((w["enc_q.weight"] / sd[None, :]).T),
        "q_rows": w["enc_q.bias"] - (mu / sd) @ w["enc_q.weight"].T + tstate @ w["task_to_query.weight"].T,
        "cand": cstate,
        "W_q": np.ascontiguousarray(W0[:, :h].T),
        "hc_rows": cstate @ W0[:, h:2 * h].T + w["head.0.bias"],
        "W_qc": np.ascontiguousarray(W0[:, 2 * h:].T),
        "w_out": w["head.3.weight"][0],
        "b_out": w["head.3.bias"][0],
        "prior_rows": prior,
    }
