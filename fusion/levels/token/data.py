"""The token-level router's training data, from the platform's own artifacts.

- SFT examples: the model-level SFT data (distilled responses) and the domain experts' training examples, mixed
  across domains (at most ``per_domain`` of each, a seeded sample).
- Preference pairs: for a training query of a routing log with responses, ``chosen`` = a correct response and
  ``rejected`` = a wrong one to the same query (to the same prompt when the log has one; at most one pair per
  query, the chosen one the best-scored).
- Sequences: each example and each side of each pair rendered with the chat template and tokenized
  (``input_ids``, ``prompt_len``: the loss and the statistics cover the completion tokens and the end token).
"""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd

from fusion.core.embedding import shared_prefixes, strip_prefixes
from fusion.core.examples import EXAMPLE_COLUMNS, held_out_texts
from fusion.core.selection import normalise_text
from fusion.models.load import render_chat

SFT, CHOSEN, REJECTED = "sft", "chosen", "rejected"
PAIR_COLUMNS = ["pair_id", "query_id", "task", "domain", "prompt", "chosen", "rejected", "chosen_llm",
                "rejected_llm"]
SEQ_COLUMNS = ["seq_id", "kind", "pair_id", "task", "domain", "input_ids", "prompt_len"]


def mix_sft(frames: list[pd.DataFrame], *, per_domain: int | None, seed: int = 0) -> pd.DataFrame:
    """The SFT examples of several sources in one frame, at most ``per_domain`` per domain (seeded sample), each
    (prompt, completion) once."""
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=EXAMPLE_COLUMNS)
    ex = pd.concat([f[EXAMPLE_COLUMNS] for f in frames], ignore_index=True)
    ex = ex.drop_duplicates(["prompt", "completion"]).reset_index(drop=True)
    if per_domain is not None:
        ex = pd.concat([g.sample(n=per_domain, random_state=seed) if len(g) > per_domain else g
                        for _, g in ex.groupby("domain", sort=True)])
    return ex.sort_values(["domain", "query_id", "completion"]).reset_index(drop=True)


def preference_pairs(log: pd.DataFrame, *, min_performance: float = 1.0, max_pairs: int | None = None,
                     seed: int = 0, train_split: str = "train") -> tuple[pd.DataFrame, dict[str, int]]:
    """One (chosen, rejected) pair per training query that has both a correct response (performance ≥
    ``min_performance``) and a wrong one (performance 0); the reasons other queries give none, counted."""
    prefixes = shared_prefixes(log)
    held_out = held_out_texts(log, train_split)
    train = log[(log["split"] == train_split) & log["response"].notna() & log["error"].isna()]
    train = train[train["response"].astype(str).str.strip() != ""]
    skipped: Counter = Counter()
    if "response" not in log or log["response"].isna().all():
        return pd.DataFrame(columns=PAIR_COLUMNS), {"the log keeps no responses": int(log["query_id"].nunique())}
    rows = []
    for qid, g in train.groupby("query_id", sort=True):
        if normalise_text(str(g["query"].iloc[0])) in held_out:
            skipped["also a held-out query"] += 1
            continue
        good = g[g["performance"] >= min_performance].sort_values(["performance", "llm"], ascending=[False, True])
        bad = g[g["performance"] <= 0].sort_values("llm")
        if good.empty or bad.empty:
            skipped["no correct response" if good.empty else "no wrong response"] += 1
            continue
        c = good.iloc[0]
        prompt = c["prompt"] if pd.notna(c["prompt"]) else c["query"]
        same = bad[bad["prompt"].fillna(bad["query"]) == prompt]
        # a wrong answer to the same prompt when there is one; else one to another prompt of the query (the other
        # mode): still a wrong answer to the same question
        r = same.iloc[0] if len(same) else bad.iloc[0]
        rows.append({"query_id": str(qid), "task": str(c["task"]), "domain": str(c["domain"]),
                     "prompt": strip_prefixes([str(prompt)], prefixes)[0].strip(),
                     "chosen": str(c["response"]).strip(), "rejected": str(r["response"]).strip(),
                     "chosen_llm": str(c["llm"]), "rejected_llm": str(r["llm"])})
    pairs = pd.DataFrame(rows, columns=[c for c in PAIR_COLUMNS if c != "pair_id"])
    if max_pairs is not None and len(pairs) > max_pairs:
        keep = np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))
        skipped["over max_pairs"] += len(pairs) - max_pairs
        pairs = pairs.iloc[keep]
    pairs.insert(0, "pair_id", [f"p{i:05d}" for i in range(len(pairs))])
    return pairs.reset_index(drop=True), dict(skipped)


def tokenize(tokenizer, prompt: str, completion: str, max_length: int) -> tuple[list[int], int] | None:
    """The chat-rendered prompt and the completion with its end token; the completion cut to fit
    ``max_length``; None when the prompt alone leaves no room."""
    p = tokenizer(render_chat(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        c = c + [tokenizer.eos_token_id]
    if len(p) + 1 >= max_length:
        return None
    return (p + c)[:max_length], len(p)


def build_sequences(tokenizer, sft: pd.DataFrame, pairs: pd.DataFrame, *, max_length: int
                    ) -> tuple[pd.DataFrame, dict[str, int]]:
    rows, skipped = [], Counter()
    for i, ex in enumerate(sft.itertuples(index=False)):
        t = tokenize(tokenizer, ex.prompt, ex.completion, max_length)
        if t is None:
            skipped["sft: prompt longer than max_length"] += 1
            continue
        rows.append({"seq_id": f"s{i:05d}", "kind": SFT, "pair_id": None, "task": ex.task, "domain": ex.domain,
                     "input_ids": t[0], "prompt_len": t[1]})
    for pr in pairs.itertuples(index=False):
        both = [tokenize(tokenizer, pr.prompt, getattr(pr, side), max_length) for side in (CHOSEN, REJECTED)]
        if any(t is None for t in both):
            skipped["pair: prompt longer than max_length"] += 1
            continue
        for side, t in zip((CHOSEN, REJECTED), both, strict=True):
            rows.append({"seq_id": f"{pr.pair_id}-{side[0]}", "kind": side, "pair_id": pr.pair_id, "task": pr.task,
                         "domain": pr.domain, "input_ids": t[0], "prompt_len": t[1]})
    return pd.DataFrame(rows, columns=SEQ_COLUMNS), dict(skipped)


def sequences_digest(seqs: pd.DataFrame) -> str:
    h = hashlib.sha1()
    for sid, ids, p in zip(seqs["seq_id"], seqs["input_ids"], seqs["prompt_len"], strict=True):
        h.update(f"{sid}:{p}:{','.join(map(str, ids))};".encode())
    return h.hexdigest()[:16]
