"""Pulling the final answer out of a free-text LLM response: numbers, ``\\boxed{}``, option letters, yes/no, code.

All functions are pure and return ``None`` when the response holds no answer of the wanted kind.
"""

from __future__ import annotations

import math
import re

# A number as written in prose: optional sign (not when glued to a preceding word or digit: "5-3"), optional
# "$", thousands separators, decimals. Trailing "." is never part of it.
_NUMBER_RE = re.compile(r"(?<![\w.])(-|−)?\s?\$?\s?((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)")
_ANSWER_CUE_RE = re.compile(r"(?i)\b(?:final\s+)?answer\s*(?:is|would\s+be|should\s+be|=|:)|####")
_CUE_FILLER_RE = re.compile(
    r"(?:[^\w\-−$.]|\\boxed\{|\\text\{|(?i:\b(?:approximately|about|roughly|exactly|just|now|then)\b))*"
)


def find_numbers(text: str) -> list[str]:
    """Every number in ``text``, normalised: no "$", no thousands commas, "-" for a minus sign."""
    out = []
    for m in _NUMBER_RE.finditer(text):
        sign = "-" if m.group(1) else ""
        out.append(sign + m.group(2).replace(",", ""))
    return out


def parse_number(s: str | None) -> float | None:
    """``s`` as a float after stripping "$", commas, spaces and a trailing "."; ``None`` if it is no number."""
    if s is None:
        return None
    t = s.strip().replace(",", "").replace("$", "").replace("−", "-").replace(" ", "").rstrip(".")
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def numbers_equal(a: float | None, b: float | None, tol: float = 1e-6) -> bool:
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=tol)


def extract_final_number(text: str) -> str | None:
    """The response's final number: the first number after the last "####" / "answer is" / "Answer:" cue,
    else the number in the last ``\\boxed{}``, else the last number anywhere."""
    if not text:
        return None
    for cue in reversed(list(_ANSWER_CUE_RE.finditer(text))):
        # the number must come right after the cue: "Answer: **$1,234**", "answer is approximately 5";
        # "the answer is correct because 3 + 4 = 7" is no statement of an answer
        start = _CUE_FILLER_RE.match(text, cue.end()).end()
        m = _NUMBER_RE.match(text, start)
        if m:
            return ("-" if m.group(1) else "") + m.group(2).replace(",", "")
    boxed = last_boxed(text)
    if boxed is not None:
        nums = find_numbers(boxed)
        if nums:
            return nums[-1]
    nums = find_numbers(text)
    return nums[-1] if nums else None


def gsm8k_gold(answer: str) -> str:
    """The gold number of a GSM8K solution ("... #### 1,234" -> "1234")."""
    m = re.search(r"####\s*(.+?)\s*$", answer.strip())
    if not m:
        raise ValueError(f"GSM8K answer has no '#### <number>' line: {answer[-80:]!r}")
    gold = m.group(1).replace(",", "").replace("$", "").strip().rstrip(".")
    if parse_number(gold) is None:
        raise ValueError(f"GSM8K answer does not end in a number: {m.group(1)!r}")
    return gold


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces; ``\\boxed 5`` too."""
    if not text:
        return None
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\b", text)]
    for m in reversed(starts):
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
                j += 1
            continue  # unbalanced: try an earlier one
        if i > m.end():  # "\boxed 5"
            tail = re.match(r"[^\s$]+", text[i:])
            if tail:
                return tail.group(0).rstrip(".")
    return None


def extract_math_answer(text: str) -> str | None:
    """The final answer of a MATH-style response: last ``\\boxed{}``, else what follows the last
    "answer is" / "Answer:", else the last non-empty line."""
    if not text or not text.strip():
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    cues = list(re.finditer(r"(?i)\b(?:final\s+)?answer\s*(?:is|:)\s*:?", text))
    if cues:
        rest = text[cues[-1].end() :].strip()
        line = rest.split("\n")[0].strip()
        # stop at a sentence end (". " followed by more words), keep decimals
        line = re.split(r"\.\s+(?=[A-Z])", line)[0]
        return line.strip().strip("$").strip().rstrip(".").strip() or None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip("$").rstrip(".") if lines else None


# ---- multiple choice -------------------------------------------------------------------------------------


def extract_choice(text: str, letters: str = "ABCDEFGHIJ") -> str | None:
    """The option letter a response chose.

    In order of trust: the last explicit answer statement ("Answer: B", "the answer is (C)", "answer is
    option D"), the last ``\\boxed{B}``, a response that is only a letter ("B", "(B).", "**B**"), a response
    that starts with "B." / "B)" / "(B)", the last "(B)" anywhere, the last line starting with "B." / "B)".
    Letters are upper case only, so the article "a" is never read as option A.
    """
    if not text:
        return None
    t = text.replace("*", "").replace("`", "").replace("_", " ")
    cls = f"[{re.escape(letters)}]"
    statement = re.compile(
        r"(?i:\banswers?\b)(?:\s+(?i:is|would\s+be|should\s+be|will\s+be))?\s*(?i:option|choice)?\s*"
        rf"[:=\-]?\s*[\(\[]?\s*({cls})\s*[\)\]]?(?![\w'’])"
    )
    found = list(statement.finditer(t))
    if found:
        return found[-1].group(1)
    correct = list(re.finditer(rf"(?i:correct\s+(?:option|choice)\s+is)\s*:?\s*[\(\[]?({cls})(?![\w'’])", t))
    if correct:
        return correct[-1].group(1)
    boxed = last_boxed(t)
    if boxed is not None:
        inner = re.sub(r"\\text\{([^}]*)\}", r"\1", boxed).strip().strip("()[]{}. ")
        if len(inner) == 1 and inner in letters:
            return inner
    lone = re.fullmatch(rf"\s*[\(\[]?\s*({cls})\s*[\)\]]?\s*[.:]?\s*", t)
    if lone:
        return lone.group(1)
    lead = re.match(rf"\s*(?:\(({cls})\)|({cls})[.):])(?:\s|$)", t)
    if lead:
        return lead.group(1) or lead.group(2)
    parens = list(re.finditer(rf"\(({cls})\)", t))
    if parens:
        return parens[-1].group(1)
    line_starts = list(re.finditer(rf"(?m)^\s*({cls})[.)](?:\s|$)", t))
    if line_starts:
        return line_starts[-1].group(1)
    return None


# ---- yes / no --------------------------------------------------------------------------------------------

_YES_NO = {"yes": "yes", "true": "yes", "no": "no", "false": "no"}


def normalize_yes_no(value: str) -> str | None:
    """ "yes"/"true" -> "yes", "no"/"false" -> "no" (any case); anything else -> None."""
    return _YES_NO.get(value.strip().strip(".").lower()) if value is not None else None


def extract_yes_no(text: str) -> str | None:
    """ "yes" or "no" from a response: the last "Answer: ..." statement, else a leading yes/no/true/false,
    else the last yes/no/true/false word."""
    if not text:
        return None
    t = text.lower().replace("*", "")
    words = r"(yes|no|true|false)"
    stated = list(re.finditer(rf"\banswer\b\s*(?:is)?\s*[:=\-]?\s*[\"']?{words}\b", t))
    if stated:
        return _YES_NO[stated[-1].group(1)]
    lead = re.match(rf"\W*{words}\b", t)
    if lead:
        return _YES_NO[lead.group(1)]
    anywhere = list(re.finditer(rf"\b{words}\b", t))
    return _YES_NO[anywhere[-1].group(1)] if anywhere else None


# ---- code ------------------------------------------------------------------------------------------------

_PY_FENCE = re.compile(r"```[ \t]*(?:python3?|py)[ \t]*\r?\n(.*?)```", re.DOTALL | re.IGNORECASE)
_ANY_FENCE = re.compile(r"```[^\n`]*\r?\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The code in a response: the last ```python fenced block, else the last fenced block of any kind, else
    an unclosed final fence's rest, else FusionBench's ``[BEGIN] ... [DONE]``, else the whole response.
    Indentation is kept (a bare function body stays indented)."""
    if not text:
        return ""
    for pattern in (_PY_FENCE, _ANY_FENCE):
        blocks = pattern.findall(text)
        if blocks:
            return _trim_blank_lines(blocks[-1])
    opened = re.search(
        r"```[ \t]*(?:python3?|py)?[ \t]*\r?\n(?!.*```)(.*)\Z", text, re.DOTALL | re.IGNORECASE
    )
    if opened:
        return _trim_blank_lines(opened.group(1))
    begin = re.search(r"\[BEGIN\](.*?)(?:\[DONE\]|\Z)", text, re.DOTALL | re.IGNORECASE)
    if begin:
        return _trim_blank_lines(begin.group(1))
    return _trim_blank_lines(text)


def _trim_blank_lines(code: str) -> str:
    lines = code.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""
