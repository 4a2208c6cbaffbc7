"""Thought level on real teacher data (CPU): templates summarised from strong LLMs' correct MBPP answers, retrieved
for SmolLM2-135M-Instruct, against zero-shot and few-shot — pass@1 in the sandbox.

Teachers and held-out problems as in ``distill_mbpp.py`` (``benchmarks/mbpp_data.py``): RouterBench's 0-shot MBPP
log (427 prompts, 11 LLMs, RouterBench's pass/fail) is the training side; MBPP's own test problems not close to any
teacher prompt are held out, in the suite's MBPP prompt. The bank: the first ``--bank-queries`` teacher prompts by
query id, a template from the top responses of the ``--sources`` LLMs with the best training pass rate (the thought
level's selection and summary prompt of ``--recipe``), summarised by SmolLM2; retrieval by MiniLM embedding (k per
query, never a near-duplicate). All arms answer the same held-out problems greedily; each difference with its
paired-bootstrap 95% interval. Built with :func:`fusion.levels.thought.level.build_templates` and
:func:`~fusion.levels.thought.level.evaluate_templates`: the thought level's own code.

    python benchmarks/templates_mbpp.py [--work .bench/templates_mbpp] [--bank-queries 128] [--sources 3]
                                        [--test-limit 200] [--recipe cpu]

Writes <work>/templates_mbpp.json, <work>/templates_mbpp.md (the table in docs/benchmarks.md) and the plot.
Everything is cached under <work> (summaries, answers): a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mbpp_data import ROOT, as_log_rows, held_out, load_records, load_teachers, prepare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=".bench/templates_mbpp")
    ap.add_argument("--bank-queries", type=int, default=128, help="teacher prompts summarised (the first by id)")
    ap.add_argument("--sources", type=int, default=3, help="summarise the answers of this many best teachers")
    ap.add_argument("--test-limit", type=int, default=200, help="held-out MBPP test problems (the first by id)")
    ap.add_argument("--overlap", type=float, default=0.8)
    ap.add_argument("--recipe", choices=["cpu", "fusionfactory"], default="cpu")
    ap.add_argument("--k", type=int, default=None, help="templates / examples per query (default: the recipe's)")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    args = ap.parse_args()
    work, cache = prepare(args.work)

    import pandas as pd

    from fusion.core.embedding import Encoder
    from fusion.core.evaluation import markdown, plot
    from fusion.levels.thought.config import ThoughtConfig
    from fusion.levels.thought.level import build_templates, evaluate_templates
    from fusion.models.refs import MINILM, SMOLLM2

    records = load_records()
    teachers = load_teachers(records)
    queries, dropped = held_out(records, teachers["query"].drop_duplicates().tolist(), args.overlap, args.test_limit)
    log = pd.concat([teachers, as_log_rows(queries)], ignore_index=True)
    rates = teachers.groupby("llm")["performance"].mean().sort_values(ascending=False)
    sources = [str(x) for x in rates.index[: args.sources]]
    smol = {"backend": "transformers", "model": SMOLLM2, "input_price": 0.0, "output_price": 0.0}
    cfg = ThoughtConfig(recipe=args.recipe, source_llms=sources, max_queries=args.bank_queries,
                        summariser={"name": "smollm2-summariser", **smol}, target={"name": "smollm2-target", **smol},
                        **({"k": args.k} if args.k else {}),
                        eval={"split": "test", "mode": "direct", "max_new_tokens": args.max_new_tokens,
                              "batch_size": 8, "n_boot": 2000})
    result: dict = {"command": " ".join(["python", *sys.argv]), "sources": sources,
                    "source_pass_rates": rates.round(3).to_dict(), "held_out": len(queries),
                    "held_out_dropped_as_overlap": dropped, "recipe": args.recipe, "k": cfg.k}
    encoder = Encoder(MINILM, ROOT / ".cache" / "embeddings")
    t0 = time.perf_counter()
    bank, bank_report = build_templates(log, cfg, work / "template_parts", encoder, model_cache=cache)
    result["bank"] = {**bank_report, "wall_s": round(time.perf_counter() - t0, 1)}
    print(f"bank: {bank_report['templates']} templates of {bank_report['questions']} questions "
          f"({bank_report['failed']} failed: {bank_report['failure_reasons']})")
    t0 = time.perf_counter()
    thought = evaluate_templates(log, bank, cfg, encoder, cache_dir=work / "generations", model_cache=cache)
    result["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    result["table"] = thought.report
    result["example_prompt"] = {arm: p[0] for arm, p in thought.prompts.items()}
    (work / "templates_mbpp.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (work / "templates_mbpp.md").write_text(markdown(thought.report))
    plot(thought.report, work / "templates_mbpp.png", "MBPP held-out pass@1, thought level: differences (95% CI)")
    print(markdown(thought.report))


if __name__ == "__main__":
    main()
