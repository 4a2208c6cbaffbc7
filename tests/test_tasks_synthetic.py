"""The synthetic tasks: determinism, answers checked by recomputation, balanced letters, disjoint splits."""

from __future__ import annotations

import collections
import re

import pytest

from fusion.tasks import get_task, load_queries
from fusion.tasks.synthetic import DAYS, make_arith_word, make_mc_reasoning, split_of

# independent formulas, one per kind of word problem
ARITH = {
    "buy_give": lambda p: p["a"] + p["packs"] * p["per"] - p["give"],
    "change": lambda p: p["bill"] - p["count"] * p["price"],
    "rate": lambda p: p["rate"] * p["hours"] * p["days"],
    "share": lambda p: p["total"] // p["friends"] - p["lose"],
    "discount": lambda p: p["price"] - p["price"] * p["pct"] / 100,
    "legs": lambda p: 4 * p["cows"] + 2 * p["hens"],
    "ages": lambda p: p["age"] + (p["age"] + p["gap"]) + 2 * p["years"],
}


def test_arith_word_is_deterministic_and_seeded():
    a, b = make_arith_word(70, seed=3), make_arith_word(70, seed=3)
    assert a == b
    assert [x.query for x in make_arith_word(70, seed=4)] != [x.query for x in a]


def test_arith_word_answers_recompute():
    items = make_arith_word(140, seed=0)
    assert {it.kind for it in items} == set(ARITH)
    assert len({it.query for it in items}) == len(items)
    for it in items:
        expected = ARITH[it.kind](it.params)
        assert float(it.answer) == expected and expected == int(expected) and expected > 0, it
        numbers = [int(n) for n in re.findall(r"\d+", it.query)]
        assert all(v in numbers for k, v in it.params.items() if k not in ("answer",)), it
        assert get_task("arith_word").score(f"The answer is {it.answer}.", it.answer) == 1.0
        assert get_task("arith_word").score(f"The answer is {int(it.answer) + 1}.", it.answer) == 0.0


def _options(query: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-D])\. (.+)$", query, flags=re.MULTILINE))


def _recompute(kind: str, params: dict, options: dict[str, str]) -> str:
    """The letter of the right option, worked out from the options as shown."""
    values = list(options.values())
    if kind == "compare":
        nums = {letter: float(v) for letter, v in options.items()}
        pick = max if params["which"] == "largest" else min
        right = pick(nums, key=nums.get)
        assert sum(v == nums[right] for v in nums.values()) == 1
        return right
    if kind == "alphabetical":
        target = min(values) if params["which"] == "first" else max(values)
    elif kind == "weekday":
        target = DAYS[(DAYS.index(params["today"]) + params["ahead"]) % 7]
    elif kind == "unit":
        target = str(params["x"] * params["factor"])
    elif kind == "odd_one_out":
        odd = [v for v in values if int(v) % params["k"]]
        assert len(odd) == 1
        target = odd[0]
    else:
        raise AssertionError(kind)
    matches = [letter for letter, v in options.items() if v == target]
    assert len(matches) == 1
    return matches[0]


def test_mc_reasoning_answers_recompute():
    items = make_mc_reasoning(200, seed=7)
    assert {it.kind for it in items} == {"compare", "alphabetical", "weekday", "unit", "odd_one_out"}
    for it in items:
        options = _options(it.query)
        assert list(options) == ["A", "B", "C", "D"] and len(set(options.values())) == 4, it.query
        assert _recompute(it.kind, it.params, options) == it.answer, it
        assert get_task("mc_reasoning").score(f"Answer: {it.answer}", it.answer) == 1.0


def test_mc_reasoning_gold_letters_are_balanced_and_deterministic():
    items = make_mc_reasoning(200, seed=1)
    assert collections.Counter(it.answer for it in items) == {"A": 50, "B": 50, "C": 50, "D": 50}
    assert items == make_mc_reasoning(200, seed=1)
    assert [it.query for it in make_mc_reasoning(200, seed=2)] != [it.query for it in items]


def test_synthetic_loader_splits_are_disjoint():
    test = load_queries("mc_reasoning", "synthetic", split="test", limit=40, seed=0)
    train = load_queries("mc_reasoning", "synthetic", split="train", limit=120, seed=0)
    assert len(test) == 40 and len(train) == 120
    assert set(test["split"]) == {"test"} and set(test["domain"]) == {"commonsense"}
    assert not set(test["query_id"]) & set(train["query_id"])
    items = make_mc_reasoning(40, seed=0, split="test")
    assert all(split_of(it.key) == "test" for it in items)
    assert test["query"].tolist() == [it.query for it in items]
    arith = load_queries("arith_word", "synthetic", limit=30, seed=5)
    assert len(arith) == 30 and set(arith["metric"]) == {"gsm8k_number"}
    assert arith.equals(load_queries("arith_word", "synthetic", limit=30, seed=5))


@pytest.mark.parametrize("task", ["arith_word", "mc_reasoning", "mental_math"])
def test_worked_solutions_are_right_and_never_a_pipeline_query(task):
    """A domain expert trains on the generator's train part with worked solutions that the task's own scorer marks
    right; the pipeline's synthetic queries come from the test part, so no expert sees one."""
    from fusion.levels.token.config import TokenExpertConfig
    from fusion.levels.token.experts import expert_examples
    from fusion.tasks.loaders import load_queries
    from fusion.tasks.scoring import get_scorer
    from fusion.tasks.suite import get_task

    t = get_task(task)
    solved = t.generate_solved(200, 0, "train")
    scorer = get_scorer(t.metric)
    assert all(scorer(solution, truth) == 1.0 for _, truth, solution in solved)
    assert all(solution.rstrip().endswith(f"Answer: {truth}") for _, truth, solution in solved)
    ex = expert_examples(TokenExpertConfig(name="x", train={"task": task, "source": "synthetic", "limit": 200}))
    pipeline = set(load_queries(task, "synthetic", split="test", limit=100)["query"])
    assert len(ex) == 200 and not any(q in p for p in ex["prompt"] for q in pipeline)


def test_mental_math_answers_recompute_and_score():
    from fusion.tasks.synthetic import make_mental_math

    items = make_mental_math(90, seed=0)
    assert items == make_mental_math(90, seed=0)
    assert {it.kind for it in items} == {"times", "add", "subtract"}
    op = {"times": lambda a, b: a * b, "add": lambda a, b: a + b, "subtract": lambda a, b: a - b}
    task = get_task("mental_math")
    for it in items:
        a, b = it.params["a"], it.params["b"]
        assert [int(n) for n in re.findall(r"\d+", it.query)] in ([a, b], [b, a]), it
        assert int(it.answer) == op[it.kind](a, b) > 0, it
        assert task.score(f"{it.query} It is {it.answer}.\nAnswer: {it.answer}", it.answer) == 1.0
        assert task.score(f"Answer: {int(it.answer) + 1}", it.answer) == 0.0


def test_world_capitals_answers_come_from_the_table_and_score():
    from fusion.tasks.synthetic import COUNTRIES, make_world_capitals

    capital = {c: k for c, k, _ in COUNTRIES}
    country = {k: c for c, k, _ in COUNTRIES}
    continent = {c: m for c, _, m in COUNTRIES}
    assert len(capital) == len(country) == len(COUNTRIES)  # one row per country, capitals unique
    items = make_world_capitals(120, seed=0, split="train")
    assert {it.kind for it in items} == {"capital_of", "country_of", "continent_of"}
    task = get_task("world_capitals")
    assert task.domain == "world_knowledge"
    for it in items:
        truth = {"capital_of": capital.get(it.params.get("country")),
                 "country_of": country.get(it.params.get("capital")),
                 "continent_of": continent.get(it.params.get("country"))}[it.kind]
        assert it.answer == truth, it
        assert task.score(f"It is {it.answer}.", it.answer) == 1.0
        assert task.score("I do not know.", it.answer) == 0.0
