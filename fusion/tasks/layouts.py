"""One record in a dataset's own Hugging Face field layout -> (query, ground_truth).

Each converter takes the record (a mapping) and a seed (used only where options are shuffled: GPQA) and
returns the self-contained query text and the ground-truth string of the query table. A record that cannot be
converted (no label, no boxed answer) raises ``ValueError``; loaders skip such records and say how many.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fusion.tasks.extract import gsm8k_gold, last_boxed
from fusion.tasks.formatting import LETTERS, encode_golds, format_multiple_choice

Record = Mapping[str, Any]


def _field(rec: Record, *names: str) -> Any:
    for n in names:
        if n in rec and rec[n] is not None:
            return rec[n]
    raise ValueError(f"record has none of the fields {names}; it has {sorted(rec)}")


def _text(rec: Record, *names: str) -> str:
    value = _field(rec, *names)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {names[0]!r} is empty or not text")
    return value.strip()


# ---- math ------------------------------------------------------------------------------------------------


def gsm8k(rec: Record, seed: int = 0) -> tuple[str, str]:
    return _text(rec, "question"), gsm8k_gold(_text(rec, "answer"))


def gsm8k_solution(rec: Record) -> str:
    """GSM8K's worked solution, its calculator annotations (``<<3*4=12>>``) removed and its ``#### N`` line
    written as the prompt asks (``Answer: N``)."""
    text = re.sub(r"<<[^>]*>>", "", _text(rec, "answer"))
    body = re.sub(r"\n?####.*$", "", text.strip(), flags=re.DOTALL).strip()
    return f"{body}\nAnswer: {gsm8k_gold(_text(rec, 'answer'))}"


def hendrycks_math(rec: Record, seed: int = 0) -> tuple[str, str]:
    """MATH: ``problem`` and ``solution`` (gold = the solution's last ``\\boxed{}``), or an ``answer`` field."""
    query = _text(rec, "problem")
    answer = rec.get("answer")
    if not (isinstance(answer, str) and answer.strip()):
        answer = last_boxed(_text(rec, "solution"))
    if not answer:
        raise ValueError("MATH record has no answer and no \\boxed{} in its solution")
    return query, answer.strip()


# ---- code ------------------------------------------------------------------------------------------------


def mbpp(rec: Record, seed: int = 0) -> tuple[str, str]:
    """MBPP (full or sanitized config): the task text plus its first test as an example of the signature."""
    text = _text(rec, "text", "prompt")
    tests = [str(t) for t in _field(rec, "test_list")]
    if not tests:
        raise ValueError("MBPP record has no tests")
    setup = str(rec.get("test_setup_code") or "")
    imports = rec.get("test_imports")
    if imports is not None and len(imports):
        setup = "\n".join([*map(str, imports), setup]).strip()
    query = f"{text}\n\nYour code should pass this example test:\n{tests[0]}"
    return query, json.dumps({"tests": tests, "setup": setup}, ensure_ascii=False)


def mbpp_solution(rec: Record) -> str:
    """MBPP's reference code, as the prompt asks for it (one fenced block)."""
    code = _text(rec, "code").replace("\r\n", "\n").replace("\t", "    ").strip()
    return f"```python\n{code}\n```"


def human_eval(rec: Record, seed: int = 0) -> tuple[str, str]:
    """HumanEval: the function prompt; ground truth = prompt, test and entry point (never the solution)."""
    prompt = _field(rec, "prompt")
    gt = {"prompt": prompt, "test": _field(rec, "test"), "entry_point": _text(rec, "entry_point")}
    return prompt.strip(), json.dumps(gt, ensure_ascii=False)


# ---- multiple choice -------------------------------------------------------------------------------------


def _choices(rec: Record) -> tuple[list[str], list[str]]:
    choices = _field(rec, "choices")
    if isinstance(choices, Mapping):
        texts, labels = list(choices["text"]), [str(x).strip() for x in choices["label"]]
    else:
        texts, labels = list(choices), list(LETTERS[: len(choices)])
    if len(texts) != len(labels) or len(texts) < 2:
        raise ValueError(f"bad choices: {len(texts)} texts, {len(labels)} labels")
    return [str(t) for t in texts], labels


def _gold_letter(labels: Sequence[str], key: Any) -> str:
    """The letter of the option whose label is ``key`` (labels may be "A".."E" or "1".."4")."""
    key = str(key).strip()
    if key in labels:
        return LETTERS[list(labels).index(key)]
    raise ValueError(f"answer key {key!r} is not one of the labels {list(labels)}")


def _labelled_mc(rec: Record, question_field: str) -> tuple[str, str]:
    texts, labels = _choices(rec)
    gold = _gold_letter(labels, _field(rec, "answerKey"))
    return format_multiple_choice(_text(rec, question_field), texts), gold


def commonsense_qa(rec: Record, seed: int = 0) -> tuple[str, str]:
    return _labelled_mc(rec, "question")


def arc(rec: Record, seed: int = 0) -> tuple[str, str]:
    return _labelled_mc(rec, "question")


def openbook_qa(rec: Record, seed: int = 0) -> tuple[str, str]:
    return _labelled_mc(rec, "question_stem")


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return " ".join(text.split())


def hellaswag(rec: Record, seed: int = 0) -> tuple[str, str]:
    """HellaSwag: ``activity_label``, ``ctx``, ``endings``, ``label`` (a string index; empty in the test split)."""
    ctx = rec.get("ctx") or f"{rec.get('ctx_a', '')} {rec.get('ctx_b', '')}"
    label = str(_field(rec, "label")).strip()
    if not label.isdigit():
        raise ValueError("HellaSwag record has no label")
    endings = [_hellaswag_clean(e) for e in _field(rec, "endings")]
    activity = str(rec.get("activity_label") or "").strip()
    context = _hellaswag_clean(ctx)
    stem = f"{activity}: {context}" if activity else context
    return format_multiple_choice(stem, endings), LETTERS[int(label)]


def mmlu(rec: Record, seed: int = 0) -> tuple[str, str]:
    """MMLU: ``question``, ``choices`` (list), ``answer`` (an index, or a letter)."""
    choices = [str(c) for c in _field(rec, "choices")]
    answer = _field(rec, "answer")
    if isinstance(answer, str) and answer.strip().upper() in LETTERS[: len(choices)]:
        gold = answer.strip().upper()
    else:
        idx = int(answer)
        if not 0 <= idx < len(choices):
            raise ValueError(f"MMLU answer index {idx} out of range")
        gold = LETTERS[idx]
    return format_multiple_choice(_text(rec, "question"), choices), gold


def gpqa(rec: Record, seed: int = 0) -> tuple[str, str]:
    """GPQA: the correct and three incorrect answers, in an order fixed by (seed, question)."""
    question = _text(rec, "Question")
    correct = _text(rec, "Correct Answer")
    options = [correct] + [_text(rec, f"Incorrect Answer {i}") for i in (1, 2, 3)]
    order = list(range(4))
    random.Random(f"{seed}\x1f{question}").shuffle(order)
    shuffled = [options[i] for i in order]
    return format_multiple_choice(question, shuffled), LETTERS[order.index(0)]


# ---- open answers ----------------------------------------------------------------------------------------


def natural_qa(rec: Record, seed: int = 0) -> tuple[str, str]:
    """NQ-Open (``question``, ``answer`` list) or FlashRAG's nq (``golden_answers``)."""
    answers = _field(rec, "answer", "golden_answers")
    if isinstance(answers, str):
        answers = [answers]
    return _text(rec, "question"), encode_golds(list(answers))


def trivia_qa(rec: Record, seed: int = 0) -> tuple[str, str]:
    """TriviaQA: gold = the answer's ``value`` and its ``aliases``."""
    answer = _field(rec, "answer")
    if isinstance(answer, Mapping):
        golds = [answer.get("value") or "", *list(answer.get("aliases") or [])]
    else:
        golds = [answer] if isinstance(answer, str) else list(answer)
    return _text(rec, "question"), encode_golds(golds)


def squad(rec: Record, seed: int = 0) -> tuple[str, str]:
    """SQuAD: the context passage and the question; gold = the annotated answer texts."""
    answers = _field(rec, "answers")
    texts = answers["text"] if isinstance(answers, Mapping) else answers
    query = f"Passage: {_text(rec, 'context')}\n\nQuestion: {_text(rec, 'question')}"
    return query, encode_golds(list(texts))


def boolq(rec: Record, seed: int = 0) -> tuple[str, str]:
    """BoolQ: passage and question; gold "true" or "false"."""
    question = _text(rec, "question")
    if not question.endswith("?"):
        question += "?"
    answer = _field(rec, "answer", "label")
    if isinstance(answer, str):
        value = answer.strip().lower()
        if value not in ("true", "false", "yes", "no"):
            raise ValueError(f"BoolQ answer is not boolean: {answer!r}")
        gold = "true" if value in ("true", "yes") else "false"
    else:
        gold = "true" if bool(answer) else "false"
    return f"Passage: {_text(rec, 'passage')}\n\nQuestion: {question}", gold
