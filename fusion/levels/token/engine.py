"""The token-level decoding engine: batched, left-padded, one KV cache per model.

At each step the router LM reads the newest token (its cache holds the rest), its routing head picks an expert
``i*`` per row, and the next token comes from ``log_softmax(router) + log_softmax(expert i*)`` over the shared
vocabulary (``combine="fused"``), from the expert alone (``combine="routing"``: routing only), or, without a
router, from the one model given (a single expert, the baseline every ratio is measured against).

Policies decide which experts run:

- ``all``: every expert reads every token, so each one's logits are always at hand;
- ``lazy``: only the experts some active row selected run; an expert that was skipped catches up on the tokens it
  missed in one chunked forward (its cache stays exact). At batch 1 this is one expert forward per token.

``use_cache=False`` is the reference: every model re-reads the whole sequence at every step. Both policies give the
reference's tokens (tested: mixed prompt lengths, left padding, an expert with a padded vocabulary). Rows finish at
an end token or a stop string; sampling draws each row from its own seeded generator, so a row's tokens do not
depend on the other rows of its batch.

Written by hand (not ``model.generate``): generation in transformers runs one model; here several models advance
in lock-step with their own caches and the choice of which one runs is made per token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from fusion.levels.token.losses import fuse_logprobs, select_experts
from fusion.levels.token.vocab import shared_vocab_size
from fusion.models.load import render_chat

POLICIES = ("all", "lazy")
COMBINES = ("fused", "routing")


@dataclass
class Generated:
    """One request's output, with what produced each token."""
    text: str
    tokens: list[int]
    prompt_tokens: int
    finish_reason: str                                 # eos | stop | length
    experts: list[int] = field(default_factory=list)   # the expert each token came from (-1: no router)
    changed: list[bool] = field(default_factory=list)  # the router's logits changed the expert's argmax token
    scores: list[float] = field(default_factory=list)  # the chosen token's combined log-score

    def expert_shares(self, n_experts: int) -> list[float]:
        n = len(self.experts)
        return [self.experts.count(i) / n if n else 0.0 for i in range(n_experts)]

    @property
    def change_rate(self) -> float:
        return sum(self.changed) / len(self.changed) if self.changed else 0.0


@dataclass
class Counters:
    """Forward calls per model: ``calls``, positions read (``tokens``), and ``catchups`` (a call after the first
    that reads more than one new position: a lazy expert catching up)."""
    calls: Counter = field(default_factory=Counter)
    tokens: Counter = field(default_factory=Counter)
    catchups: Counter = field(default_factory=Counter)
    generated: int = 0
    steps: int = 0

    def as_dict(self) -> dict:
        return {"calls": dict(self.calls), "tokens": dict(self.tokens), "catchups": dict(self.catchups),
                "generated": self.generated, "steps": self.steps}


class _State:
    __slots__ = ("cache", "seen", "calls")

    def __init__(self) -> None:
        self.cache, self.seen, self.calls = None, 0, 0


class TokenRouteDecoder:
    """``experts``: ``(name, causal LM)`` pairs in the routing head's order; ``router``: a
    :class:`~fusion.levels.token.router.RouterLM`, or None to decode with the one expert given."""

    def __init__(self, experts: Sequence[tuple[str, object]], tokenizer, router=None, *, combine: str = "fused",
                 policy: str = "lazy", use_cache: bool = True, batch_size: int = 8) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy {policy!r}: expected one of {POLICIES}")
        if combine not in COMBINES:
            raise ValueError(f"combine {combine!r}: expected one of {COMBINES}")
        if not experts:
            raise ValueError("no experts to decode with")
        if router is None and len(experts) != 1:
            raise ValueError(f"without a router exactly one model decodes; {len(experts)} given")
        if router is not None and router.n_experts != len(experts):
            raise ValueError(f"the routing head has {router.n_experts} outputs but {len(experts)} experts are given")
        self.names = [n for n, _ in experts]
        self.experts = [m.eval() for _, m in experts]
        self.router = router.eval() if router is not None else None
        self.tokenizer = tokenizer
        models = {n: m for n, m in experts}
        if router is not None:
            models["router"] = router.lm
        self.vocab_size = shared_vocab_size({"tokenizer": tokenizer}, models)
        self.combine, self.policy, self.use_cache, self.batch_size = combine, policy, use_cache, batch_size
        self.device = self.experts[0].device
        self.counters = Counters()
        eos = set()
        for m in [*self.experts, *([self.router.lm] if self.router is not None else [])]:
            e = getattr(getattr(m, "generation_config", None), "eos_token_id", None)
            eos |= set(e if isinstance(e, list) else [e]) if e is not None else set()
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        self.eos_ids = eos
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    # ---- public ----------------------------------------------------------------------------------------------

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(render_chat(self.tokenizer, p), add_special_tokens=False)["input_ids"]
                for p in prompts]

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float = 0.0, seed: int = 0,
                 stop: Sequence[str] = (), progress=None) -> list[Generated]:
        """Chat-render and answer ``prompts`` (in batches of ``batch_size``), in order."""
        return self.generate_ids(self.encode(prompts), max_new_tokens=max_new_tokens, temperature=temperature,
                                 seed=seed, stop=stop, progress=progress)

    def generate_ids(self, prompts: Sequence[Sequence[int]], *, max_new_tokens: int, temperature: float = 0.0,
                     seed: int | Sequence[int] = 0, stop: Sequence[str] = (), progress=None) -> list[Generated]:
        seeds = [seed] * len(prompts) if isinstance(seed, int) else list(seed)
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        out: list[Generated] = []
        for i in range(0, len(prompts), self.batch_size):
            out.extend(self._decode(prompts[i:i + self.batch_size], seeds[i:i + self.batch_size], max_new_tokens,
                                    temperature, tuple(stop)))
            if progress is not None:
                progress(len(prompts[i:i + self.batch_size]))
        return out

    # ---- one batch -------------------------------------------------------------------------------------------

    def _advance(self, key, model, st: _State, ids, mask, pos, *, router: bool):
        """Run ``model`` over the positions it has not read (all of them without a cache); the last position's
        hidden state and logits (and routing scores for the router)."""
        T = ids.shape[1]
        start = st.seen if self.use_cache else 0
        if start >= T:
            raise RuntimeError(f"{key}: nothing new to read")
        kwargs = dict(input_ids=ids[:, start:T], attention_mask=mask[:, :T], position_ids=pos[:, start:T],
                      cache=st.cache if self.use_cache else None, use_cache=self.use_cache)
        if router:
            out = model(**kwargs, last_only=True)
            cache, logits, route = out.cache, out.logits[:, -1], out.route_logits[:, -1]
        else:
            dec = model.get_decoder()(**kwargs)
            cache, route = getattr(dec, "cache", None), None
            logits = model.get_output_embeddings()(dec.last_hidden_state[:, -1:])[:, -1]
        self.counters.calls[key] += 1
        self.counters.tokens[key] += T - start
        if st.calls > 0 and T - start > 1:
            self.counters.catchups[key] += 1
        st.calls += 1
        if self.use_cache:
            st.cache, st.seen = cache, T
        return logits[:, : self.vocab_size].float(), route

    @torch.inference_mode()
    def _decode(self, prompts, seeds, max_new_tokens, temperature, stop) -> list[Generated]:
        B = len(prompts)
        if any(len(p) == 0 for p in prompts):
            raise ValueError("an empty prompt: nothing to condition on")
        L = max(len(p) for p in prompts)
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, L), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, L - len(p):] = torch.tensor(list(p), dtype=torch.long)
            mask[b, L - len(p):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds] if temperature > 0 else None
        states = {k: _State() for k in ["router", *range(len(self.experts))]}
        results = [Generated("", [], len(p), "length") for p in prompts]
        finished = [False] * B
        for _step in range(max_new_tokens):
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            active = [b for b in range(B) if not finished[b]]
            router_logits = None
            if self.router is not None:
                r_logits, route_scores = self._advance("router", self.router, states["router"], ids, mask, pos,
                                                       router=True)
                route = select_experts(route_scores).tolist()
                if self.combine == "fused":
                    router_logits = r_logits
            else:
                route = [0] * B
            needed = range(len(self.experts)) if self.policy == "all" else sorted({route[b] for b in active})
            expert_logits = {e: self._advance(self.names[e], self.experts[e], states[e], ids, mask, pos,
                                              router=False)[0] for e in needed}
            chosen = torch.zeros((B, self.vocab_size), device=self.device)
            for b in active:
                chosen[b] = expert_logits[route[b]][b]
            final = fuse_logprobs(router_logits, chosen)
            greedy = final.argmax(-1)
            if gens is None:
                tokens = greedy
            else:
                probs = torch.softmax(final / temperature, -1).cpu()
                tokens = greedy.clone()
                for b in active:
                    tokens[b] = torch.multinomial(probs[b], 1, generator=gens[b]).item()
            expert_top = chosen.argmax(-1)
            next_col = torch.full((B, 1), self.pad_id, dtype=torch.long, device=self.device)
            for b in active:
                t = int(tokens[b])
                r = results[b]
                next_col[b, 0] = t
                r.tokens.append(t)
                r.experts.append(route[b] if self.router is not None else -1)
                r.changed.append(router_logits is not None and int(greedy[b]) != int(expert_top[b]))
                r.scores.append(float(final[b, t]))
                if t in self.eos_ids:
                    finished[b], r.finish_reason = True, "eos"
                elif stop:
                    text = self.tokenizer.decode(r.tokens, skip_special_tokens=True)
                    if any(s in text for s in stop):
                        finished[b], r.finish_reason = True, "stop"
            ids = torch.cat([ids, next_col], 1)
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=self.device)], 1)
            self.counters.generated += len(active)
            self.counters.steps += 1
            if all(finished):
                break
        for r in results:
            body = r.tokens[:-1] if r.finish_reason == "eos" else r.tokens
            text = self.tokenizer.decode(body, skip_special_tokens=True)
            if r.finish_reason == "stop":
                cut = min(i for i in (text.find(s) for s in stop) if i >= 0)
                text = text[:cut]
            r.text = text.strip()
        return results
