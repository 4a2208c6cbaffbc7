"""The `fusionfactory` recipe selects exactly what FusionFactory's official code selects (ulab-uiuc/FusionFactory:
model_level/sft_data_gen.py, thought_level/thought_template_gen.py, thought_level/get_thought_prompt.py; the
reference functions below are transcribed from it), and the recipe machinery of params.yaml."""

from __future__ import annotations

import pandas as pd
import pytest

from fusion.config import ConfigError, DistillConfig, ThoughtConfig, parse_params
from fusion.levels.model.data import DISTILLED, build_sft_data
from fusion.levels.thought.bank import with_templates
from fusion.levels.thought.level import question_groups
from fusion.levels.thought.templates import summary_prompt

LLMS = ["qwen", "gemma", "llama", "mistral"]  # the official block order: each LLM's direct row, then its think row


def _official_log() -> pd.DataFrame:
    """Two training questions x 4 LLMs x (direct, think), in the official 8-row block layout, with ties in
    performance that only length (model level) or cost and judge (thought level) break."""
    spec = {  # (llm, mode): (performance, judge, cost, output tokens) per question
        "q1": {("qwen", "direct"): (1, 0.6, 0.020, 40), ("qwen", "think"): (1, 0.8, 0.030, 120),
               ("gemma", "direct"): (1, 1.0, 0.010, 12), ("gemma", "think"): (0, 1.0, 0.011, 90),
               ("llama", "direct"): (1, 0.3, 0.050, 60), ("llama", "think"): (1, 1.0, 0.060, 200),
               ("mistral", "direct"): (1, 0.8, 0.005, 30), ("mistral", "think"): (1, 0.6, 0.004, 80)},
        "q2": {("qwen", "direct"): (0, 0.3, 0.020, 10), ("qwen", "think"): (1, 0.6, 0.030, 150),
               ("gemma", "direct"): (0, 0.0, 0.010, 8), ("gemma", "think"): (1, 1.0, 0.012, 95),
               ("llama", "direct"): (0, 0.8, 0.050, 20), ("llama", "think"): (0, 1.0, 0.060, 210),
               ("mistral", "direct"): (1, 0.3, 0.005, 25), ("mistral", "think"): (0, 0.8, 0.004, 70)},
    }
    rows = []
    for qid, cells in spec.items():
        question = f"What is the answer to question {qid}?"
        for llm in LLMS:
            for mode in ("direct", "think"):
                perf, judge, cost, out = cells[(llm, mode)]
                prompt = question + ("\nLet's think step by step." if mode == "think" else "")
                rows.append({"query_id": qid, "task": "arith_word", "domain": "math", "split": "train",
                             "query": question, "prompt": prompt, "ground_truth": "4", "metric": "gsm8k_number",
                             "llm": llm, "mode": mode, "candidate": f"{llm}:{mode}",
                             "response": f"{llm} {mode} on {qid}: " + "step. " * (out // 10) + f"Answer: {4 if perf else 5}",
                             "input_tokens": 30, "output_tokens": out, "tokens_source": "log", "cost_usd": cost,
                             "latency_s": 0.1, "performance": float(perf), "judge_score": judge, "error": None,
                             "backend": "import:long", "collected_at": pd.Timestamp("2026-12-01", tz="UTC")})
    return pd.DataFrame(rows)


# ---- the official code, transcribed (column names mapped: llm_judge -> judge_score, cost -> cost_usd,
# output_tokens_num -> output_tokens, the think row's llm name -> llm + "_think") --------------------------------
def official_sft(log: pd.DataFrame, top_k: int = 5) -> list[tuple[str, str]]:
    """sft_data_gen.py, setting "perf": (input, output) per example."""
    out = []
    for _, sample in log.groupby("query_id", sort=True):
        sample = sample.reset_index(drop=True)
        sample_sorted = sample.sort_values(by=["performance", "output_tokens"], ascending=[False, False])
        is_select, cnt = False, 0
        for _, row in sample_sorted.iterrows():
            if not is_select:
                out.append((str(row["prompt"]).replace("\nLet's think step by step.", ""), f"gold:{row['ground_truth']}"))
                is_select = True
            if row["performance"] == 0:
                break
            if cnt < top_k:
                out.append((str(row["prompt"]), str(row["response"])))
                cnt += 1
    return out


def official_template_sources(log: pd.DataFrame, n: int = 3) -> dict[str, list[str]]:
    """thought_template_gen.find_best_performers per question: the responses summarised, in order."""
    picks = {}
    for qid, group in log.groupby("query_id", sort=True):
        first_stage = group.sort_values(by=["performance", "cost_usd"], ascending=[False, True])
        second_stage = first_stage.head(5).sort_values(by=["judge_score", "cost_usd"], ascending=[False, True])
        picks[qid] = second_stage.head(n)["response"].tolist()
    return picks


def official_template_prompt(query: str, best_responses: list[str]) -> str:
    """thought_template_gen.generate_thought_template_prompt (its three misspellings fixed, as ours)."""
    prompt = f"""Given this question and example solutions, extract a concise thought template that captures the effective reasoning pattern and can serve as guidance:

Question: {query}

Here are {len(best_responses)} high-performing solutions:
"""
    for i, response in enumerate(best_responses, 1):
        if len(response) > 1000:
            response = response[:1000] + "... [truncated]"
        prompt += f"Solution {i}:\n{response}\n\n"
    prompt += """Create a concise and clear thought template (1-5 sentences total) focusing on:

1. Core Task Summarization: Identify the core problem type and general appraoch needed (in one very concise sentence)
2. Reasoning Step: Give a clear chain of thought that can help model address this problem (1-3 sentences)
2. Answer Template: What is the prefered answer format / structure for the given query (1 sentence) 

Your template should be specific enough to guide similar problems but general enough to work across variations. Use 1-2 sentences for straightforward problems and 3-5 sentences for complex ones.

Thought Template:"""
    return (prompt.replace("appraoch", "approach").replace("prefered", "preferred")
            .replace("2. Answer Template", "3. Answer Template").replace("(1 sentence) \n", "(1 sentence)\n"))


def official_thought_prompt(query: str, top: list[tuple[str, str]]) -> str:
    """get_thought_prompt.py: each retrieved (question, template), then the query and the instruction."""
    thought_prompt = "Here are some similar questions and guidelines in how to solve them:\n\n"
    for i, (q, t) in enumerate(top, 1):
        thought_prompt += f"Question{i}: {q}\n\n"
        thought_prompt += f"Thought Template {i}: {t}\n\n"
    thought_prompt += "Now, please solve the following question:\n\n"
    thought_prompt += query
    thought_prompt += ("\n\n Use the thought templates above as guidance. Reason step by step. And provide the final "
                       "answer! The final answer should be enclosed in <answer> and </answer> tags.")
    return thought_prompt


# ---- the preset against the reference ------------------------------------------------------------------------
def test_fusionfactory_distillation_data_is_the_official_selection():
    log = _official_log()
    d = DistillConfig(data={"recipe": "fusionfactory"}).data
    assert (d.k, d.gold, d.tie_break, d.one_per_llm, d.selection) == (5, True, "longer", False, "performance")
    ours = build_sft_data(log, kind=DISTILLED, strategy=d.selection, k=d.k, min_performance=d.min_performance,
                          gold=d.gold, tie_break=d.tie_break, one_per_llm=d.one_per_llm).examples
    ref = official_sft(log, top_k=5)
    # the same examples in the same order; the gold answer written in the form our task prompt asks for
    assert [(p, "gold:4" if s == "gold" else c) for p, c, s in zip(ours["prompt"], ours["completion"], ours["source"],
                                                                    strict=True)] == ref
    assert ours.loc[ours["source"] == "gold", "completion"].tolist() == ["Answer: 4", "Answer: 4"]
    # q1: 7 correct answers, the 5 longest (llama think 200 tokens first); q2: the two correct ones only
    q1 = ours[ours["query_id"] == "q1"]
    assert q1["completion"].str.split(" on ").str[0].tolist() == ["Answer: 4", "llama think", "qwen think",
                                                                  "mistral think", "llama direct", "qwen direct"]
    assert (ours["query_id"] == "q2").sum() == 4
    # the cpu recipe: one response per query, the shorter of the tied, no gold
    cpu = DistillConfig().data
    few = build_sft_data(log, kind=DISTILLED, strategy=cpu.selection, k=cpu.k, gold=cpu.gold,
                         tie_break=cpu.tie_break, one_per_llm=cpu.one_per_llm).examples
    assert few["source"].tolist() == ["gemma", "gemma"]  # hybrid: the correct, judge 1.0, then the cheaper


def test_fusionfactory_templates_follow_the_two_pass_selection_and_prompt():
    log = _official_log()
    cfg = ThoughtConfig(recipe="fusionfactory")
    assert (cfg.selection, cfg.first_pass, cfg.top_n, cfg.k, cfg.min_performance) == ("two_pass", 5, 3, 3, 0.0)
    groups, unusable = question_groups(log, cfg)
    ref = official_template_sources(log)
    assert {q: list(a) for q, a in zip(groups["query_id"], groups["answers"], strict=True)} == ref
    # q2 has only 3 correct answers: pass one fills its 5 with 2 wrong ones, and the judge's re-rank keeps one
    assert sum("Answer: 5" in a for a in ref["q2"]) == 1 and unusable == {}
    for q, a in zip(groups["question"], groups["answers"], strict=True):
        assert summary_prompt(q, list(a), "fusionfactory") == official_template_prompt(q, list(a))
    top = [("Question A?", "Template A."), ("Question B?", "Template B."), ("Question C?", "Template C.")]
    ours = with_templates("Solve: 2+2?", [t for _, t in top], [q for q, _ in top], style="fusionfactory")
    # the official prompt less its last sentence (<answer> tags its evaluation ignores; our task prompts say how
    # to write the answer)
    assert ours == official_thought_prompt("Solve: 2+2?", top).split(" The final answer should be")[0]


def test_a_source_llm_filter_restricts_the_templates_sources():
    log = _official_log()
    cfg = ThoughtConfig(recipe="fusionfactory", source_llms=["qwen", "mistral"])
    groups, _ = question_groups(log, cfg)
    assert all(a.split(" ")[0] in {"qwen", "mistral"} for answers in groups["answers"] for a in answers)
    ref = official_template_sources(log[log["llm"].isin(["qwen", "mistral"])])
    assert {q: list(a) for q, a in zip(groups["query_id"], groups["answers"], strict=True)} == ref


# ---- the recipe in params.yaml -------------------------------------------------------------------------------
def _params(**over) -> dict:
    return {"pool": [{"name": "m", "backend": "replay", "model": "m", "input_price": 0, "output_price": 0}],
            "queries": {"sources": [{"task": "arith_word", "source": "synthetic", "limit": 2}]}, **over}


def test_the_top_level_recipe_reaches_both_levels_and_explicit_keys_win():
    cpu = parse_params(_params())
    assert (cpu.recipe, cpu.thought.recipe, cpu.thought.k, cpu.distill.data.k, cpu.distill.data.gold) == (
        "cpu", "cpu", 2, 1, False)
    ff = parse_params(_params(recipe="fusionfactory"))
    assert (ff.thought.k, ff.thought.selection, ff.thought.summary_prompt, ff.thought.retrieval_prompt) == (
        3, "two_pass", "fusionfactory", "fusionfactory")
    assert (ff.distill.data.k, ff.distill.data.gold, ff.distill.data.tie_break) == (5, True, "longer")
    mixed = parse_params(_params(recipe="fusionfactory", thought={"recipe": "cpu"}, distill={"data": {"k": 2}}))
    assert mixed.thought.k == 2 and mixed.thought.selection == "hybrid"  # the level's own recipe wins
    assert mixed.distill.data.k == 2 and mixed.distill.data.gold  # a key set wins over the recipe
    with pytest.raises(ConfigError, match="recipe"):
        parse_params(_params(recipe="fusionbench"))
    with pytest.raises(ConfigError, match="thought"):
        parse_params(_params(thought={"recipe": "paper"}))
