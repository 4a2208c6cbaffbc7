"""Thought templates: a summariser turns a training question and its best responses into a short reusable
template (what the task asks, the reasoning steps, the answer format).

The summariser is any backend (a pool-style entry). Summaries are cached as Parquet parts keyed by the summariser,
the prompt version and a hash of the prompt (question + responses): a killed run resumes, an unchanged question is
never summarised twice, a changed selection is summarised again. A failed call or an empty or unusable summary is
a row with ``error`` set (and no template), never a silent gap.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fusion.backends import Request, make_backend
from fusion.collection import parts
from fusion.config import ThoughtConfig

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
KEY = ["summariser", "prompt_version", "prompt_sha"]
COLUMNS = {**{k: "string" for k in KEY}, "template": "string", "error": "string", "input_tokens": "Int64",
           "output_tokens": "Int64", "summarised_at": "datetime64[ns, UTC]"}


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


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    out = df[list(COLUMNS)].copy()
    for c, t in COLUMNS.items():
        out[c] = pd.to_datetime(out[c], utc=True) if t.startswith("datetime") else out[c].astype(t)
    return out


def summarise(groups: pd.DataFrame, cfg: ThoughtConfig, parts_dir: Path, *, model_cache: Path,
              backend_factory: Callable = make_backend) -> pd.DataFrame:
    """``groups`` has one row per training query (``query_id, task, domain, question, answers`` [list], ``sources``);
    returns it with ``template`` and ``error`` (resuming from ``parts_dir``)."""
    d = Path(parts_dir) / cfg.summariser.name.replace("/", "__")
    d.mkdir(parents=True, exist_ok=True)
    prompts = [summary_prompt(q, list(a)) for q, a in zip(groups["question"], groups["answers"], strict=True)]
    shas = [_sha(p) for p in prompts]
    done = parts.read_parts(d, KEY, _empty())
    done = done[(done["summariser"] == cfg.summariser.model) & (done["prompt_version"] == PROMPT_VERSION)]
    have = set(done["prompt_sha"])
    todo = sorted({s: p for s, p in zip(shas, prompts, strict=True) if s not in have}.items(), key=lambda sp: len(sp[1]))
    if todo:
        backend = backend_factory(cfg.summariser, model_cache=model_cache, device=cfg.device, dtype=cfg.dtype,
                                  batch_size=cfg.batch_size)
        try:
            size = backend.part_size()
            with Progress(TextColumn("[bold]summarise"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                          TimeRemainingColumn()) as progress:
                bar = progress.add_task("summarise", total=len(todo), failed=0)
                for start in range(0, len(todo), size):
                    batch = todo[start:start + size]
                    try:
                        gens = backend.generate([Request(p, prefill=PREFILL) for _, p in batch],
                                                max_new_tokens=cfg.summary_max_new_tokens)
                    except Exception as exc:  # the batch is rows with the reason, and a rerun retries it
                        logger.exception("summariser failed on %d questions", len(batch))
                        gens = [None] * len(batch)
                        failure = f"summariser call failed: {type(exc).__name__}: {exc}"
                    rows = []
                    for (s, _), g in zip(batch, gens, strict=True):
                        if g is None or g.error:
                            tpl, err = None, g.error if g is not None else failure
                        else:
                            tpl, err = clean_template(g.text)
                        rows.append({"summariser": cfg.summariser.model, "prompt_version": PROMPT_VERSION,
                                     "prompt_sha": s, "template": tpl, "error": err,
                                     "input_tokens": g.input_tokens if g else None,
                                     "output_tokens": g.output_tokens if g else None,
                                     "summarised_at": datetime.now(UTC)})
                    parts.write_part(d, _coerce(pd.DataFrame(rows)))
                    progress.update(bar, advance=len(batch),
                                    failed=progress.tasks[bar].fields["failed"] + sum(r["error"] is not None for r in rows))
        finally:
            backend.close()
        done = parts.read_parts(d, KEY, _empty())
        done = done[(done["summariser"] == cfg.summariser.model) & (done["prompt_version"] == PROMPT_VERSION)]
    by_sha = done.set_index("prompt_sha")
    out = groups.copy()
    out["template"] = [by_sha.at[s, "template"] for s in shas]
    out["error"] = [by_sha.at[s, "error"] for s in shas]
    out["summary_input_tokens"] = [by_sha.at[s, "input_tokens"] for s in shas]
    out["summary_output_tokens"] = [by_sha.at[s, "output_tokens"] for s in shas]
    return out
