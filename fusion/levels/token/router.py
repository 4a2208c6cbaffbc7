"""The FusionRoute router: a causal LM plus a linear routing head ``W: hidden → n_experts`` on its last (normed)
hidden state. Saved as a normal Hugging Face checkpoint (model + tokenizer, loadable by any tool) plus
``routing_head.safetensors`` and ``tokenroute.json`` (the experts it routes to, in head order)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

HEAD_FILE = "routing_head.safetensors"
META_FILE = "tokenroute.json"


@dataclass
class RouterOutput:
    hidden: torch.Tensor        # [B, T, H] the last hidden state (after the final norm)
    logits: torch.Tensor        # [B, T, V_model] the router LM's own next-token logits
    route_logits: torch.Tensor  # [B, T, n_experts] the routing head's scores
    cache: object = None


@dataclass
class ExpertRecord:
    """What an expert was when the router was trained: how to load it, and a fingerprint of its weights."""
    name: str
    model: str
    adapter: str | None = None
    fingerprint: str = ""
    extra: dict = field(default_factory=dict)


class RouterLM(nn.Module):
    def __init__(self, lm, n_experts: int, *, head_seed: int = 0) -> None:
        super().__init__()
        self.lm = lm
        hidden = int(lm.config.hidden_size)
        self.head = nn.Linear(hidden, n_experts, bias=False, dtype=lm.get_output_embeddings().weight.dtype)
        g = torch.Generator().manual_seed(head_seed)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(n_experts, hidden, generator=g) * 0.02)
        self.head.to(lm.device)

    @property
    def n_experts(self) -> int:
        return int(self.head.weight.shape[0])

    @property
    def config(self):
        return self.lm.config

    def decoder(self):
        return self.lm.get_decoder()

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache: bool = False,
                last_only: bool = False) -> RouterOutput:
        out = self.decoder()(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             cache=cache, use_cache=use_cache)
        h = out.last_hidden_state
        hs = h[:, -1:] if last_only else h
        return RouterOutput(hidden=hs, logits=self.lm.get_output_embeddings()(hs), route_logits=self.head(hs),
                            cache=getattr(out, "cache", None))

    def save(self, out: str | Path, tokenizer, experts: list[ExpertRecord], extra: dict | None = None) -> Path:
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(out)
        tokenizer.save_pretrained(out)
        save_file({"weight": self.head.weight.detach().float().cpu().contiguous()}, str(out / HEAD_FILE))
        if len(experts) != self.n_experts:
            raise ValueError(f"the head routes to {self.n_experts} experts, {len(experts)} given")
        meta = {"n_experts": self.n_experts, "experts": [e.__dict__ for e in experts], **(extra or {})}
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out


def read_meta(path: str | Path) -> dict:
    f = Path(path) / META_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{path} is not a saved token-level router (no {META_FILE})")
    return json.loads(f.read_text())


def expert_records(path: str | Path) -> list[ExpertRecord]:
    return [ExpertRecord(**e) for e in read_meta(path)["experts"]]


def load_router(path: str | Path, *, device: str = "cpu", dtype: str = "float32"):
    """``(router, tokenizer, meta)`` from a folder written by :meth:`RouterLM.save`."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta = read_meta(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).to(device)
    router = RouterLM(lm, int(meta["n_experts"]))
    with torch.no_grad():
        router.head.weight.copy_(load_file(str(Path(path) / HEAD_FILE))["weight"].to(router.head.weight.dtype))
    router.eval()
    return router, AutoTokenizer.from_pretrained(path), meta
