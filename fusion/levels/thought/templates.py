"""Thought templates: a summariser turns a training question and its best responses into a short reusable
template (what the task asks, the reasoning steps, the answer format).

The summariser is any backend (a pool-style entry). Summaries are cached (:func:`fusion.core.generate.generate_cached`)
keyed by the summariser's identity, the prompt version and the prompt (question + responses): a killed run resumes,
an unchanged question is never summarised twice, a changed selection is summarised again. A failed call or an empty or unusable summary is
a row with ``error`` set (and no template), never a silent gap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from fusion.backends import make_backend
from fusion.core.generate import backend_session, generate_cached
from fusion.core.identity import model_key, output_key
from fusion.levels.thought.config import ThoughtConfig

logger = logging.getLogger(__name__)

PROMPT_VERSION = "t2"
SUMMARY_PROMPT = """Here is a solved problem.

Problem:
<<<
{question}
>>>
{answers}
In two to four sentences, explain the general method for solving problems like this one, so that someone could use it on a different problem of the same kind (not only this one), and say how the final answer should be written."""
#: the reply's start: keeps a small summariser on the method instead of echoing the instructions (SmolLM2-135M
#: echoed a "Task: / Steps: / Answer format:" outline back in 103 of 104 summaries)
PREFILL = "To solve problems like this,"
MAX_ANSWER_CHARS = 1200
MIN_TEMPLATE_CHARS = 20  # beyond the prefill
ECHO_MIN_CHARS = 30
COLUMNS = {"template": "string", "error": "string", "input_tokens": "Int64", "output_tokens": "Int64",
           "summarised_at": "datetime64[ns, UTC]"}


#: FusionFactory's summariser prompt (thought_level/thought_template_gen.py), its three parts: the core task, the
#: reasoning step, the answer template; each solution cut at 1000 characters. Spelling fixed ("approach",
#: "preferred", the third item numbered 3), nothing else changed; no prefill: the model continues "Thought Template:"
FF_PROMPT_VERSION = "ff1"
FF_MAX_ANSWER_CHARS = 1000
FF_HEAD = """Given this question and example solutions, extract a concise thought template that captures the effective reasoning pattern and can serve as guidance:

Question: {question}

Here are {n} high-performing solutions:
"""
FF_SOLUTION = "Solution {i}:\n{response}\n\n"
FF_INSTRUCTION = """Create a concise and clear thought template (1-5 sentences total) focusing on:

1. Core Task Summarization: Identify the core problem type and general approach needed (in one very concise sentence)
2. Reasoning Step: Give a clear chain of thought that can help model address this problem (1-3 sentences)
3. Answer Template: What is the preferred answer format / structure for the given query (1 sentence)

Your template should be specific enough to guide similar problems but general enough to work across variations. Use 1-2 sentences for straightforward problems and 3-5 sentences for complex ones.

Thought Template:"""
#: per prompt style: (version, prefill)
STYLES = {"compact": (PROMPT_VERSION, PREFILL), "fusionfactory": (FF_PROMPT_VERSION, "")}


def summary_prompt(question: str, answers: list[str], style: str = "compact") -> str:
    if style == "fusionfactory":
        sols = "".join(FF_SOLUTION.format(i=i, response=a if len(a) <= FF_MAX_ANSWER_CHARS
                                          else a[:FF_MAX_ANSWER_CHARS] + "... [truncated]")
                       for i, a in enumerate(answers, 1))
        return FF_HEAD.format(question=question.strip(), n=len(answers)) + sols + FF_INSTRUCTION
    if style != "compact":
        raise ValueError(f"unknown summary prompt {style!r}; expected one of {', '.join(STYLES)}")
    blocks = "".join(f"\nA correct answer:\n<<<\n{a.strip()[:MAX_ANSWER_CHARS]}\n>>>\n" for a in answers)
    return SUMMARY_PROMPT.format(question=question.strip(), answers=blocks)


def _instruction_sentences(style: str = "compact") -> list[str]:
    text = FF_INSTRUCTION if style == "fusionfactory" else SUMMARY_PROMPT.split(">>>")[-1].replace("{answers}", "")
    parts = re.split(r"(?<=[.,:;])\s+|\n+", text)
    return [p.strip().lower() for p in parts if len(p.strip()) >= ECHO_MIN_CHARS]


def clean_template(text: str | None, style: str = "compact") -> tuple[str | None, str | None]:
    """(template, None) or (None, why it is unusable): empty, too short, or repeating the instructions."""
    if text is None or not str(text).strip():
        return None, "empty summary"
    t = str(text).strip()
    t = re.sub(r"\n{3,}", "\n\n", t)
    if len(t) < len(STYLES[style][1]) + MIN_TEMPLATE_CHARS:
        return None, f"summary too short: {t!r}"
    low = " ".join(t.lower().split())
    if any(sentence in low for sentence in _instruction_sentences(style)):
        return None, "summary repeats the instructions"
    return t, None


def summarise(groups: pd.DataFrame, cfg: ThoughtConfig, parts_dir: Path, *, model_cache: Path,
              backend_factory: Callable = make_backend) -> pd.DataFrame:
    """``groups`` has one row per training query (``query_id, task, domain, question, answers`` [list], ``sources``);
    returns it with ``template`` and ``error`` (resuming from ``parts_dir``)."""
    d = Path(parts_dir) / cfg.summariser.name.replace("/", "__")
    style = cfg.summary_prompt
    version, prefill = STYLES[style]
    prompts = [summary_prompt(q, list(a), style) for q, a in zip(groups["question"], groups["answers"], strict=True)]
    mkey = model_key(cfg.summariser)
    keys = [output_key(mkey, p, prompt_version=version, max_new_tokens=cfg.summary_max_new_tokens)
            for p in prompts]
    answer = backend_session(cfg.summariser, model_cache=model_cache, device=cfg.device, dtype=cfg.dtype,
                             batch_size=cfg.batch_size, max_new_tokens=cfg.summary_max_new_tokens,
                             prefill=prefill or None, backend_factory=backend_factory)

    @contextmanager
    def session():
        with answer() as (run, size):
            def summaries(batch: list[str]) -> list[dict]:
                rows = []
                for g in run(batch):
                    tpl, err = (None, g["error"]) if g["error"] else clean_template(g["text"], style)
                    rows.append({"template": tpl, "error": err, "input_tokens": g["input_tokens"],
                                 "output_tokens": g["output_tokens"], "summarised_at": datetime.now(UTC)})
                return rows
            yield summaries, size

    done = generate_cached(keys, prompts, session, cache_dir=d, columns=COLUMNS, label="summarise")
    out = groups.copy()
    out["template"] = done["template"].to_numpy()
    out["error"] = done["error"].to_numpy()
    out["summary_input_tokens"] = done["input_tokens"].to_numpy()
    out["summary_output_tokens"] = done["output_tokens"].to_numpy()
    return out
