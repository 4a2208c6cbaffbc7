"""Stage ``collect``: run every candidate (LLM x mode) on every query, score the answers, count tokens and cost.

Results are appended as Parquet parts (one per finished batch) under ``parts_dir/<llm>/``; a killed run resumes
where it stopped, skipping every (query_id, candidate) already in a part. A part set is tied to a fingerprint of
the LLM's spec and the generation settings; a changed setting starts that LLM afresh. A failed generation or
scorer becomes a row with ``error`` set, never a gap.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor
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

from fusion.backends import Backend, make_backend
from fusion.config import CollectConfig, LLMSpec
from fusion.log.schema import COLUMNS, candidate_name, coerce_log

logger = logging.getLogger(__name__)


def _fingerprint(spec: LLMSpec, cfg: CollectConfig) -> str:
    keep = cfg.model_dump(include={"max_new_tokens", "temperature", "seed", "dtype"})
    blob = json.dumps({"llm": spec.model_dump(), "collect": keep}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _llm_dir(parts_dir: Path, spec: LLMSpec, cfg: CollectConfig) -> Path:
    d = parts_dir / spec.name.replace("/", "__")
    fp = _fingerprint(spec, cfg)
    marker = d / "FINGERPRINT"
    if d.exists() and (not marker.exists() or marker.read_text().strip() != fp):
        logger.warning("settings for %s changed since its parts were written; collecting it afresh", spec.name)
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    marker.write_text(fp)
    return d


def read_parts(d: Path) -> pd.DataFrame:
    files = sorted(d.glob("part-*.parquet"))
    if not files:
        return coerce_log(pd.DataFrame(columns=list(COLUMNS)))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _write_part(d: Path, rows: list[dict]) -> None:
    df = coerce_log(pd.DataFrame(rows))
    name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
    tmp = d / f".{name}.tmp"
    df.to_parquet(tmp, index=False)
    tmp.replace(d / name)  # atomic: a part is either whole or absent


def _score_all(tasks: list, responses: list[str | None], truths: list[str], workers: int) -> list[tuple]:
    """Score each response with its task's scorer; returns (performance, error) pairs."""

    def one(i: int) -> tuple:
        if responses[i] is None:
            return (None, None)
        try:
            return (float(tasks[i].score(responses[i], truths[i])), None)
        except Exception as exc:  # a scorer bug must not lose the generation
            return (None, f"scoring failed: {type(exc).__name__}: {exc}")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(len(responses))))


def collect(
    queries: pd.DataFrame,
    pool: list[LLMSpec],
    cfg: CollectConfig,
    parts_dir: Path,
    *,
    model_cache: Path,
    backend_factory=make_backend,
) -> pd.DataFrame:
    """Return the routing log of ``queries`` x ``pool`` (resuming from ``parts_dir``)."""
    from fusion.tasks import get_task

    parts_dir = Path(parts_dir)
    wanted = set(queries["query_id"])
    total = len(queries) * sum(len(s.modes) for s in pool)
    logs = []
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tokens]} tok · ${task.fields[usd]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        bar = progress.add_task("collect", total=total, tokens=0, usd=0.0)
        for spec in pool:
            d = _llm_dir(parts_dir, spec, cfg)
            done = read_parts(d)
            done = done[done["query_id"].isin(wanted)]
            progress.update(bar, advance=len(done))
            todo = {
                mode: queries[~queries["query_id"].isin(done.loc[done["mode"] == mode, "query_id"])]
                for mode in spec.modes
            }
            if any(len(t) for t in todo.values()):
                backend = backend_factory(
                    spec.backend,
                    spec.model,
                    model_cache=model_cache,
                    device=cfg.device,
                    dtype=cfg.dtype,
                    batch_size=cfg.batch_size,
                )
                try:
                    for mode, qs in todo.items():
                        _run_mode(backend, spec, mode, qs, cfg, d, get_task, progress, bar)
                finally:
                    backend.close()
            part = read_parts(d)
            logs.append(part[part["query_id"].isin(wanted)])
    log = pd.concat(logs, ignore_index=True)
    return coerce_log(log.sort_values(["query_id", "candidate"]).reset_index(drop=True))


def _run_mode(backend: Backend, spec: LLMSpec, mode: str, qs: pd.DataFrame, cfg: CollectConfig, d: Path,
              get_task, progress: Progress, bar) -> None:
    if qs.empty:
        return
    prompts = [get_task(t).build_prompt(q, mode) for t, q in zip(qs["task"], qs["query"], strict=True)]
    qs = qs.assign(prompt=prompts)
    # similar lengths in one batch waste less padding
    qs = qs.assign(_len=qs["prompt"].str.len()).sort_values(["_len", "query_id"]).drop(columns="_len")
    cand = candidate_name(spec.name, mode)
    for start in range(0, len(qs), cfg.batch_size):
        batch = qs.iloc[start : start + cfg.batch_size]
        try:
            gens = backend.generate(
                batch["prompt"].tolist(),
                max_new_tokens=cfg.max_new_tokens[mode],
                temperature=cfg.temperature,
                seed=cfg.seed,
            )
            gen_error = None
        except Exception as exc:
            logger.exception("generation failed for %s on %d queries", cand, len(batch))
            gens, gen_error = [None] * len(batch), f"generation failed: {type(exc).__name__}: {exc}"
        tasks = [get_task(t) for t in batch["task"]]
        scores = _score_all(tasks, [g.text if g else None for g in gens], batch["ground_truth"].tolist(),
                            cfg.sandbox_workers)
        now = datetime.now(UTC)
        rows = []
        for (_, q), g, (perf, score_err) in zip(batch.iterrows(), gens, scores, strict=True):
            cost = (g.input_tokens * spec.input_price + g.output_tokens * spec.output_price) / 1e6 if g else None
            rows.append({
                "query_id": q["query_id"], "task": q["task"], "domain": q["domain"], "split": q["split"],
                "query": q["query"], "prompt": q["prompt"], "ground_truth": q["ground_truth"],
                "metric": q["metric"], "llm": spec.name, "mode": mode, "candidate": cand,
                "response": g.text if g else None,
                "input_tokens": g.input_tokens if g else None,
                "output_tokens": g.output_tokens if g else None,
                "cost_usd": cost, "latency_s": g.latency_s if g else None,
                "performance": perf, "judge_score": None,
                "error": gen_error or (g.error if g else None) or score_err,
                "backend": spec.backend, "collected_at": now,
            })
        _write_part(d, rows)
        tokens = sum(g.output_tokens for g in gens if g)
        usd = sum(r["cost_usd"] or 0 for r in rows)
        f = progress.tasks[bar].fields
        progress.update(bar, advance=len(batch), description=f"collect {cand}",
                        tokens=f["tokens"] + tokens, usd=f["usd"] + usd)
