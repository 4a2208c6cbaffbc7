"""Small shared formats: multiple-choice query text and lists of acceptable answers in one string."""

from __future__ import annotations

import json
from collections.abc import Sequence

LETTERS = "ABCDEFGHIJ"


def format_multiple_choice(question: str, options: Sequence[str]) -> str:
    """The question, a blank line, then one "A. option" line per option."""
    if not 2 <= len(options) <= len(LETTERS):
        raise ValueError(f"a multiple-choice question needs 2..{len(LETTERS)} options, got {len(options)}")
    lines = [f"{LETTERS[i]}. {' '.join(str(o).split())}" for i, o in enumerate(options)]
    return f"{question.strip()}\n\n" + "\n".join(lines)


def encode_golds(answers: Sequence[str]) -> str:
    """One acceptable answer as itself; several (or one that looks like a JSON list) as a JSON list."""
    seen: list[str] = []
    for a in answers:
        a = str(a).strip()
        if a and a not in seen:
            seen.append(a)
    if not seen:
        raise ValueError("no non-empty answer")
    if len(seen) == 1 and not seen[0].startswith("["):
        return seen[0]
    return json.dumps(seen, ensure_ascii=False)


def decode_golds(ground_truth: str) -> list[str]:
    """The inverse of :func:`encode_golds`: the list of acceptable answers."""
    s = ground_truth.strip()
    if s.startswith("["):
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            return [s]
        if isinstance(value, list):
            return [str(v) for v in value]
    return [s]
