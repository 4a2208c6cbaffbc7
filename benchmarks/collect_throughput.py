"""Collector overhead: tokens/s of `fusion.data.collect.collect` vs a bare batched `model.generate` loop.

Same model, same prompts (the embedded default's queries in `direct` mode), same batch size and token budget,
in one run. The ratio is what matters (the absolute numbers depend on the machine).

    python benchmarks/collect_throughput.py [--params params.yaml] [--n 24] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def bare_generate(model_dir: str, prompts: list[str], batch_size: int, max_new_tokens: int) -> tuple[int, float]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    eos = {model.generation_config.eos_token_id, tok.eos_token_id} - {None}
    texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    tokens, t0 = 0, time.perf_counter()
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():  # up to and including the first end token
            tokens += next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    args = ap.parse_args()

    from fusion.config import load_params
    from fusion.data.collect import collect
    from fusion.data.queries import build_queries
    from fusion.models.refs import materialize
    from fusion.tasks import get_task

    params = load_params(args.params)
    spec = params.pool[0].model_copy(update={"modes": ["direct"]})
    cfg = params.collect.model_copy(update={"max_new_tokens": {"direct": args.max_new_tokens, "think": 1}})
    queries = build_queries(params.queries).head(args.n)
    model_dir = materialize(spec.model, params.paths.model_cache)
    prompts = [get_task(t).build_prompt(q, "direct") for t, q in zip(queries["task"], queries["query"], strict=True)]
    # same order as the collector (it sorts by prompt length)
    prompts.sort(key=len)

    bare_tokens, bare_s = bare_generate(model_dir, prompts, cfg.batch_size, args.max_new_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        log = collect(queries, [spec], cfg, Path(tmp) / "parts", model_cache=params.paths.model_cache)
        coll_s = time.perf_counter() - t0
    coll_tokens = int(log["output_tokens"].sum())
    result = {
        "model": spec.model, "queries": len(queries), "batch_size": cfg.batch_size,
        "max_new_tokens": args.max_new_tokens, "torch_threads": torch.get_num_threads(),
        "bare_tokens": bare_tokens, "bare_s": round(bare_s, 2), "bare_tok_per_s": round(bare_tokens / bare_s, 1),
        "collect_tokens": coll_tokens, "collect_s": round(coll_s, 2),
        "collect_tok_per_s": round(coll_tokens / coll_s, 1),
        "ratio": round((coll_tokens / coll_s) / (bare_tokens / bare_s), 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
