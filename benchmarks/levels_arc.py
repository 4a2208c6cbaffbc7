"""Thought and model levels on real data (CPU): RouterBench ARC-Challenge, SmolLM2-135M-Instruct as summariser,
target and base.

Model level: SmolLM2 LoRA-distilled from the correct training responses of RouterBench's 11 LLMs (hybrid
selection, one per query) and, as the baseline that matters, LoRA-trained on the gold letters alone (label-only;
RouterBench keeps no gold answer: it is the letter the correct responses chose, recovered for every query with one).
Thought level: templates summarised from the top-3 correct responses of training questions, retrieved (k per
query, same task, never a near-duplicate) for the test queries, against zero-shot and few-shot (the retrieved
questions with their best answers). All arms answer the same RouterBench ARC-Challenge test queries (the shared
few-shot block stripped: zero-shot prompts), scored by the option letter; each difference with its paired-bootstrap
95% interval.

    python benchmarks/levels_arc.py [--work .bench/levels] [--test-limit N] [--train-queries 400]
                                    [--bank-queries 64] [--epochs 1]

Writes <work>/levels_arc.json and <work>/levels_arc.md (the tables in docs/benchmarks.md), and the two plots.
Everything is cached under <work> (summaries, answers, checkpoints): a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routing" / "routerbench_zs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=".bench/levels")
    ap.add_argument("--test-limit", type=int, default=None, help="test queries of the model level (default: all)")
    ap.add_argument("--thought-test-limit", type=int, default=200,
                    help="test queries of the thought level (the first by query id; few-shot prompts are long)")
    ap.add_argument("--train-queries", type=int, default=400, help="training queries distilled (both SFT sets)")
    ap.add_argument("--bank-queries", type=int, default=64, help="training questions summarised into templates")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--k", type=int, default=2, help="templates / examples per test query")
    ap.add_argument("--skip-thought", action="store_true")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"RouterBench data not found at {DATA} (../shared/data): nothing to benchmark")
    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    import logging

    import pandas as pd

    from fusion.config import DistillConfig, ThoughtConfig
    from fusion.core.embedding import Encoder
    from fusion.core.evaluation import compare, markdown, plot
    from fusion.core.identity import local_spec as model_spec
    from fusion.core.lora import train_lora
    from fusion.core.selection import recover_ground_truth
    from fusion.importers import import_log
    from fusion.levels.model.data import DISTILLED, LABEL_ONLY
    from fusion.levels.model.level import BASE, build_sets, evaluate_models
    from fusion.levels.thought.level import build_templates, evaluate_templates
    from fusion.models.refs import MINILM, SMOLLM2

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cache = ROOT / ".cache" / "models"
    gen_cache = work / "generations"
    logs = [import_log(DATA / f"arc_challenge_{s}.csv", "routerbench")[0] for s in ("train", "test")]
    log, recovered = recover_ground_truth(pd.concat(logs, ignore_index=True))
    ev = {"split": "test", "limit": args.test_limit, "mode": "direct", "max_new_tokens": 16, "batch_size": 8,
          "n_boot": 2000}
    train = {"learning_rate": args.lr, "epochs": args.epochs, "batch_size": args.batch_size, "max_length": 512,
             "save_steps": 50, "lora": {"r": 16, "alpha": 32, "dropout": 0.05,
                                        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}
    dcfg = DistillConfig(base=SMOLLM2, data={"selection": "hybrid", "k": 1, "max_queries": args.train_queries}, train=train, eval=ev)
    result: dict = {"recovered_ground_truth": recovered, "command": " ".join(["python", *sys.argv])}

    # ---- model level
    sets = build_sets(log, dcfg)
    result["sft"] = {kind: data.report() for kind, data in sets.items()}
    trained = {}
    for kind, data in sets.items():
        t0 = time.perf_counter()
        r = train_lora(data.examples, dcfg.base, work / "distill" / kind, dcfg.train, model_cache=cache)
        trained[kind] = r
        result.setdefault("training", {})[kind] = {**r.metrics(), "wall_s": time.perf_counter() - t0}
    base = model_spec("base", SMOLLM2)
    models = {BASE: base, DISTILLED: model_spec(DISTILLED, str(trained[DISTILLED].adapter), base),
              LABEL_ONLY: model_spec(LABEL_ONLY, str(trained[LABEL_ONLY].adapter), base)}
    report, arms = evaluate_models(log, models, dcfg, cache_dir=gen_cache, model_cache=cache)
    model_pairs = [(DISTILLED, BASE), (DISTILLED, LABEL_ONLY), (LABEL_ONLY, BASE)]
    result["model_table"] = {**compare(arms, model_pairs, n_boot=ev["n_boot"]), "skipped": report["skipped"]}
    (work / "levels_arc_model.md").write_text(markdown(result["model_table"]))
    print(markdown(result["model_table"]))

    # ---- thought level (same test queries, same target = the base)
    if not args.skip_thought:
        tcfg = ThoughtConfig(summariser={"name": "smollm2", "backend": "transformers", "model": SMOLLM2,
                                         "input_price": 0.0, "output_price": 0.0},
                             target={"name": "smollm2", "backend": "transformers", "model": SMOLLM2,
                                     "input_price": 0.0, "output_price": 0.0},
                             top_n=3, max_queries=args.bank_queries, summary_max_new_tokens=96, k=args.k,
                             eval={**ev, "limit": args.thought_test_limit})
        encoder = Encoder(MINILM, ROOT / ".cache" / "embeddings")
        bank, bank_report = build_templates(log, tcfg, work / "template_parts", encoder, model_cache=cache)
        result["bank"] = bank_report
        thought = evaluate_templates(log, bank, tcfg, encoder, cache_dir=gen_cache, model_cache=cache)
        ids = thought.arms["few-shot"]["query_id"]  # the thought level's queries: the same arms on them
        arms = {name: a.set_index("query_id").loc[ids].reset_index() for name, a in arms.items()}
        arms = {**arms, "few-shot": thought.arms["few-shot"], "templates": thought.arms["templates"]}
        result["retrieval"] = thought.report["retrieval"]
    pairs = [(DISTILLED, BASE), (DISTILLED, LABEL_ONLY), (LABEL_ONLY, BASE), (DISTILLED, "few-shot"),
             ("templates", BASE), ("templates", "few-shot"), ("few-shot", BASE)]
    table = compare(arms, pairs, n_boot=ev["n_boot"])
    table["skipped"] = report["skipped"]
    result["table"] = table
    result["training"] = result.get("training", {})
    (work / "levels_arc.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (work / "levels_arc.md").write_text(markdown(table))
    plot(table, work / "levels_arc.png", "RouterBench ARC-Challenge test: differences (95% CI)")
    print(markdown(table))
    for kind, t in result["training"].items():
        print(f"{kind}: {t['steps']} steps, loss {t['first_loss']:.3f} -> {t['last_loss']:.3f}, "
              f"{t['tokens_per_s']:.0f} tokens/s, peak RSS {t['peak_memory_mb']:.0f} MB, {t['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
