"""Model level on real teacher data (CPU): several teachers' correct MBPP answers distilled into a small student
(SmolLM2-135M-Instruct, or Gemma-3-270M with ``--base gemma3``), against one teacher's, against the gold solutions
alone and against the base — pass@1 in the sandbox.

Teachers and held-out problems: ``benchmarks/mbpp_data.py`` (RouterBench's 0-shot MBPP log, 427 prompts x 11 LLMs
with RouterBench's pass/fail; MBPP's reference code as the gold solution where a prompt's text equals an MBPP
record's; MBPP's own test problems not close to any teacher prompt held out, in the suite's MBPP prompt). SFT sets,
all over the same first ``--train-queries`` prompts by query id, built by
:func:`fusion.levels.model.data.build_sft_data` (the model level's own code):

- ``fused``: FusionFactory's recipe — the gold solution first, then the top ``--k`` correct answers across the
  LLMs (by performance, ties to the longer output), each answer's code block without test lines;
- ``single-teacher``: the correct answers of the one LLM with the best training pass rate (k = 1);
- ``label-only``: the gold solutions alone.

LoRA (r 16 on q/k/v/o, one epoch), then every arm answers the same held-out problems greedily, scored by all of
the problem's tests in the sandbox; each difference with its paired-bootstrap 95% interval. A base model without
a chat template is trained and asked in the completion layout (``fusion.models.load.COMPLETION_TEMPLATE``).

    python benchmarks/distill_mbpp.py [--work .bench/distill_mbpp] [--base smollm2] [--train-queries 150] [--k 3]
                                      [--test-limit 200] [--epochs 1]

Writes <work>/distill_mbpp.json, <work>/distill_mbpp.md (the table in docs/benchmarks.md) and distill_mbpp.png.
Everything is cached under <work> (checkpoints, answers): a killed run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mbpp_data import held_out, load_records, load_teachers, prepare  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=".bench/distill_mbpp")
    ap.add_argument("--train-queries", type=int, default=150, help="teacher prompts distilled (the first by id)")
    ap.add_argument("--k", type=int, default=3, help="correct answers per prompt in the fused set (official: 5)")
    ap.add_argument("--test-limit", type=int, default=200, help="held-out MBPP test problems (the first by id)")
    ap.add_argument("--overlap", type=float, default=0.8, help="a test problem this close to a teacher prompt is "
                                                                "left out")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--max-new-tokens", type=int, default=192)
    ap.add_argument("--base", choices=["smollm2", "gemma3"], default="smollm2",
                    help="the student: SmolLM2-135M-Instruct (chat) or Gemma-3-270M (base model: completion layout)")
    ap.add_argument("--sets-only", action="store_true", help="print the SFT sets and the held-out count; no training")
    args = ap.parse_args()
    work, cache = prepare(args.work)

    from fusion.core.config import TargetEvalConfig, TrainerConfig
    from fusion.core.evaluation import compare, markdown, plot, run_arm
    from fusion.core.identity import local_spec
    from fusion.core.lora import train_lora
    from fusion.levels.model.data import DISTILLED, LABEL_ONLY, build_sft_data
    from fusion.models.refs import GEMMA3, SMOLLM2

    records = load_records()
    log = load_teachers(records)
    queries, dropped = held_out(records, log["query"].drop_duplicates().tolist(), args.overlap, args.test_limit)
    result: dict = {"command": " ".join(["python", *sys.argv]),
                    "teacher_prompts": int(log["query_id"].nunique()),
                    "prompts_with_gold": int(log.drop_duplicates("query_id")["solution"].notna().sum()),
                    "held_out": len(queries), "held_out_dropped_as_overlap": dropped}

    ids = sorted(log["query_id"].unique())[: args.train_queries]
    train_log = log[log["query_id"].isin(set(ids))]
    pass_rates = train_log.groupby("llm")["performance"].mean().sort_values(ascending=False)
    best = str(pass_rates.index[0])
    result["teacher_pass_rates"] = pass_rates.round(3).to_dict()
    result["single_teacher"] = best
    sets = {
        "fused": build_sft_data(train_log, kind=DISTILLED, strategy="performance", k=args.k, gold=True,
                                tie_break="longer", one_per_llm=False),
        "single-teacher": build_sft_data(train_log[train_log["llm"] == best], kind=DISTILLED,
                                         strategy="performance", k=1),
        "label-only": build_sft_data(train_log, kind=LABEL_ONLY),
    }
    result["sft"] = {name: data.report() for name, data in sets.items()}
    for name, data in sets.items():
        print(f"{name}: {len(data.examples)} examples over {data.examples['query_id'].nunique()} prompts; "
              f"skipped {data.skipped}")
    print(f"held out: {len(queries)} MBPP test problems ({dropped} left out as close to a teacher prompt); "
          f"single teacher: {best}")
    if args.sets_only:
        return

    train = TrainerConfig(learning_rate=args.lr, epochs=args.epochs, batch_size=args.batch_size, max_length=768,
                          save_steps=25, lora={"r": 16, "alpha": 32, "dropout": 0.05,
                                               "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    student = {"smollm2": SMOLLM2, "gemma3": GEMMA3}[args.base]
    result["student"] = student
    # a base model (no chat template) is prompted in the completion layout, as it is trained; no stop string cuts
    # code at a blank line
    base = local_spec("base", student)
    models = {"base": base}
    for name, data in sets.items():
        t0 = time.perf_counter()
        r = train_lora(data.examples, student, work / "sft" / name, train, model_cache=cache)
        result.setdefault("training", {})[name] = {**r.metrics(), "wall_s": round(time.perf_counter() - t0, 1)}
        models[name] = local_spec(name, str(r.adapter), base)

    ev = TargetEvalConfig(split="test", max_new_tokens=args.max_new_tokens, batch_size=8, n_boot=2000)
    prompts = queries["prompt"].tolist()
    arms = {}
    for name, spec in models.items():
        t0 = time.perf_counter()
        arms[name] = run_arm(spec, queries, prompts, ev, cache_dir=work / "generations", model_cache=cache,
                             label=name)
        result.setdefault("eval_wall_s", {})[name] = round(time.perf_counter() - t0, 1)
    pairs = [("fused", "base"), ("fused", "single-teacher"), ("fused", "label-only"), ("single-teacher", "base"),
             ("label-only", "base")]
    table = compare(arms, pairs, n_boot=ev.n_boot)
    result["table"] = table
    result["answers_defining_a_function"] = {
        name: float(a["response"].fillna("").str.contains(r"\bdef \w+\(").mean()) for name, a in arms.items()}
    (work / "distill_mbpp.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (work / "distill_mbpp.md").write_text(markdown(table))
    plot(table, work / "distill_mbpp.png", "MBPP held-out pass@1: differences (95% CI)")
    print(markdown(table))
    for name, t in result["training"].items():
        print(f"{name}: {t['steps']} steps, loss {t['first_loss']:.3f} -> {t['last_loss']:.3f}, "
              f"{t['tokens_per_s']:.0f} tokens/s, {t['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
