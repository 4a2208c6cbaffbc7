"""Stage ``judge``: an LLM judge scores every answer of a routing log (FusionFactory style), filling
``judge_score``.

The judge is any backend (a pool-style entry in ``params.judge.llm``; the embedded default judges with the local
model). It reads the question, the answer and, where the task has a short one, the reference answer, and grades
correctness, reasoning quality and fitness as training data on the scale {0, 0.3, 0.6, 0.8, 1.0} (the rubric below,
versioned). Verdicts are parsed robustly; one that cannot be read is a null score with the reason, never a 0.

Verdicts are cached as Parquet parts keyed by (query_id, candidate, judge model, rubric version, a hash of the
answer): a killed run resumes, a changed answer (a retried error) or rubric is judged again, nothing else is.
Rows without an answer are not judged (null, reason ``no response``); a score a source already has is kept unless
``judge.rejudge``.
"""

from __future__ import annotations

import logging
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.backends import Request, make_backend
from fusion.collection.collect import Budget
from fusion.config import JudgeConfig
from fusion.core import parts
from fusion.core.generate import backend_session, generate_cached
from fusion.core.identity import digest, model_key, text_key

logger = logging.getLogger(__name__)

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
KEY = ["query_id", "candidate", "judge", "rubric_version", "response_sha"]
VERDICT_COLUMNS = {**{k: "string" for k in KEY}, "judge_score": "Float64", "verdict": "string",
                   "reason": "string", "input_tokens": "Int64", "output_tokens": "Int64", "cost_usd": "Float64",
                   "judged_at": "datetime64[ns, UTC]"}
NO_RESPONSE = "no response"
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


def judge_dir(parts_dir: Path, cfg: JudgeConfig) -> Path:
    return Path(parts_dir) / cfg.llm.name.replace("/", "__")


def _empty() -> pd.DataFrame:
    return _coerce(pd.DataFrame(columns=list(VERDICT_COLUMNS)))


def empty_verdicts() -> pd.DataFrame:
    """The verdicts table with no row (the judge disabled)."""
    return pd.DataFrame({**{c: pd.Series(dtype="string") for c in KEY}, "judge_score": pd.Series(dtype="Float64"),
                         "source": pd.Series(dtype="string"), "verdict": pd.Series(dtype="string"),
                         "reason": pd.Series(dtype="string")})


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    out = df[list(VERDICT_COLUMNS)].copy()
    for col, dtype in VERDICT_COLUMNS.items():
        out[col] = pd.to_datetime(out[col], utc=True) if dtype.startswith("datetime") else out[col].astype(dtype)
    return out


def read_verdicts(parts_dir: Path, cfg: JudgeConfig) -> pd.DataFrame:
    return _coerce(parts.read_parts(judge_dir(parts_dir, cfg), KEY, _empty()))


def keys(log: pd.DataFrame, cfg: JudgeConfig) -> pd.DataFrame:
    """The cache key of every row of ``log`` (response hash null where there is no response)."""
    sha = log["response"].map(lambda r: None if r is None or pd.isna(r) else text_key(str(r)))
    return pd.DataFrame({"query_id": log["query_id"].astype("string"), "candidate": log["candidate"].astype("string"),
                         "judge": cfg.llm.model, "rubric_version": cfg.rubric_version,
                         "response_sha": sha.astype("string")}, index=log.index)


@dataclass
class JudgeResult:
    log: pd.DataFrame  # the input log with judge_score filled
    verdicts: pd.DataFrame  # one row per log row: its key, score, verdict text and the reason a score is null


def judge(log: pd.DataFrame, cfg: JudgeConfig, parts_dir: Path, *, model_cache: Path,
          backend_factory=make_backend) -> JudgeResult:
    """Judge every answered row of ``log`` not judged yet (resuming from ``parts_dir``)."""
    k = keys(log, cfg)
    keep_source = log["judge_score"].notna() & (not cfg.rejudge)
    answered = k["response_sha"].notna()
    todo_mask = answered & ~keep_source
    if todo_mask.any():
        _run(log[todo_mask], k[todo_mask], cfg, judge_dir(parts_dir, cfg), model_cache, backend_factory)
    done = read_verdicts(parts_dir, cfg)
    merged = k.merge(done, on=KEY, how="left", validate="many_to_one")
    merged.index = log.index
    reason = merged["reason"].astype("string")
    reason = reason.mask(~answered, NO_RESPONSE)
    from_source = keep_source & answered
    score = merged["judge_score"].astype("Float64").where(~from_source, log["judge_score"].astype("Float64"))
    reason = reason.mask(from_source, pd.NA)
    verdicts = k.assign(judge_score=score, source=np.where(from_source, "source", "judge"),
                        verdict=merged["verdict"], reason=reason)
    out = log.copy()
    out["judge_score"] = score
    return JudgeResult(out, verdicts.reset_index(drop=True))


def _run(todo: pd.DataFrame, k: pd.DataFrame, cfg: JudgeConfig, d: Path, model_cache: Path, factory) -> None:
    prompts = [judge_prompt(q, r, reference_of(gt, dom), cfg.rubric_version)
               for q, r, gt, dom in zip(todo["query"], todo["response"], todo["ground_truth"], todo["domain"],
                                        strict=True)]
    requests = [Request(p, qid, "direct", q, prefill=PREFILL)
                for p, qid, q in zip(prompts, todo["query_id"], todo["query"], strict=True)]
    ids = [dict(zip(KEY, row, strict=True)) for row in k[KEY].astype(str).itertuples(index=False)]
    judge_key = model_key(cfg.llm)  # what decides a verdict: the judge's weights and options, not only its name
    gen_keys = [digest(judge_key, *i.values()) for i in ids]
    answer = backend_session(cfg.llm, model_cache=model_cache, device=cfg.device, dtype=cfg.dtype,
                             batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens, backend_factory=factory)

    @contextmanager
    def session():
        with answer() as (run, size):
            def verdicts(batch: list[Request]) -> list[dict]:
                rows = []
                for g in run(batch):
                    score, reason = (None, g["error"]) if g["error"] else parse_verdict(g["text"])
                    cost = (None if g["input_tokens"] is None or g["output_tokens"] is None else
                            cfg.llm.cost_usd(g["input_tokens"], g["output_tokens"]))
                    rows.append({"judge_score": score, "verdict": g["text"], "reason": reason,
                                 "input_tokens": g["input_tokens"], "output_tokens": g["output_tokens"],
                                 "cost_usd": cost, "judged_at": datetime.now(UTC)})
                return rows
            yield verdicts, size

    budget = Budget(cfg.max_cost_usd, key="judge.max_cost_usd")
    columns = {c: t for c, t in VERDICT_COLUMNS.items() if c not in KEY}
    generate_cached(gen_keys, requests, session, cache_dir=d, columns={**dict.fromkeys(KEY, "string"), **columns},
                    label="judge", size=lambda r: len(r.prompt), error_column="reason",
                    extra=dict(zip(gen_keys, ids, strict=True)),
                    after_batch=lambda rows: budget.add(sum(r.get("cost_usd") or 0 for r in rows), "judging"))


# ---- agreement with the task metric -----------------------------------------------------------------------
def agreement(log: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Per task (and ``all``): answered rows, judged rows, Spearman correlation of judge score and task metric,
    and accuracy of ``judge >= threshold`` as a prediction of ``performance >= threshold``."""
    from scipy.stats import spearmanr

    rows = []
    answered = log[log["response"].notna() & log["performance"].notna()]
    groups = [*answered.groupby("task", observed=True), ("all", answered)]
    for task, g in groups:
        both = g[g["judge_score"].notna()]
        j, p = both["judge_score"].astype(float), both["performance"].astype(float)
        rho = float(spearmanr(j, p).statistic) if len(both) > 2 and j.nunique() > 1 and p.nunique() > 1 else math.nan
        rows.append({"task": str(task), "answered": len(g), "judged": len(both),
                     "coverage": len(both) / len(g) if len(g) else math.nan, "spearman": rho,
                     f"accuracy_at_{threshold:g}": float(((j >= threshold) == (p >= threshold)).mean())
                     if len(both) else math.nan,
                     "mean_judge": float(j.mean()) if len(both) else math.nan,
                     "mean_performance": float(p.mean()) if len(both) else math.nan})
    return pd.DataFrame(rows)


def reason_counts(verdicts: pd.DataFrame) -> dict[str, int]:
    """Why scores are null, by kind (``no score in verdict``, ``no response``, ``http 429``, ...)."""
    from fusion.log.summary import error_kinds

    r = verdicts["reason"].dropna()
    return {str(k): int(v) for k, v in error_kinds(r).value_counts().items()}
