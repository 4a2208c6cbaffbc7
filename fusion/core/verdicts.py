"""The judge's rubric and how its verdicts are read, shared by the data stage ``judge`` (grading every answer of a
routing log) and any level that grades answers (the token level's sequence-selection baseline): the prompt, the
scale, the parser. A verdict that cannot be read is ``None`` with the reason, never a 0."""

from __future__ import annotations

import re

import pandas as pd

SCALE = (0.0, 0.3, 0.6, 0.8, 1.0)
RUBRIC_V1 = """You are grading an answer written by an AI assistant, to decide how useful it would be as an example to learn from.

Question:
<<<
{question}
>>>
{reference}
Answer to grade:
<<<
{answer}
>>>

Judge three things together: is the final answer correct; is the reasoning sound, with no wrong step; is it clear, complete and in the form the question asks for, so that it could be copied as a model answer.
Pick one score:
1.0 = correct, sound reasoning, well presented
0.8 = correct, with small flaws in the reasoning or the form
0.6 = partly correct, or correct with a serious flaw
0.3 = wrong, but with some useful steps
0.0 = wrong or useless
Reply with one line and nothing else, exactly in this form: Score: <number>"""
RUBRICS = {"v1": RUBRIC_V1}
REFERENCE_MAX_CHARS = 400
PREFILL = "Score:"  # the reply's start: keeps small judges to the format


def judge_prompt(question: str, answer: str, reference: str | None, rubric_version: str = "v1") -> str:
    ref = (f"\nReference answer (for checking only; the answer need not match its wording):\n<<<\n{reference}\n>>>\n"
           if reference else "")
    return RUBRICS[rubric_version].format(question=question.strip(), answer=answer.strip(), reference=ref)


def reference_of(ground_truth: str | None, domain: str | None) -> str | None:
    """The reference answer shown to the judge: the ground truth when short and readable (not code tests)."""
    if ground_truth is None or pd.isna(ground_truth) or domain == "code":
        return None
    gt = str(ground_truth).strip()
    return gt if 0 < len(gt) <= REFERENCE_MAX_CHARS else None


_SCORE = re.compile(r"score\W{0,6}(?:is\W{0,3})?(\d+(?:\.\d+)?)(\s*/\s*(\d+))?", re.IGNORECASE)
_NUMBER_ALONE = re.compile(r"^\W*(\d+(?:\.\d+)?)\W*$")


def parse_verdict(text: str | None) -> tuple[float | None, str | None]:
    """(score on the scale, None) or (None, why it cannot be read). Accepts ``Score: 0.8``, ``**Score**: 0.8``,
    ``{"score": 0.8}``, ``score = 8/10``, or a reply that is only a number; a value off the scale but within
    [0, 1] is snapped to the nearest scale point (``0.75`` -> 0.8); anything else is unreadable, never 0."""
    if text is None or not str(text).strip():
        return None, "empty verdict"
    text = str(text)
    found = _SCORE.findall(text)
    if found:
        value, _, denom = found[-1]  # the last one: a judge may quote the scale before answering
    else:
        alone = _NUMBER_ALONE.match(text.strip())
        if not alone:
            return None, f"no score in verdict: {_clip(text)!r}"
        value, denom = alone.group(1), ""
    x = float(value)
    if denom:
        if float(denom) <= 0:
            return None, f"unreadable score {value}/{denom}"
        x /= float(denom)
    if not 0.0 <= x <= 1.0:
        return None, f"score {x:g} outside the scale [0, 1]: {_clip(text)!r}"
    return min(SCALE, key=lambda s: abs(s - x)), None


def _clip(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "…"
