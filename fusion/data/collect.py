"""Stage ``collect``: run every candidate (LLM x mode) on every query, score the answers, count tokens and cost.

Results are appended as Parquet parts (one per finished batch) under ``parts_dir/<llm>/``; a killed run resumes
where it stopped, skipping every (query_id, candidate) already in a part. When two parts hold the same
(query_id, candidate) (a retried error), the later part wins. A part set is tied to a fingerprint of what decides
the LLM's answers (its spec, the identity options of its backend, the generation settings); a changed setting
starts that LLM afresh. A failed generation or scorer becomes a row with ``error`` set, never a gap.

Cost control: :func:`plan` estimates the calls and their cost before anything runs (``fusion collect
--dry-run`` prints it); with ``collect.max_cost_usd`` set, a run whose estimate (plus what the parts already
cost) passes the cap does not start, and a run whose running total passes it stops after the part it is writing
(:class:`BudgetExceeded`; every finished part is kept).
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import asdict, dataclass
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

from fusion.backends import Backend, Request, make_backend
from fusion.backends.base import identity
from fusion.core import parts
from fusion.core.config import LLMSpec
from fusion.core.identity import digest
from fusion.data.config import CollectConfig
from fusion.importers.values import estimate_tokens
from fusion.log.schema import COLUMNS, candidate_name, coerce_log
from fusion.tasks.scoring import score_all

logger = logging.getLogger(__name__)

KEY = ["query_id", "candidate"]


class BudgetExceeded(RuntimeError):
    """The estimated or running cost of collection or judging passed its cap; finished parts are kept."""


@dataclass
class Budget:
    """A running total of what a run spends, against ``cap`` (the parameter ``key``; None: no cap)."""

    cap: float | None
    spent: float = 0.0
    key: str = "collect.max_cost_usd"

    def add(self, usd: float, where: str) -> None:
        """Count a finished part's cost; raise :class:`BudgetExceeded` once the total passes the cap."""
        self.spent += usd
        if self.cap is not None and self.spent > self.cap:
            raise BudgetExceeded(f"stopped after a part of {where}: the running cost ${self.spent:.4f} passed "
                                 f"{self.key} = ${self.cap:.4f}; every finished part is kept")


def _fingerprint(spec: LLMSpec, cfg: CollectConfig) -> str:
    keep = cfg.model_dump(include={"max_new_tokens", "temperature", "seed", "dtype"})
    return digest({"llm": identity(spec), "collect": keep})


def llm_dir(parts_dir: Path, spec: LLMSpec) -> Path:
    return Path(parts_dir) / spec.name.replace("/", "__")


def _open_llm_dir(parts_dir: Path, spec: LLMSpec, cfg: CollectConfig) -> Path:
    d = llm_dir(parts_dir, spec)
    fp = _fingerprint(spec, cfg)
    marker = d / "FINGERPRINT"
    if d.exists() and (not marker.exists() or marker.read_text().strip() != fp):
        logger.warning("settings for %s changed since its parts were written; collecting it afresh", spec.name)
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    marker.write_text(fp)
    return d


def _current(d: Path, spec: LLMSpec, cfg: CollectConfig) -> bool:
    marker = d / "FINGERPRINT"
    return marker.is_file() and marker.read_text().strip() == _fingerprint(spec, cfg)


def read_parts(d: Path) -> pd.DataFrame:
    """The rows of an LLM's parts; for a (query_id, candidate) written twice (a retried error), the later."""
    return coerce_log(parts.read_parts(d, KEY, pd.DataFrame(columns=list(COLUMNS))))


def write_part(d: Path, rows: list[dict]) -> Path:
    return parts.write_part(d, coerce_log(pd.DataFrame(rows)))


# ---- the plan ---------------------------------------------------------------------------------------------
@dataclass
class PlannedCandidate:
    candidate: str
    backend: str
    done: int  # rows already in the parts (kept)
    retry: int  # error rows to re-run (with retry_errors)
    calls: int  # calls this run makes (missing + retry)
    est_input_tokens: int
    est_output_tokens: int
    est_cost_usd: float
    spent_usd: float  # what the kept rows cost


def _todo(queries: pd.DataFrame, spec: LLMSpec, done: pd.DataFrame, retry_errors: bool) -> dict[str, pd.DataFrame]:
    keep = done[done["error"].isna()] if retry_errors else done
    return {mode: queries[~queries["query_id"].isin(keep.loc[keep["mode"] == mode, "query_id"])]
            for mode in spec.modes}


def _existing(parts_dir: Path, spec: LLMSpec, cfg: CollectConfig, wanted: set) -> pd.DataFrame:
    d = llm_dir(parts_dir, spec)
    if not _current(d, spec, cfg):
        return coerce_log(pd.DataFrame(columns=list(COLUMNS)))
    done = read_parts(d)
    return done[done["query_id"].isin(wanted)]


def plan(queries: pd.DataFrame, pool: list[LLMSpec], cfg: CollectConfig, parts_dir: Path, *,
         retry_errors: bool = False) -> list[PlannedCandidate]:
    """What a run would do, per candidate, with an estimated cost: input tokens ``ceil(chars / 4)`` of the
    prompt, output tokens the mean of the candidate's finished rows (else ``max_new_tokens``, an upper bound)."""
    from fusion.tasks import get_task

    wanted = set(queries["query_id"])
    out = []
    for spec in pool:
        done = _existing(parts_dir, spec, cfg, wanted)
        todo = _todo(queries, spec, done, retry_errors)
        for mode in spec.modes:
            cand = candidate_name(spec.name, mode)
            mine = done[done["mode"] == mode]
            qs = todo[mode]
            prompts = pd.Series([get_task(t).build_prompt(q, mode) for t, q in zip(qs["task"], qs["query"],
                                                                                     strict=True)], dtype="string")
            n_in = int(estimate_tokens(prompts).sum()) if len(prompts) else 0
            seen = mine["output_tokens"].dropna()
            per_out = float(seen.mean()) if len(seen) else float(cfg.max_new_tokens[mode])
            n_out = int(round(per_out * len(qs)))
            kept = mine[mine["error"].isna()] if retry_errors else mine
            out.append(PlannedCandidate(
                candidate=cand, backend=spec.backend, done=len(kept), retry=len(mine) - len(kept), calls=len(qs),
                est_input_tokens=n_in, est_output_tokens=n_out,
                est_cost_usd=spec.cost_usd(n_in, n_out),
                spent_usd=float(kept["cost_usd"].fillna(0).sum()),
            ))
    return out


def plan_frame(planned: list[PlannedCandidate]) -> pd.DataFrame:
    return pd.DataFrame([asdict(p) for p in planned])


def check_estimate(planned: list[PlannedCandidate], cap: float | None) -> None:
    if cap is None:
        return
    est = sum(p.est_cost_usd for p in planned)
    spent = sum(p.spent_usd for p in planned)
    if spent + est > cap:
        raise BudgetExceeded(
            f"collection not started: the estimated cost of this run ${est:.4f} plus the ${spent:.4f} its finished "
            f"rows cost passes collect.max_cost_usd = ${cap:.4f}. `fusion collect --dry-run` shows the plan; raise "
            "the cap or shrink the pool or the queries")


# ---- the run ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Whole parts of one candidate's remaining calls, in the order a sequential run makes them: a sharded run
    batches every query exactly as the sequential run does, so it writes the same rows."""

    llm: str
    mode: str
    backend: str
    index: int
    query_ids: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.llm}:{self.mode}#{self.index}"


def _with_prompts(queries: pd.DataFrame, mode: str) -> pd.DataFrame:
    from fusion.tasks import get_task

    prompts = [get_task(t).build_prompt(q, mode) for t, q in zip(queries["task"], queries["query"], strict=True)]
    return queries.assign(prompt=pd.Series(prompts, index=queries.index, dtype="string"))


def _ordered(queries: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The remaining queries of a candidate with their prompts, sorted by prompt length (less padding)."""
    qs = _with_prompts(queries, mode)
    return qs.assign(_len=qs["prompt"].str.len()).sort_values(["_len", "query_id"]).drop(columns="_len")


def make_shards(queries: pd.DataFrame, pool: list[LLMSpec], cfg: CollectConfig, parts_dir: Path, *,
                n_shards: int = 1, retry_errors: bool = False) -> list[Shard]:
    """Open every LLM's part folder (a changed fingerprint starts it afresh) and split each candidate's remaining
    calls into at most ``n_shards`` runs of whole parts (a candidate with nothing left has no shard)."""
    from fusion.backends.base import part_size

    wanted = set(queries["query_id"])
    shards = []
    for spec in pool:
        d = _open_llm_dir(parts_dir, spec, cfg)
        done = read_parts(d)
        todo = _todo(queries, spec, done[done["query_id"].isin(wanted)], retry_errors)
        size = part_size(spec, cfg.batch_size)
        for mode in spec.modes:
            ids = _ordered(todo[mode], mode)["query_id"].tolist()
            parts = [ids[i : i + size] for i in range(0, len(ids), size)]
            per = -(-len(parts) // n_shards)  # parts per shard
            for k in range(0, len(parts), per or 1):
                chunk = tuple(q for part in parts[k : k + per] for q in part)
                shards.append(Shard(spec.name, mode, spec.backend, k // per, chunk))
    return shards


def run_shard(shard: Shard, queries: pd.DataFrame, spec: LLMSpec, cfg: CollectConfig, parts_dir: Path, *,
              model_cache: Path, backend_factory=make_backend) -> int:
    """Build the shard's backend, generate, score and write the shard's parts; returns the rows written."""
    if not shard.query_ids:
        return 0
    backend = backend_factory(spec, model_cache=model_cache, device=cfg.device, dtype=cfg.dtype,
                              batch_size=cfg.batch_size)
    try:
        return _run_shard(backend, shard, queries, spec, cfg, parts_dir, Budget(None))
    finally:
        backend.close()


def _run_shard(backend: Backend, shard: Shard, queries: pd.DataFrame, spec: LLMSpec, cfg: CollectConfig,
               parts_dir: Path, budget: Budget, progress: Progress | None = None, bar=None) -> int:
    from fusion.tasks import get_task

    # the shard's queries with their prompts, in the shard's order (make_shards sorted them)
    qs = _with_prompts(queries.set_index("query_id").loc[list(shard.query_ids)].reset_index(), shard.mode)
    _run_mode(backend, spec, shard.mode, qs, cfg, llm_dir(parts_dir, spec), get_task, progress, bar, budget)
    return len(qs)


def assemble(queries: pd.DataFrame, pool: list[LLMSpec], parts_dir: Path) -> pd.DataFrame:
    """The routing log of ``queries`` x ``pool`` from the parts (the last row per key)."""
    wanted = set(queries["query_id"])
    logs = [part[part["query_id"].isin(wanted)] for part in (read_parts(llm_dir(parts_dir, s)) for s in pool)]
    log = pd.concat(logs, ignore_index=True)
    return coerce_log(log.sort_values(KEY).reset_index(drop=True))


def collect(
    queries: pd.DataFrame,
    pool: list[LLMSpec],
    cfg: CollectConfig,
    parts_dir: Path,
    *,
    model_cache: Path,
    backend_factory=make_backend,
    retry_errors: bool = False,
) -> pd.DataFrame:
    """Return the routing log of ``queries`` x ``pool`` (resuming from ``parts_dir``; with ``retry_errors``,
    error rows are re-run and replaced): the shards of :func:`make_shards`, one after the other."""
    parts_dir = Path(parts_dir)
    planned = plan(queries, pool, cfg, parts_dir, retry_errors=retry_errors)
    check_estimate(planned, cfg.max_cost_usd)
    budget = Budget(cfg.max_cost_usd, sum(p.spent_usd for p in planned))
    shards = make_shards(queries, pool, cfg, parts_dir, retry_errors=retry_errors)
    total = len(queries) * sum(len(s.modes) for s in pool)
    specs = {s.name: s for s in pool}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tokens]} tok · ${task.fields[usd]:.4f} · {task.fields[errors]} err"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    ) as progress:
        bar = progress.add_task("collect", total=total, tokens=0, usd=0.0, errors=0)
        progress.update(bar, advance=total - sum(len(s.query_ids) for s in shards))
        by_llm: dict[str, list[Shard]] = {}
        for shard in shards:
            by_llm.setdefault(shard.llm, []).append(shard)
        for llm, mine in by_llm.items():  # one backend per LLM for all its shards
            spec = specs[llm]
            backend = backend_factory(spec, model_cache=model_cache, device=cfg.device, dtype=cfg.dtype,
                                      batch_size=cfg.batch_size)
            try:
                for shard in mine:
                    _run_shard(backend, shard, queries, spec, cfg, parts_dir, budget, progress, bar)
            finally:
                backend.close()
    return assemble(queries, pool, parts_dir)


def _run_mode(backend: Backend, spec: LLMSpec, mode: str, qs: pd.DataFrame, cfg: CollectConfig, d: Path,
              get_task, progress: Progress, bar, budget: Budget) -> None:
    """``qs`` holds the prompts, in the order to run them (see :func:`_ordered`)."""
    if qs.empty:
        return
    cand = candidate_name(spec.name, mode)
    size = backend.part_size()
    for start in range(0, len(qs), size):
        batch = qs.iloc[start : start + size]
        requests = [Request(p, qid, mode, q) for p, qid, q in zip(batch["prompt"], batch["query_id"],
                                                                  batch["query"], strict=True)]
        try:
            gens = backend.generate(requests, max_new_tokens=cfg.max_new_tokens[mode],
                                    temperature=cfg.temperature, seed=cfg.seed)
            if len(gens) != len(requests):
                raise RuntimeError(f"backend returned {len(gens)} generations for {len(requests)} requests")
            gen_error = None
        except Exception as exc:
            logger.exception("generation failed for %s on %d queries", cand, len(batch))
            gens, gen_error = [None] * len(batch), f"generation failed: {type(exc).__name__}: {exc}"
        tasks = [get_task(t) for t in batch["task"]]
        texts = [g.text if g else None for g in gens]
        scores = score_all([t.score for t in tasks], texts, batch["ground_truth"].tolist(), cfg.sandbox_workers)
        now = datetime.now(UTC)
        rows = []
        for (_, q), g, (perf, score_err) in zip(batch.iterrows(), gens, scores, strict=True):
            has_tokens = g is not None and g.input_tokens is not None and g.output_tokens is not None
            cost = spec.cost_usd(g.input_tokens, g.output_tokens) if has_tokens else None
            rows.append({
                "query_id": q["query_id"], "task": q["task"], "domain": q["domain"], "split": q["split"],
                "query": q["query"], "prompt": q["prompt"], "ground_truth": q["ground_truth"],
                "metric": q["metric"], "llm": spec.name, "mode": mode, "candidate": cand,
                "response": g.text if g else None,
                "input_tokens": g.input_tokens if g else None,
                "output_tokens": g.output_tokens if g else None,
                "tokens_source": g.tokens_source if g else None,
                "cost_usd": cost, "latency_s": g.latency_s if g else None,
                "performance": perf, "judge_score": None,
                "error": gen_error or (g.error if g else None) or score_err,
                "backend": spec.backend, "collected_at": now,
            })
        write_part(d, rows)
        usd = sum(r["cost_usd"] or 0 for r in rows)
        if progress is not None:
            f = progress.tasks[bar].fields
            progress.update(bar, advance=len(batch), description=f"collect {cand}",
                            tokens=f["tokens"] + sum(r["output_tokens"] or 0 for r in rows), usd=f["usd"] + usd,
                            errors=f["errors"] + sum(r["error"] is not None for r in rows))
            if not sys.stdout.isatty():  # rich draws no live bar into a pipe or a file (dvc repro > log): a line per part
                t = progress.tasks[bar]
                print(f"collect {cand}: {t.completed:.0f}/{t.total:.0f} answers, {t.fields['errors']} errors, "
                      f"{t.elapsed or 0:.0f} s", flush=True)
        else:
            logger.info("collect %s: %d rows written (%d errors)", cand, len(rows),
                        sum(r["error"] is not None for r in rows))
        budget.add(usd, cand)
