"""Is a MATH answer equivalent to the gold one? Normalisation plus numeric and (small) symbolic comparison.

Not a computer algebra system: strings are normalised the way the MATH benchmark's reference checker does
(spaces, ``\\left``/``\\right``, ``\\!``, ``dfrac``/``tfrac``, degrees, dollars, percent, units in ``\\text{}``,
``\\frac12`` -> ``\\frac{1}{2}``, ``a/b`` -> ``\\frac{a}{b}``, "x = 5" -> "5"); then both sides are compared
as numbers when both parse as numbers, element-wise for tuples, and finally with sympy for short expressions
built from a whitelist of tokens (digits, + - * / ^, parentheses, single-letter variables, ``sqrt``, ``pi``).
The whitelist matters: sympy's parser evaluates Python, and responses are untrusted text.
"""

from __future__ import annotations

import math
import re

_TEXT_CMD = re.compile(r"\\(?:text|textrm|mbox)\s*\{([^{}]*)\}")


def _strip_text(s: str) -> str:
    whole = re.fullmatch(r"\\(?:text|textrm|textbf|mbox|mathrm)\s*\{(.*)\}", s)
    if whole:
        return whole.group(1).strip()
    s = re.sub(r"\\(?:textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", s)
    without = _TEXT_CMD.sub("", s).strip()
    return without if without else _TEXT_CMD.sub(r"\1", s)  # "\text{...}" next to a value is units


def _fix_fracs(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``; ``\\frac1{2}`` -> ``\\frac{1}{2}``; ``\\frac{1}2`` -> ``\\frac{1}{2}``."""
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        args: list[str] = []
        rest = part
        for _ in range(2):
            if rest.startswith("{"):
                depth = 0
                for i, ch in enumerate(rest):
                    depth += ch == "{"
                    depth -= ch == "}"
                    if depth == 0:
                        args.append(rest[: i + 1])
                        rest = rest[i + 1 :]
                        break
                else:
                    args.append(rest)
                    rest = ""
            elif rest:
                args.append("{" + rest[0] + "}")
                rest = rest[1:]
        out += "".join(args) + rest
    return out


def _fix_sqrt(s: str) -> str:
    return re.sub(r"\\sqrt\s*(\w)", r"\\sqrt{\1}", s)


def normalize_math(answer: str) -> str:
    """Canonical text of a MATH answer, for string comparison."""
    s = str(answer).strip()
    s = s.replace("\n", "")
    for junk in ("\\!", "\\,", "\\;", "\\:", "\\ ", "\\displaystyle"):
        s = s.replace(junk, "")
    s = s.replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("°", "")
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = _strip_text(s.strip())
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    eq = s.split("=")
    if len(eq) == 2 and len(eq[0].strip()) <= 2:
        s = eq[1]
    s = _fix_sqrt(s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    m = re.fullmatch(r"(-?)(\d+)/(\d+)", s)
    if m:
        s = f"{m.group(1)}\\frac{{{m.group(2)}}}{{{m.group(3)}}}"
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        s = s.replace(",", "")
    s = s.rstrip(".")
    return s


_FRAC_NUM = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}")


def to_number(s: str) -> float | None:
    """A normalised answer as a float when it is a plain number or a numeric ``\\frac{a}{b}``."""
    if re.fullmatch(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:e-?\d+)?", s):
        return float(s)
    m = _FRAC_NUM.fullmatch(s)
    if m:
        den = float(m.group(3))
        if den == 0:
            return None
        v = float(m.group(2)) / den
        return -v if m.group(1) else v
    return None


def _split_tuple(s: str) -> tuple[str, list[str]] | None:
    """("(", ["1", "2"]) for "(1,2)"; splits on top-level commas only."""
    if len(s) >= 2 and s[0] in "([{" and s[-1] in ")]}":
        inner, brackets = s[1:-1], s[0] + s[-1]
    elif "," in s:
        inner, brackets = s, ""
    else:
        return None
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return (brackets, parts) if len(parts) > 1 else None


def _latex_to_expr(s: str) -> str | None:
    """A whitelisted, sympy-parsable expression for a short normalised answer, or None."""
    if len(s) > 80:
        return None
    t = s
    for _ in range(6):  # nested \frac / \sqrt, innermost first
        new = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", t)
        new = re.sub(r"\\sqrt\[(\d{1,2}|[a-z])\]\{([^{}]*)\}", r"((\2)^(1/\1))", new)
        new = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", new)
        if new == t:
            break
        t = new
    t = t.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*")
    t = t.replace("{", "(").replace("}", ")")
    if not re.fullmatch(r"[0-9a-z+\-*/().^ ]*", t) or "**" in t or not t.strip():
        return None
    if any(w not in ("sqrt", "pi") for w in re.findall(r"[a-z]{2,}", t)):
        return None
    t = t.replace(" ", "")
    return t if all(_small_power(t, m.start()) for m in re.finditer(r"\^", t)) else None


_EXPONENT = re.compile(r"\^(\d{1,2}(?![\d.])|[a-z](?![a-z])|\([a-z0-9+\-/]{1,8}\))")


def _small_power(t: str, i: int) -> bool:
    """Whether the power at ``t[i] == "^"`` is bounded, so that sympy cannot be asked for 9^(9^9).

    The exponent is at most a two-digit number, one letter, or a short group of letters, two-digit numbers,
    + - /; no power follows it directly; the base is at most a three-digit number, a letter or a group that
    holds no other power."""
    m = _EXPONENT.match(t, i)
    if not m or re.search(r"\d{3}", m.group(1)) or t[m.end() : m.end() + 1] == "^":
        return False
    before = t[:i]
    if before.endswith(")"):
        depth = 0
        for j in range(len(before) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(before[j], 0)
            if depth == 0:
                return "^" not in before[j:]
        return False
    number = re.search(r"[\d.]+$", before)
    if number:
        return len(number.group(0)) <= 3
    return bool(re.search(r"[a-z]$", before))


def _sympy_equal(a: str, b: str) -> bool:
    ea, eb = _latex_to_expr(a), _latex_to_expr(b)
    if ea is None or eb is None:
        return False
    try:
        import sympy
        from sympy.parsing.sympy_parser import (
            convert_xor,
            implicit_multiplication,
            parse_expr,
            standard_transformations,
        )

        names = {c: sympy.Symbol(c) for c in "abcdefghijklmnopqrstuvwxyz"}
        names.update({"sqrt": sympy.sqrt, "pi": sympy.pi})
        transformations = (*standard_transformations, implicit_multiplication, convert_xor)
        xa = parse_expr(ea, local_dict=names, global_dict={"__builtins__": {}, **_sympy_globals()},
                        transformations=transformations)  # fmt: skip
        xb = parse_expr(eb, local_dict=names, global_dict={"__builtins__": {}, **_sympy_globals()},
                        transformations=transformations)  # fmt: skip
        if xa.free_symbols or xb.free_symbols:
            return bool(sympy.simplify(xa - xb) == 0)
        va, vb = complex(sympy.N(xa)), complex(sympy.N(xb))
        return math.isclose(va.real, vb.real, rel_tol=1e-6, abs_tol=1e-9) and math.isclose(
            va.imag, vb.imag, rel_tol=1e-6, abs_tol=1e-9
        )
    except Exception:  # a parse or simplification failure means "not shown equal"
        return False


def _sympy_globals() -> dict:
    import sympy

    return {
        "Integer": sympy.Integer,
        "Float": sympy.Float,
        "Rational": sympy.Rational,
        "Symbol": sympy.Symbol,
    }


def math_equal(prediction: str | None, gold: str) -> bool:
    """Whether ``prediction`` is the same answer as ``gold`` (see the module docstring)."""
    if prediction is None or not str(prediction).strip():
        return False
    a, b = normalize_math(prediction), normalize_math(gold)
    if a == b:
        return True
    va, vb = to_number(a), to_number(b)
    if va is not None and vb is not None:
        return math.isclose(va, vb, rel_tol=1e-6, abs_tol=1e-9)
    ta, tb = _split_tuple(a), _split_tuple(b)
    if ta and tb:
        return (
            ta[0] == tb[0]
            and len(ta[1]) == len(tb[1])
            and all(math_equal(x, y) for x, y in zip(ta[1], tb[1], strict=True))
        )
    if ta or tb:
        return False
    return _sympy_equal(a, b)
