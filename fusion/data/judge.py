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
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.backends import Request, make_backend
from fusion.core import parts
from fusion.core.config import JudgeConfig
from fusion.core.generate import backend_session, generate_cached
from fusion.core.identity import digest, model_key, text_key
from fusion.core.verdicts import PREFILL, SCALE, judge_prompt, parse_verdict, reference_of
from fusion.data.collect import Budget

logger = logging.getLogger(__name__)

__all__ = ["PREFILL", "SCALE", "agreement", "judge", "judge_prompt", "parse_verdict", "read_verdicts",
           "reason_counts", "reference_of"]
KEY = ["query_id", "candidate", "judge", "rubric_version", "response_sha"]
VERDICT_COLUMNS = {**{k: "string" for k in KEY}, "judge_score": "Float64", "verdict": "string",
                   "reason": "string", "input_tokens": "Int64", "output_tokens": "Int64", "cost_usd": "Float64",
                   "judged_at": "datetime64[ns, UTC]"}
NO_RESPONSE = "no response"
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
    return parts.typed(df, VERDICT_COLUMNS)


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
