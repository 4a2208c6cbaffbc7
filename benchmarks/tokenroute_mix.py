"""Token level on real data (CPU): FusionRoute over a math expert (GSM8K worked solutions) and a code expert (MBPP
reference code), LoRA adapters on one SmolLM2-135M-Instruct base, against each expert alone, routing only, sequence
selection and the plain fine-tune on the union of the data, on a mixed GSM8K + MBPP held-out set.

Experts: ``base`` (the base itself), ``math`` (the first ``--expert-examples`` of a seeded sample of GSM8K's train
split, think mode, its worked solution ending in ``#### N``) and ``code`` (MBPP's train ids 601-974, direct mode, the
reference code), each trained with :func:`fusion.core.lora.train_lora`; the router's SFT sequences are the experts'
own examples mixed across domains (:func:`fusion.levels.token.level.training_data`, no preference pairs: there is no
routing log of these experts, so the CDPO phase has nothing to learn from and is skipped); the router and the
no-routing fine-tune train with :func:`~fusion.levels.token.level.train_variant`. Held out: GSM8K's test split (the
first ``--per-task`` by index, think mode) and MBPP's test ids 11-510 (the first ``--per-task``, direct mode);
:func:`~fusion.levels.token.level.evaluate` answers them greedily with every arm, scored by each task's metric, each
difference to FusionRoute with its paired-bootstrap 95% interval, overall and per task. All of it is the token
level's own code, driven with a ``TokenRouteConfig`` built here instead of ``params.yaml``.

    python benchmarks/tokenroute_mix.py [--work .bench/tokenroute_mix] [--per-task 40] [--expert-examples 128]
                                        [--expert-steps 32] [--sft-steps 24] [--max-new-tokens 192]

Writes <work>/tokenroute_mix.json, <work>/tokenroute_mix.md (the table in docs/benchmarks.md) and the plot;
everything is cached under <work> (adapters, statistics, checkpoints, answers): a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mbpp_data import MBPP, MBPP_TEST_IDS, SHARED, prepare  # noqa: E402

GSM8K = SHARED / "queries" / "gsm8k"


def held_out(per_task: int):
    """GSM8K test (think) and MBPP test (direct) problems as log rows of split ``test``."""
    import pandas as pd

    from fusion.log.schema import make_query_id
    from fusion.tasks.loaders import read_records
    from fusion.tasks.suite import get_task

    rows = []
    for name, path, mode, keep in (("gsm8k", GSM8K / "test.jsonl", "think", lambda r: True),
                                   ("mbpp", MBPP, "direct", lambda r: r["task_id"] in MBPP_TEST_IDS)):
        task = get_task(name)
        for rec in [r for r in read_records(path) if keep(r)][:per_task]:
            query, truth = task.convert(rec, 0)
            rows.append({"query_id": make_query_id(name, query), "task": name, "domain": task.domain,
                         "query": query, "prompt": task.build_prompt(query, mode), "ground_truth": truth,
                         "metric": task.metric, "split": "test", "mode": mode})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=".bench/tokenroute_mix")
    ap.add_argument("--per-task", type=int, default=40, help="held-out problems per task")
    ap.add_argument("--expert-examples", type=int, default=128, help="training examples per domain expert")
    ap.add_argument("--expert-steps", type=int, default=32, help="LoRA steps per domain expert")
    ap.add_argument("--sft-steps", type=int, default=24, help="router (and plain fine-tune) SFT steps")
    ap.add_argument("--per-domain", type=int, default=64, help="router SFT examples per domain")
    ap.add_argument("--max-new-tokens", type=int, default=192)
    args = ap.parse_args()
    if not (GSM8K / "test.jsonl").is_file():
        sys.exit(f"GSM8K not found under {GSM8K} (../shared/data): nothing to benchmark")
    work, cache = prepare(args.work)

    from transformers import AutoTokenizer

    from fusion.core.evaluation import markdown, plot
    from fusion.core.lora import train_lora
    from fusion.levels.token.config import TokenRouteConfig
    from fusion.levels.token.experts import expert_examples
    from fusion.levels.token.level import compute_stats, evaluate, experts_of, train_variant, training_data
    from fusion.models.refs import SMOLLM2, materialize

    gsm8k_train, mbpp_all = str(GSM8K / "train.jsonl"), str(MBPP)
    trainer = {"learning_rate": 2e-4, "max_steps": args.expert_steps, "batch_size": 4, "max_length": 512,
               "save_steps": 8, "lora": {"r": 16, "alpha": 32, "dropout": 0.05,
                                         "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}
    cfg = TokenRouteConfig(
        base=SMOLLM2,
        experts=[{"name": "base"},
                 {"name": "math", "train": {"task": "gsm8k", "source": gsm8k_train, "limit": args.expert_examples,
                                            "mode": "think"}},
                 {"name": "code", "train": {"task": "mbpp", "source": mbpp_all, "id_range": (601, 974),
                                            "limit": args.expert_examples, "mode": "direct"}}],
        expert_train=trainer,
        data={"per_domain": args.per_domain, "expert_examples": True, "max_pairs": 0, "max_length": 512},
        train={"sft_steps": args.sft_steps, "mix_steps": 0, "batch_size": 2, "learning_rate": 1e-5,
               "save_steps": 8, "plain_baseline": True},
        eval={"split": "test", "mode": "think", "max_new_tokens": args.max_new_tokens, "batch_size": 8,
              "n_boot": 2000, "policy": "lazy", "selection_scorer": "router"})
    result: dict = {"command": " ".join(["python", *sys.argv])}

    # ---- the domain experts (as the experts stage trains them)
    experts_dir = work / "experts"
    frames = []
    for expert in [e for e in cfg.experts if e.train is not None]:
        examples = expert_examples(expert)
        frames.append(examples)
        t0 = time.perf_counter()
        r = train_lora(examples, cfg.base, work / "lora" / expert.name, cfg.expert_train, model_cache=cache)
        target = experts_dir / expert.name / "adapter"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(r.adapter, target)
        result.setdefault("experts", {})[expert.name] = {"examples": len(examples), **r.metrics(),
                                                         "wall_s": round(time.perf_counter() - t0, 1)}
    experts = experts_of(cfg, experts_dir)

    # ---- the router's data and the experts' statistics, then the router and the plain fine-tune
    tok = AutoTokenizer.from_pretrained(materialize(cfg.base, cache))
    seqs, data_report = training_data(tok, frames, None, cfg.data)
    result["data"] = data_report
    stats = work / "stats"
    compute_stats(seqs, experts, tok, stats, model_cache=cache, batch_size=cfg.stats_batch_size)
    dirs = {}
    for variant, fused in (("router", True), ("plain", False)):
        t0 = time.perf_counter()
        router, rtok, outcome, fp, _ = train_variant(seqs, stats, experts, cfg, init=cfg.base,
                                                     work=work / "train" / variant, model_cache=cache, fused=fused)
        dirs[variant] = work / "models" / variant
        if fused:
            router.save(dirs[variant], rtok, [e.record() for e in experts], extra={"fingerprint": fp})
        else:
            router.lm.save_pretrained(dirs[variant])
            rtok.save_pretrained(dirs[variant])
        result.setdefault("training", {})[variant] = {**outcome.metrics(),
                                                      "wall_s": round(time.perf_counter() - t0, 1)}

    # ---- every arm on the same mixed held-out set
    log = held_out(args.per_task)
    t0 = time.perf_counter()
    report, _ = evaluate(log, dirs["router"], dirs["plain"], cfg, experts, model_cache=cache,
                         cache_dir=work / "generations")
    result["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    result["table"] = report
    (work / "tokenroute_mix.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (work / "tokenroute_mix.md").write_text(markdown(report))
    plot(report, work / "tokenroute_mix.png", "GSM8K + MBPP held-out: FusionRoute − each arm (95% CI)")
    print(markdown(report))
    print("routing:", json.dumps(report.get("routing", {}).get("fusionroute", {}), default=str)[:600])


if __name__ == "__main__":
    main()
