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


def summary_prompt(question: str, answers: list[str]) -> str:
    blocks = "".join(f"\nA correct answer:\n<<<\n{a.strip()[:MAX_ANSWER_CHARS]}\n>>>\n" for a in answers)
    return SUMMARY_PROMPT.format(question=question.strip(), answers=blocks)


def _instruction_sentences() -> list[str]:
    text = SUMMARY_PROMPT.split(">>>")[-1]
    parts = re.split(r"(?<=[.,:;])\s+|\n+", text.replace("{answers}", ""))
    return [p.strip().lower() for p in parts if len(p.strip()) >= ECHO_MIN_CHARS]


def clean_template(text: str | None) -> tuple[str | None, str | None]:
    """(template, None) or (None, why it is unusable): empty, too short, or repeating the instructions."""
    if text is None or not str(text).strip():
        return None, "empty summary"
    t = str(text).strip()
    t = re.sub(r"\n{3,}", "\n\n", t)
    if len(t) < len(PREFILL) + MIN_TEMPLATE_CHARS:
        return None, f"summary too short: {t!r}"
    low = " ".join(t.lower().split())
    if any(sentence in low for sentence in _instruction_sentences()):
        return None, "summary repeats the instructions"
    return t, None


def summarise(groups: pd.DataFrame, cfg: ThoughtConfig, parts_dir: Path, *, model_cache: Path,
              backend_factory: Callable = make_backend) -> pd.DataFrame:
    """``groups`` has one row per training query (``query_id, task, domain, question, answers`` [list], ``sources``);
    returns it with ``template`` and ``error`` (resuming from ``parts_dir``)."""
    d = Path(parts_dir) / cfg.summariser.name.replace("/", "__")
    prompts = [summary_prompt(q, list(a)) for q, a in zip(groups["question"], groups["answers"], strict=True)]
    mkey = model_key(cfg.summariser)
    keys = [output_key(mkey, p, prompt_version=PROMPT_VERSION, max_new_tokens=cfg.summary_max_new_tokens)
            for p in prompts]
    answer = backend_session(cfg.summariser, model_cache=model_cache, device=cfg.device, dtype=cfg.dtype,
                             batch_size=cfg.batch_size, max_new_tokens=cfg.summary_max_new_tokens, prefill=PREFILL,
                             backend_factory=backend_factory)

    @contextmanager
    def session():
        with answer() as (run, size):
            def summaries(batch: list[str]) -> list[dict]:
                rows = []
                for g in run(batch):
                    tpl, err = (None, g["error"]) if g["error"] else clean_template(g["text"])
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
