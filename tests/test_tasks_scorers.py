"""Answer extraction and scorers: hand-made cases for every metric, and gold answers of the real data sets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from fusion.tasks import SCORERS, TASKS, exact_match, get_scorer, get_task, load_queries, token_f1
from fusion.tasks.extract import extract_choice, extract_code, extract_final_number, gsm8k_gold, last_boxed
from fusion.tasks.layouts import mbpp as mbpp_layout
from fusion.tasks.math_equiv import math_equal
from fusion.tasks.scoring import code_program, score_cem, score_choice, score_math, score_number, score_yes_no


def test_every_task_metric_has_its_scorer():
    for name, task in TASKS.items():
        assert task.metric in SCORERS, name
        assert get_scorer(task.metric) is task.scorer, name


# ---- numbers (gsm8k, arith_word) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        "#### 1,234",
        "The answer is 1234.",
        "She pays $1,234 in total.\nAnswer: $1,234",
        "1234",
        "Step 1: 1000 + 200 = 1200. Step 2: 1200 + 34 = 1234",
        "The answer is 1234. (I double-checked the 3 steps.)",
        "The final answer is \\boxed{1234}",
        "Answer: 1234.0",
        "Answer: 1234. I checked: the answer is right, since 2 + 3 = 5.",
        "The answer is: **$1,234**",
    ],
)
def test_number_scorer_accepts_gold(response: str):
    assert score_number(response, "1234") == 1.0


@pytest.mark.parametrize(
    "response", ["The answer is 1243.", "#### 123", "Answer: 12.34", "no idea", "", "1234 - 1 = 1233"]
)
def test_number_scorer_rejects_wrong(response: str):
    assert score_number(response, "1234") == 0.0


def test_number_scorer_signs_and_decimals():
    assert score_number("The temperature fell to -5 degrees. Answer: -5", "-5") == 1.0
    assert score_number("Answer: 5", "-5") == 0.0
    assert score_number("It costs $2.50.", "2.5") == 1.0
    assert score_number("8-3=5 so the answer is 5", "5") == 1.0
    assert extract_final_number("10 apples minus 3 leaves 7.") == "7"


def test_gsm8k_gold_extraction():
    assert gsm8k_gold("Some work <<2*3=6>>6\n#### 1,200") == "1200"
    with pytest.raises(ValueError):
        gsm8k_gold("no final line")


def test_real_gsm8k_gold_answers_score_one(shared_data: Path):
    records = [json.loads(line) for line in (shared_data / "queries/gsm8k/test.jsonl").open()]
    table = load_queries("gsm8k", shared_data / "queries/gsm8k/test.jsonl")
    by_query = dict(zip(table["query"], table["ground_truth"], strict=True))
    task = get_task("gsm8k")
    assert len(records) == 1319
    for rec in records:
        gold = by_query[rec["question"].strip()]
        assert task.score(rec["answer"], gold) == 1.0, rec["answer"][-80:]
        assert task.score(f"The answer is {gold}.", gold) == 1.0
        assert task.score(f"The answer is {float(gold) + 1:g}.", gold) == 0.0


# ---- math ------------------------------------------------------------------------------------------------


def test_last_boxed_balances_braces():
    assert last_boxed("first \\boxed{1} then \\boxed{\\frac{a}{b^{2}}} end") == "\\frac{a}{b^{2}}"
    assert last_boxed("so \\boxed 7.") == "7"
    assert last_boxed("nothing here") is None


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("So $x = \\boxed{\\frac{1}{2}}$.", "\\frac12"),
        ("\\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{\\dfrac{1}{2}}", "1/2"),
        ("The answer is 1/2.", "\\frac{1}{2}"),
        ("\\boxed{10\\text{ cm}}", "10"),
        ("\\boxed{\\left( 3, -1 \\right)}", "(3,-1)"),
        ("\\boxed{30^\\circ}", "30"),
        ("\\boxed{\\$1,000}", "1000"),
        ("\\boxed{x=4}", "4"),
        ("\\boxed{\\frac{\\sqrt{2}}{2}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{2x + 1}", "1+2x"),
        ("first try \\boxed{3}, corrected: \\boxed{4}", "4"),
        ("\\boxed{\\text{(C)}}", "\\text{(C)}"),
    ],
)
def test_math_scorer_accepts_equivalent(response: str, gold: str):
    assert score_math(response, gold) == 1.0


@pytest.mark.parametrize(
    ("response", "gold"),
    [
        ("\\boxed{\\frac{1}{3}}", "\\frac12"),
        ("\\boxed{0.33}", "\\frac{1}{3}"),
        ("\\boxed{(1,2)}", "(2,1)"),
        ("\\boxed{4}, wait no: \\boxed{3}", "4"),
        ("", "4"),
        ("\\boxed{9^{9^{9}}}", "1"),
        ("\\boxed{__import__('os').getcwd()}", "1"),
    ],
)
def test_math_scorer_rejects_wrong(response: str, gold: str):
    assert score_math(response, gold) == 0.0


def test_math_equal_is_symmetric_on_examples():
    assert math_equal("\\frac{3}{4}", "0.75") and math_equal("0.75", "\\frac{3}{4}")
    assert not math_equal(None, "1")


# ---- multiple choice -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        "Answer: B",
        "The answer is (B).",
        "the answer is option B",
        "B",
        "(B)",
        "**B**",
        "B. Paris",
        "A is wrong, C is wrong, so the correct answer is B.",
        "Let me think. (A) fails, (C) fails. Final answer: **(B)**",
        "Answer:\nB",
        "\\boxed{B}",
        "Option A looks tempting, but the correct option is B",
    ],
)
def test_choice_scorer_accepts_gold(response: str):
    assert score_choice(response, "B") == 1.0


@pytest.mark.parametrize(
    "response",
    ["Answer: C", "It is a bird.", "", "I am not sure.", "The answer is (A), not (B)... Answer: A"],
)
def test_choice_scorer_rejects_wrong(response: str):
    assert score_choice(response, "B") == 0.0


def test_choice_extraction_prefers_last_answer_statement():
    assert extract_choice("Answer: A\nOn reflection, the answer is D.") == "D"
    assert extract_choice("A. one\nB. two\nC. three\n\nAnswer: C") == "C"
    assert extract_choice("E") == "E"  # five-option tasks (CommonsenseQA)


# ---- QA (cem, exact match, F1) -----------------------------------------------------------------------------


def test_cem_contains_normalised_gold():
    assert score_cem("It was the Beatles, of course.", "Beatles") == 1.0
    assert score_cem("Answer: new york city!", json.dumps(["NYC", "New York City"])) == 1.0
    assert score_cem("nyc", json.dumps(["NYC", "New York City"])) == 1.0
    assert score_cem("The capital is Paris.", "paris") == 1.0


def test_cem_rejects_missing_or_partial_words():
    assert score_cem("It was the Rolling Stones.", "Beatles") == 0.0
    assert score_cem("a Parisian cafe", "Paris") == 0.0  # whole words only
    assert score_cem("in 1990", "1") == 0.0
    assert score_cem("", "Paris") == 0.0


def test_squad_exact_match_and_f1():
    assert exact_match("The Eiffel Tower!", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "eiffel tower") == 0.0
    assert token_f1("the cat sat", "cat sat down") == pytest.approx(0.8)
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("", "") == 1.0


# ---- yes / no --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "gold", "expected"),
    [
        ("Yes, the passage says so.", "true", 1.0),
        ("Answer: no", "false", 1.0),
        ("True", "true", 1.0),
        ("Reading carefully... the answer is: False.", "false", 1.0),
        ("Answer: yes", "no", 0.0),
        ("No.", "true", 0.0),
        ("I cannot tell.", "true", 0.0),
    ],
)
def test_yes_no_scorer(response: str, gold: str, expected: float):
    assert score_yes_no(response, gold) == expected


# ---- code ------------------------------------------------------------------------------------------------


def test_extract_code_prefers_last_python_block():
    text = "Try:\n```\nprint(0)\n```\nBetter:\n```python\ndef f():\n    return 1\n```\nand\n```python\nx = 2\n```"
    assert extract_code(text) == "x = 2\n"
    assert extract_code("```\ny = 3\n```") == "y = 3\n"
    assert extract_code("    return x + 1") == "    return x + 1\n"  # a bare body keeps its indentation
    assert extract_code("```python\ndef f():\n    return 1") == "def f():\n    return 1\n"  # unclosed fence


def _human_eval(shared_data: Path) -> list[dict]:
    with gzip.open(shared_data / "queries/humaneval/HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def test_human_eval_canonical_solutions_pass_and_wrong_ones_fail(shared_data: Path):
    problems = _human_eval(shared_data)
    table = load_queries("human_eval", shared_data / "queries/humaneval/HumanEval.jsonl.gz")
    assert len(problems) == len(table) == 164
    golds = list(table["ground_truth"])
    task = get_task("human_eval")
    right = [f"```python\n{p['prompt']}{p['canonical_solution']}\n```" for p in problems]
    wrong = [f"```python\n{p['prompt']}    return None\n```" for p in problems]
    scores = task.score_many(right + wrong, golds + golds, workers=2)
    failing = [p["task_id"] for p, s in zip(problems, scores[:164], strict=True) if s != 1.0]
    assert failing == []
    assert sum(scores[164:]) == 0.0


def test_human_eval_body_only_and_demo_blocks(shared_data: Path):
    problem = _human_eval(shared_data)[0]
    gt = load_queries("human_eval", shared_data / "queries/humaneval/HumanEval.jsonl.gz")["ground_truth"][0]
    task = get_task("human_eval")
    # only the body: the prompt is prepended
    assert task.score(f"```python\n{problem['canonical_solution']}```", gt) == 1.0
    # a full definition without the prompt's imports, plus a __main__ demo that would block on input()
    full = problem["prompt"] + problem["canonical_solution"]
    body = full.split("from typing import List")[-1]
    demo = "\nif __name__ == '__main__':\n    input()\n"
    assert task.score(f"Here you go:\n```python\n{body}{demo}```", gt) == 1.0
    assert "check(has_close_elements)" in code_program(full, gt)


def test_mbpp_canonical_code_passes_and_wrong_code_fails(shared_data: Path):
    records = [json.loads(line) for line in (shared_data / "queries/mbpp.jsonl").open()]
    # every 8th problem, plus those with setup code (it builds objects of a class the solution defines)
    sample = [r for i, r in enumerate(records) if i % 8 == 0 or r["test_setup_code"]]
    assert len(sample) >= 40 and any(r["task_id"] == 927 for r in sample)
    golds = [mbpp_layout(r)[1] for r in sample]
    task = get_task("mbpp")
    right = [f"```python\n{r['code']}\n```" for r in sample]
    wrong = [f"```python\n{r['code']}\n```\n```python\n{_stub(r)}\n```" for r in sample]
    scores = task.score_many(right + wrong, golds + golds, workers=2)
    assert [r["task_id"] for r, s in zip(sample, scores[: len(sample)], strict=True) if s != 1.0] == []
    assert sum(scores[len(sample) :]) == 0.0


def _stub(record: dict) -> str:
    """A definition of the tested function that returns None: the last fenced block, so it is what runs."""
    name = record["test_list"][0].split("assert ")[1].split("(")[0].strip()
    return f"def {name}(*args, **kwargs):\n    return None"


def test_mbpp_wrong_function_name_fails():
    gt = json.dumps({"tests": ["assert add(1, 2) == 3"], "setup": ""})
    assert get_task("mbpp").score("```python\ndef add(a, b):\n    return a + b\n```", gt) == 1.0
    assert get_task("mbpp").score("```python\ndef plus(a, b):\n    return a + b\n```", gt) == 0.0
