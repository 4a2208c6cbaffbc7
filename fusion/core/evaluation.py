"""Evaluating a fusion level on one target model: the same held-out queries answered in several *arms* (zero-shot,
few-shot, templates; base, distilled, label-only), each scored with the task's metric, each difference between
arms given with a paired-bootstrap 95% interval. The thought level and the model level both report through here.

Generations are cached as Parquet parts keyed by (model, prompt, max_new_tokens): an evaluation killed mid-way
resumes, and an arm already answered (the zero-shot arm of the same target) is not generated again. A model
folder's key includes its files (adapters by content, large weights by size and time), so a retrained model at the
same path is answered afresh.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from fusion.backends import make_backend
from fusion.core.config import LLMSpec, TargetEvalConfig
from fusion.core.embedding import shared_prefixes, strip_prefixes
from fusion.core.generate import BACKEND_COLUMNS, backend_session
from fusion.core.generate import generate_cached as cached
from fusion.core.identity import model_key, output_key
from fusion.core.stats import difference, paired_bootstrap
from fusion.tasks.scoring import score_all

logger = logging.getLogger(__name__)

NO_GROUND_TRUTH = "no ground truth to score against"
ARM_COLUMNS = ["query_id", "task", "performance", "input_tokens", "output_tokens", "response", "error"]


def held_out_queries(log: pd.DataFrame, cfg: TargetEvalConfig) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per held-out query of ``cfg.split`` (``query_id, task, domain, question, prompt, ground_truth,
    metric``): the prompt the log used in ``cfg.mode`` (else any mode), without a task's shared few-shot block;
    queries that cannot be scored are counted, not kept. ``cfg.limit``: the first queries by id."""
    prefixes = shared_prefixes(log)
    rows = log[log["split"] == cfg.split]
    if rows.empty:
        raise ValueError(f"the log has no {cfg.split!r} rows to evaluate on")
    rows = rows.assign(_mode_rank=(rows["mode"] != cfg.mode).astype(int)).sort_values(["query_id", "_mode_rank"])
    q = rows.drop_duplicates("query_id").reset_index(drop=True)
    skipped: dict[str, int] = {}
    scoreable = q["ground_truth"].notna() & q["metric"].notna()
    if (~scoreable).any():
        skipped[NO_GROUND_TRUTH] = int((~scoreable).sum())
    q = q[scoreable].sort_values("query_id")
    if cfg.limit is not None:
        q = q.head(cfg.limit)
    prompt = q["prompt"].where(q["prompt"].notna(), q["query"]).astype(str).tolist()
    out = pd.DataFrame({
        "query_id": q["query_id"].astype(str).to_numpy(), "task": q["task"].astype(str).to_numpy(),
        "domain": q["domain"].astype(str).to_numpy(),
        "question": [t.strip() for t in strip_prefixes(q["query"].astype(str).tolist(), prefixes)],
        "prompt": [t.strip() for t in strip_prefixes(prompt, prefixes)],
        "ground_truth": q["ground_truth"].astype(str).to_numpy(), "metric": q["metric"].astype(str).to_numpy()})
    return out.reset_index(drop=True), skipped


def generate_cached(spec: LLMSpec, prompts: Sequence[str], cfg: TargetEvalConfig, *, cache_dir: Path,
                    model_cache: Path, label: str = "", backend_factory: Callable = make_backend) -> pd.DataFrame:
    """``text, input_tokens, output_tokens, error`` per prompt (greedy), from the cache or the model."""
    mkey = model_key(spec)
    keys = [output_key(mkey, p, max_new_tokens=cfg.max_new_tokens) for p in prompts]
    session = backend_session(spec, model_cache=model_cache, device=cfg.device, dtype=cfg.dtype,
                              batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                              backend_factory=backend_factory)
    got = cached(keys, list(prompts), session, cache_dir=cache_dir, columns=BACKEND_COLUMNS,
                 label=f"answer {label or spec.name}")
    return got[["text", "input_tokens", "output_tokens", "error"]]


def run_arm(spec: LLMSpec, queries: pd.DataFrame, prompts: Sequence[str], cfg: TargetEvalConfig, *,
            cache_dir: Path, model_cache: Path, label: str = "", workers: int = 2,
            backend_factory: Callable = make_backend) -> pd.DataFrame:
    """One arm: ``spec`` answers ``prompts`` (one per row of ``queries``), each answer scored by its task."""
    gens = generate_cached(spec, prompts, cfg, cache_dir=cache_dir, model_cache=model_cache, label=label,
                           backend_factory=backend_factory)
    return score_arm(queries, gens["text"].tolist(), gens["input_tokens"].tolist(), gens["output_tokens"].tolist(),
                     gens["error"].tolist(), workers)


def score_arm(queries: pd.DataFrame, texts: Sequence, input_tokens: Sequence, output_tokens: Sequence,
              errors: Sequence, workers: int = 2) -> pd.DataFrame:
    """An arm's answers (one per row of ``queries``) scored by each query's task metric (``ARM_COLUMNS``); a
    failed call scores 0 and keeps its error."""
    from fusion.tasks.scoring import get_scorer

    texts = [None if t is None or pd.isna(t) else str(t) for t in texts]
    scores = score_all([get_scorer(m) for m in queries["metric"]], texts, queries["ground_truth"].tolist(), workers)
    perf = [0.0 if p is None else p for p, _ in scores]
    err = [g if g is not None and pd.notna(g) else s for g, (_, s) in zip(errors, scores, strict=True)]
    return pd.DataFrame({"query_id": queries["query_id"].to_numpy(), "task": queries["task"].to_numpy(),
                         "performance": perf, "input_tokens": list(input_tokens),
                         "output_tokens": list(output_tokens), "response": texts, "error": err},
                        columns=ARM_COLUMNS)


def compare(arms: dict[str, pd.DataFrame], pairs: Sequence[tuple[str, str]], *, n_boot: int = 1000,
            seed: int = 0) -> dict:
    """Per arm: mean performance and tokens, overall and per task; per (arm, baseline) pair: the mean paired
    difference with its percentile-bootstrap 95% interval, overall and per task."""
    first = next(iter(arms.values()))
    for name, a in arms.items():
        if list(a["query_id"]) != list(first["query_id"]):
            raise ValueError(f"arm {name!r} answered other queries than the first arm: arms must be paired")
    tasks = sorted(first["task"].unique())
    report: dict = {"n_queries": len(first), "tasks": {t: int((first["task"] == t).sum()) for t in tasks},
                    "arms": {}, "per_task": {t: {} for t in tasks}, "differences": []}
    for name, a in arms.items():
        report["arms"][name] = {
            "performance": float(a["performance"].mean()) if len(a) else float("nan"),
            "input_tokens": float(pd.to_numeric(a["input_tokens"], errors="coerce").mean()),
            "output_tokens": float(pd.to_numeric(a["output_tokens"], errors="coerce").mean()),
            "errors": int(a["error"].notna().sum())}
        for t in tasks:
            report["per_task"][t][name] = float(a.loc[a["task"] == t, "performance"].mean())
    for arm, base in pairs:
        if arm not in arms or base not in arms:
            continue
        a, b = arms[arm]["performance"].to_numpy(float), arms[base]["performance"].to_numpy(float)
        diff = a - b
        entry = {"arm": arm, "baseline": base, **difference(a, b, n_boot=n_boot, seed=seed), "per_task": {}}
        for t in tasks:
            m = (first["task"] == t).to_numpy()
            entry["per_task"][t] = {**paired_bootstrap(diff[m], n_boot=n_boot, seed=seed), "n": int(m.sum())}
        report["differences"].append(entry)
    return report


def log_comparison(ml, report: dict, arms: dict[str, pd.DataFrame], table_dir: str, artifacts: Sequence[Path]) -> None:
    """Log a comparison in the active run ``ml`` (the mlflow module): each arm's performance, each difference with
    its interval, the files (JSON, plots) and each arm's answers as a table under ``table_dir``."""
    from fusion.tracking import flat_metrics

    ml.log_metrics(flat_metrics({a: {"performance": v["performance"]} for a, v in report["arms"].items()}))
    ml.log_metrics(flat_metrics({f"{d['arm']}_minus_{d['baseline']}": {k: d[k] for k in ("mean", "lo", "hi")}
                                 for d in report["differences"]}, "diff."))
    for path in artifacts:
        ml.log_artifact(str(path))
    for arm, frame in arms.items():
        ml.log_table(frame, f"{table_dir}/{arm}.json")


def rich_table(report: dict, title: str) -> Table:
    table = Table(title=title)
    table.add_column("arm")
    table.add_column("all", justify="right")
    for t in report["tasks"]:
        table.add_column(f"{t} (n={report['tasks'][t]})", justify="right")
    table.add_column("tokens in/out", justify="right")
    table.add_column("shows")
    for name, a in report["arms"].items():
        table.add_row(name, f"{a['performance']:.3f}", *[f"{report['per_task'][t][name]:.3f}" for t in report["tasks"]],
                      f"{a['input_tokens']:.0f}/{a['output_tokens']:.0f}", "")
    for d in report["differences"]:
        cells = [f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"]
        cells += [f"{d['per_task'][t]['mean']:+.3f} [{d['per_task'][t]['lo']:+.3f}, {d['per_task'][t]['hi']:+.3f}]"
                  for t in report["tasks"]]
        table.add_row(f"{d['arm']} − {d['baseline']}", *cells, "", d.get("word", ""))
    return table


def markdown(report: dict) -> str:
    tasks = list(report["tasks"])
    head = "| arm | all | " + " | ".join(f"{t} (n={report['tasks'][t]})" for t in tasks) + " | tokens in/out | shows |"
    lines = [head, "|" + "---|" * (len(tasks) + 4)]
    for name, a in report["arms"].items():
        lines.append(f"| {name} | {a['performance']:.3f} | "
                     + " | ".join(f"{report['per_task'][t][name]:.3f}" for t in tasks)
                     + f" | {a['input_tokens']:.0f}/{a['output_tokens']:.0f} | |")
    for d in report["differences"]:
        lines.append(f"| {d['arm']} − {d['baseline']} | {d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] | "
                     + " | ".join(f"{d['per_task'][t]['mean']:+.3f} [{d['per_task'][t]['lo']:+.3f}, "
                                  f"{d['per_task'][t]['hi']:+.3f}]" for t in tasks) + f" | | {d.get('word', '')} |")
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path, title: str) -> Path:
    """Each difference (arm − baseline) with its 95% interval, overall and per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    diffs = report["differences"]
    groups = ["all", *report["tasks"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(groups) * max(1, len(diffs)) ** 0.5), 3.6))
    width = 0.8 / max(1, len(diffs))
    for i, d in enumerate(diffs):
        vals = [d] + [d["per_task"][t] for t in report["tasks"]]
        x = np.arange(len(groups)) + (i - (len(diffs) - 1) / 2) * width
        mean = np.array([v["mean"] for v in vals])
        err = np.array([[v["mean"] - v["lo"] for v in vals], [v["hi"] - v["mean"] for v in vals]])
        ax.bar(x, mean, width, yerr=err, capsize=3, label=f"{d['arm']} − {d['baseline']}")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=20)
    ax.set_ylabel("performance difference (95% CI)")
    ax.set_title(title)
    if diffs:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def placeholder_plot(path: Path, message: str) -> Path:
    """The plot a stage with nothing to compare writes (a DVC plot output exists either way), saying why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
