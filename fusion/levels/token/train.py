"""Training the router: SFT, then mix training (SFT and CDPO batches interleaved, one optimiser).

- **SFT loss** = the router LM's next-token cross-entropy on the completion + λ · routing loss, the routing loss
  ``−Σ_i softmax(W h_t)_i · log π_i(gold_t)`` on the *informative* positions only (where the experts' greedy
  tokens disagree), with the experts' log-probs read from the precomputed statistics.
- **CDPO** = DPO on the router LM against the router after SFT (its log-probs computed once, when the mix phase
  starts), with the selected expert's summed log-probs of the chosen and the rejected answer added to the margin as
  a constant (``z = β·[(θ_w − ref_w) − (θ_l − ref_l)] + β·(e_w − e_l)``): the router learns what the expert it
  calls gets wrong. The expert at each position is the head's argmax on a detached hidden state, so the routing head
  gets no CDPO gradient.
- ``fused=False`` trains the paper's "fine-tuned model without routing" baseline on the same data and schedule:
  no routing loss, plain DPO.

A plain PyTorch loop, not TRL's trainers: the CDPO margin needs a per-pair bias from the experts' statistics and
a loss that mixes both phases in one optimiser, neither of which TRL's ``DPOTrainer`` exposes (it computes the
margin inside ``dpo_loss`` from policy and reference log-probs only). A checkpoint (weights, optimiser, step,
the reference log-probs, the history) is written every ``save_steps`` steps; a killed run resumes from it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fusion.core.identity import digest as identity_digest
from fusion.levels.token.data import CHOSEN, REJECTED, SFT
from fusion.levels.token.losses import (
    cdpo_loss,
    completion_ce,
    routing_loss,
    selected_expert_logp,
    sequence_logp,
)
from fusion.levels.token.stats import informative_mask

logger = logging.getLogger(__name__)
CHECKPOINT = "checkpoint.pt"
AFTER_SFT = "after_sft.pt"  # the router when the SFT phase ended: the paper's routing-only ablation routes with it


@dataclass
class Batch:
    ids: torch.Tensor    # [B, L] right-padded
    attn: torch.Tensor   # [B, L]
    comp: torch.Tensor   # [B, L-1] position k predicts a completion token k+1
    elp: torch.Tensor    # [B, L-1, E] each expert's log-prob of that token
    info: torch.Tensor   # [B, L-1] the experts' greedy tokens disagree there


def make_batch(rows: pd.DataFrame, stats: dict[str, pd.DataFrame], names: list[str], device="cpu") -> Batch:
    B, L, E = len(rows), max(len(x) for x in rows["input_ids"]), len(names)
    ids = torch.zeros((B, L), dtype=torch.long)
    attn = torch.zeros((B, L), dtype=torch.long)
    comp = torch.zeros((B, L - 1), dtype=torch.bool)
    elp = torch.zeros((B, L - 1, E))
    info = torch.zeros((B, L - 1), dtype=torch.bool)
    for b, (sid, x, p) in enumerate(zip(rows["seq_id"], rows["input_ids"], rows["prompt_len"], strict=True)):
        n = len(x)
        ids[b, :n] = torch.tensor(np.asarray(x, dtype=np.int64))
        attn[b, :n] = 1
        comp[b, p - 1:n - 1] = True
        lp = np.stack([np.asarray(stats[e].at[sid, "logp"], np.float32) for e in names])  # [E, n-p]
        gr = np.stack([np.asarray(stats[e].at[sid, "greedy"]) for e in names])
        elp[b, p - 1:n - 1] = torch.from_numpy(lp.T.copy())
        info[b, p - 1:n - 1] = torch.from_numpy(informative_mask(gr))
    return Batch(ids.to(device), attn.to(device), comp.to(device), elp.to(device), info.to(device))


def sft_loss(router, batch: Batch, *, routing_weight: float, vocab_size: int) -> tuple[torch.Tensor, dict]:
    """Run the router over ``batch``; the completion cross-entropy + λ · the routing loss (:mod:`.losses`)."""
    out = router(batch.ids, attention_mask=batch.attn)
    ce = completion_ce(out.logits[:, :-1, :vocab_size], batch.ids[:, 1:], batch.comp)
    parts = {"ce": float(ce.detach()), "informative": int(batch.info.sum())}
    loss = ce
    if routing_weight > 0 and bool(batch.info.any()):
        routing = routing_loss(out.route_logits[:, :-1], batch.elp, batch.info)
        loss = ce + routing_weight * routing
        parts["routing"] = float(routing.detach())
    return loss, parts


def sequence_logps(router, batch: Batch, *, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The router LM's summed log-prob of each completion (with gradient), and the summed log-prob of the experts
    the head selects at each position (a constant)."""
    out = router(batch.ids, attention_mask=batch.attn)
    theta = sequence_logp(out.logits[:, :-1, :vocab_size], batch.ids[:, 1:], batch.comp)
    expert = selected_expert_logp(out.route_logits[:, :-1].detach(), batch.elp, batch.comp)
    return theta, expert


def cdpo_step_loss(router, batch: Batch, ref: torch.Tensor, *, beta: float, vocab_size: int,
                   expert_bias: bool = True) -> tuple[torch.Tensor, dict]:
    """``batch``: the chosen sequences of the pairs, then their rejected ones (same order); ``ref``: the
    reference log-probs of the same rows. The loss is :func:`.losses.cdpo_loss` (plain DPO without the expert
    bias)."""
    theta, expert = sequence_logps(router, batch, vocab_size=vocab_size)
    n = theta.shape[0] // 2
    bias = {"expert_chosen": expert[:n], "expert_rejected": expert[n:]} if expert_bias else {}
    loss, z = cdpo_loss(theta[:n], theta[n:], ref[:n], ref[n:], beta=beta, **bias)
    z = z.detach()
    return loss, {"dpo": float(loss.detach()), "pref_accuracy": float((z > 0).float().mean()),
                  "margin": float(z.mean())}


@dataclass
class TrainOutcome:
    steps: int
    history: list[dict] = field(default_factory=list)
    sft_examples: int = 0
    pairs: int = 0

    def first(self, key: str) -> float | None:
        return next((h[key] for h in self.history if key in h), None)

    def last(self, key: str) -> float | None:
        return next((h[key] for h in reversed(self.history) if key in h), None)

    def metrics(self) -> dict:
        out = {"steps": self.steps, "sft_examples": self.sft_examples, "pairs": self.pairs}
        for key in ("ce", "routing", "dpo", "pref_accuracy"):
            for which, v in (("first", self.first(key)), ("last", self.last(key))):
                if v is not None:
                    out[f"{which}_{key}"] = v
        return out


def schedule(n_sft: int, n_pairs: int, cfg, seed: int) -> list[tuple[str, list[int]]]:
    """The batches of the run, fixed by the seed (a resumed run takes the same ones): ``sft_steps`` SFT batches,
    then ``mix_steps`` steps alternating preference and SFT batches (SFT only when there are no pairs)."""
    rng = np.random.default_rng(seed)

    def stream(n: int, size: int):
        while True:
            perm = rng.permutation(n)
            for i in range(0, n - n % size if n >= size else n, size):
                yield perm[i:i + size].tolist()

    sft, pref = stream(n_sft, cfg.batch_size), stream(n_pairs, cfg.batch_size) if n_pairs else None
    steps = [("sft", next(sft)) for _ in range(cfg.sft_steps)]
    for i in range(cfg.mix_steps):
        steps.append(("pref", next(pref)) if pref is not None and i % 2 == 0 else ("sft", next(sft)))
    return steps


def fingerprint(digest: str, stats_manifest: dict, cfg, *, fused: bool, init: str) -> str:
    return identity_digest({"sequences": digest, "experts": stats_manifest.get("experts"),
                            "order": stats_manifest.get("order"), "cfg": cfg.model_dump(mode="json"), "fused": fused,
                            "init": init})


def _save(path: Path, state: dict) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    tmp.replace(path)


def train_router(router, sequences: pd.DataFrame, stats: dict[str, pd.DataFrame], names: list[str], cfg, *,
                 vocab_size: int, work: Path, fp: str, fused: bool = True,
                 on_step: Callable[[int, dict], None] | None = None) -> TrainOutcome:
    """Train ``router`` in place (see the module's docstring); checkpoints in ``work``."""
    sft = sequences[sequences["kind"] == SFT].reset_index(drop=True)
    chosen = sequences[sequences["kind"] == CHOSEN].set_index("pair_id")
    rejected = sequences[sequences["kind"] == REJECTED].set_index("pair_id")
    pair_ids = sorted(set(chosen.index) & set(rejected.index))
    if sft.empty:
        raise ValueError("no SFT examples to train the router on")
    device = router.lm.device
    torch.manual_seed(cfg.seed)
    params = [p for p in router.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    plan = schedule(len(sft), len(pair_ids), cfg, cfg.seed)
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / CHECKPOINT
    start, history, ref = 0, [], None
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state.get("fingerprint") == fp:
            router.lm.load_state_dict(state["lm"])
            router.head.load_state_dict(state["head"])
            opt.load_state_dict(state["opt"])
            start, history, ref = state["step"], state["history"], state["ref"]
            logger.info("tokenroute: resuming at step %d of %d from %s", start, len(plan), ckpt)
        else:
            logger.info("tokenroute: inputs changed since the checkpoint in %s: starting afresh", work)
            ckpt.unlink()

    def pair_batch(idx: list[int]) -> tuple[Batch, list[str]]:
        pids = [pair_ids[i] for i in idx]
        rows = pd.concat([chosen.loc[pids], rejected.loc[pids]]).reset_index()
        return make_batch(rows, stats, names, device), list(rows["seq_id"])

    router.train()
    for step in range(start, len(plan)):
        kind, idx = plan[step]
        if kind == "pref" and ref is None:  # the reference: the router after SFT, computed once
            ref = {}
            router.eval()
            with torch.no_grad():
                for i in range(0, len(pair_ids), cfg.batch_size):
                    b, sids = pair_batch(list(range(i, min(i + cfg.batch_size, len(pair_ids)))))
                    theta, _ = sequence_logps(router, b, vocab_size=vocab_size)
                    ref.update(zip(sids, theta.tolist(), strict=True))
            router.train()
        if kind == "sft":
            loss, parts = sft_loss(router, make_batch(sft.iloc[idx], stats, names, device),
                                   routing_weight=cfg.routing_weight if fused else 0.0, vocab_size=vocab_size)
        else:
            b, sids = pair_batch(idx)
            loss, parts = cdpo_step_loss(router, b, torch.tensor([ref[s] for s in sids], device=device), beta=cfg.beta,
                                    vocab_size=vocab_size, expert_bias=fused)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        entry = {"step": step + 1, "phase": "sft" if step < cfg.sft_steps else "mix", "kind": kind,
                 "loss": float(loss.detach()), **parts}
        history.append(entry)
        if on_step is not None:
            on_step(step + 1, entry)
        if step + 1 == cfg.sft_steps and cfg.mix_steps:
            _save(work / AFTER_SFT, {"fingerprint": fp, "lm": router.lm.state_dict(), "head": router.head.state_dict()})
        if (step + 1) % cfg.save_steps == 0 or step + 1 == len(plan):
            _save(ckpt, {"fingerprint": fp, "step": step + 1, "lm": router.lm.state_dict(),
                         "head": router.head.state_dict(), "opt": opt.state_dict(), "history": history, "ref": ref})
    router.eval()
    return TrainOutcome(steps=len(plan), history=history, sft_examples=len(sft), pairs=len(pair_ids))
