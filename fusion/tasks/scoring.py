"""Scorers: ``score(response, ground_truth) -> float`` in [0, 1], pure functions that never call an LLM.

:data:`SCORERS` maps each metric name (the ``metric`` column of the query table and the routing log) to its
scorer, so a log row can be re-scored from its columns alone. Code scorers run the program in
:mod:`fusion.tasks.sandbox`; everything else is string processing.
"""

from __future__ import annotations

import collections
import json
import re
import string
from collections.abc import Callable, Sequence

from fusion.core.registry import Registry
from fusion.tasks.extract import (
    extract_choice,
    extract_code,
    extract_final_number,
    extract_math_answer,
    extract_yes_no,
    normalize_yes_no,
    numbers_equal,
    parse_number,
)
from fusion.tasks.formatting import decode_golds
from fusion.tasks.math_equiv import math_equal

Scorer = Callable[[str, str], float]
SCORERS = Registry[Scorer]("metric")

CODE_TIMEOUT_S = 10.0
CODE_MEMORY_MB = 512


def get_scorer(metric: str) -> Scorer:
    return SCORERS.get(metric)


def score_all(scorers: Sequence[Scorer], responses: Sequence[str | None], truths: Sequence[str],
              workers: int) -> list[tuple[float | None, str | None]]:
    """Score each response with its scorer on a pool of ``workers`` threads (code runs in sandboxes); returns
    (performance, error) pairs: a missing response is (None, None), a scorer that raises is (None, why)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[float | None, str | None]:
        if responses[i] is None:
            return (None, None)
        try:
            return (float(scorers[i](responses[i], truths[i])), None)
        except Exception as exc:  # a scorer bug must not lose the generation
            return (None, f"scoring failed: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(responses))))


def _as_score(ok: bool) -> float:
    return 1.0 if ok else 0.0


@SCORERS.register("gsm8k_number")
def score_number(response: str, ground_truth: str) -> float:
    """1.0 iff the response's final number equals the gold number (tolerance 1e-6)."""
    gold = parse_number(ground_truth)
    if gold is None:
        raise ValueError(f"gold answer is not a number: {ground_truth!r}")
    pred = parse_number(extract_final_number(response or ""))
    return _as_score(numbers_equal(pred, gold))


@SCORERS.register("math_boxed")
def score_math(response: str, ground_truth: str) -> float:
    """1.0 iff the last ``\\boxed{}`` (or stated final answer) is equivalent to the gold answer."""
    return _as_score(math_equal(extract_math_answer(response or ""), ground_truth))


@SCORERS.register("mc_letter")
def score_choice(response: str, ground_truth: str) -> float:
    """1.0 iff the option letter the response chose is the gold letter."""
    gold = ground_truth.strip().upper()
    if len(gold) != 1:
        raise ValueError(f"gold answer is not one option letter: {ground_truth!r}")
    return _as_score(extract_choice(response or "") == gold)


@SCORERS.register("yes_no")
def score_yes_no(response: str, ground_truth: str) -> float:
    """1.0 iff the response's yes/no (or true/false) matches the gold one."""
    gold = normalize_yes_no(ground_truth)
    if gold is None:
        raise ValueError(f"gold answer is not yes/no/true/false: {ground_truth!r}")
    return _as_score(extract_yes_no(response or "") == gold)


# ---- SQuAD-style text answers ----------------------------------------------------------------------------

_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles (a/an/the), single spaces."""
    text = str(text).lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """SQuAD exact match of two normalised strings."""
    return _as_score(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token-level F1 between prediction and gold."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return _as_score(pred == ref)
    common = collections.Counter(pred) & collections.Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric: Callable[[str, str], float], prediction: str, ground_truth: str) -> float:
    """``metric`` against each acceptable answer in ``ground_truth`` (one, or a JSON list), best one."""
    return max(metric(prediction, g) for g in decode_golds(ground_truth))


def contains_match(prediction: str, gold: str) -> float:
    """1.0 iff the normalised gold appears in the normalised prediction as whole words."""
    g = normalize_answer(gold)
    return _as_score(bool(g) and f" {g} " in f" {normalize_answer(prediction)} ")


@SCORERS.register("cem")
def score_cem(response: str, ground_truth: str) -> float:
    """Cover exact match: some acceptable answer, normalised, is contained (as whole words) in the response."""
    return best_over_golds(contains_match, response or "", ground_truth)


# ---- code ------------------------------------------------------------------------------------------------


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def code_program(response: str, ground_truth: str) -> str:
    """The whole program that tests the response's code against a code task's ground truth.

    HumanEval ground truth ``{"prompt", "test", "entry_point"}``: the prompt comes first (its imports and
    helper functions are part of the problem). When the extracted code defines the entry point, it follows the
    prompt as a separate block and its definition replaces the prompt's stub; otherwise the code is taken to be
    the function body and is appended to the prompt directly. Then the test and ``check(<entry point>)``.
    MBPP ground truth ``{"tests", "setup"}``: the extracted code, the setup code (MBPP's setup builds objects
    of classes the solution defines), then the assert lines.
    """
    spec = json.loads(ground_truth)
    code = extract_code(response or "")
    if "entry_point" in spec:
        prompt, entry = spec["prompt"], spec["entry_point"]
        head = prompt + "\n\n" + code if _defines(code, entry) else prompt + code
        return f"{head}\n\n{spec['test']}\n\ncheck({entry})\n"
    if "tests" in spec:
        setup = spec.get("setup") or ""
        return f"{code}\n\n{setup}\n\n" + "\n".join(spec["tests"]) + "\n"
    raise ValueError(f"code ground truth has neither 'entry_point' nor 'tests': keys {sorted(spec)}")


@SCORERS.register("pass@1")
def score_code(response: str, ground_truth: str) -> float:
    """pass@1 of one response: 1.0 iff the program (see :func:`code_program`) runs to its end in the sandbox."""
    from fusion.tasks.sandbox import run_python

    result = run_python(
        code_program(response, ground_truth), timeout_s=CODE_TIMEOUT_S, memory_mb=CODE_MEMORY_MB,
        module_name="__candidate__",
    )  # fmt: skip
    return _as_score(result.passed)


def score_code_many(
    responses: Sequence[str], ground_truths: Sequence[str], *, workers: int | None = None
) -> list[float]:
    """:func:`score_code` for many pairs, run by a pool of ``workers`` sandboxes."""
    from fusion.tasks.sandbox import run_many

    programs = [code_program(r, g) for r, g in zip(responses, ground_truths, strict=True)]
    results = run_many(
        programs,
        workers=workers,
        timeout_s=CODE_TIMEOUT_S,
        memory_mb=CODE_MEMORY_MB,
        module_name="__candidate__",
    )
    return [_as_score(r.passed) for r in results]
