"""GPU only: collection with the `vllm` backend vs bare `vllm.LLM.chat` on the same prompts (target: >= 90% of
the bare throughput). Needs a GPU and the `gpu` extra (`pip install -e '.[gpu]'`); not run in CI.

Same model, same prompts (the embedded default's queries in `direct` mode, repeated to `--n`), same sampling
(greedy, `--max-new-tokens`), one engine; bare first, then the collector (which also scores and writes parts),
then bare again; the ratio of output tokens/s is what counts.

    python benchmarks/vllm_throughput.py --model /models/Qwen2.5-1.5B-Instruct [--n 2048] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


class _Lent:
    """The engine lent to the collector: it must not close it (the second bare run uses it)."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a local model folder (or pkg:/GGUF reference)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--tensor-parallel-size", type=int, default=1)
    ap.add_argument("--json", default="reports/bench/vllm_throughput.json")
    args = ap.parse_args()

    import pandas as pd
    import vllm

    from fusion.backends import make_backend
    from fusion.config import LLMSpec, load_params
    from fusion.data.collect import collect
    from fusion.data.queries import build_queries
    from fusion.tasks import get_task

    params = load_params(args.params)
    base = build_queries(params.queries)
    reps = -(-args.n // len(base))
    queries = pd.concat([base.assign(query_id=base["query_id"] + f"-{r}", query=base["query"] + " " * r)
                         for r in range(reps)], ignore_index=True).head(args.n)
    spec = LLMSpec(name="gpu", backend="vllm", model=args.model, modes=["direct"], input_price=0, output_price=0,
                   options={"dtype": args.dtype, "tensor_parallel_size": args.tensor_parallel_size,
                            "part_size": args.n})
    cfg = params.collect.model_copy(update={"max_new_tokens": {"direct": args.max_new_tokens, "think": 1}})
    backend = make_backend(spec, model_cache=params.paths.model_cache)  # one engine for both
    prompts = [[{"role": "user", "content": get_task(t).build_prompt(q, "direct")}]
               for t, q in zip(queries["task"], queries["query"], strict=True)]
    sampling = vllm.SamplingParams(max_tokens=args.max_new_tokens, temperature=0.0, seed=0)

    def bare() -> tuple[int, float]:
        t0 = time.perf_counter()
        outs = backend.llm.chat(prompts, sampling, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs), time.perf_counter() - t0

    bare()  # warm-up: CUDA graphs, caches
    b1_tok, b1_s = bare()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        log = collect(queries, [spec], cfg, Path(tmp) / "parts", model_cache=params.paths.model_cache,
                      backend_factory=lambda *a, **k: _Lent(backend))
        c_s = time.perf_counter() - t0
    b2_tok, b2_s = bare()
    c_tok = int(log["output_tokens"].sum())
    bare_rate = (b1_tok + b2_tok) / (b1_s + b2_s)
    result = {"model": args.model, "prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
              "bare_tok_per_s": round(bare_rate, 1), "collect_tok_per_s": round(c_tok / c_s, 1),
              "ratio": round((c_tok / c_s) / bare_rate, 3), "collect_errors": int(log["error"].notna().sum())}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
