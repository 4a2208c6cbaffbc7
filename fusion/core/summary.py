"""The one table that compares the levels: best single candidate, the routed system, templates, the distilled model
and FusionRoute, each scored on the *same* held-out queries against the *same* best-single, with its cost, its
difference to best-single, the paired-bootstrap 95% interval of that difference and a plain word (gain / loss /
no evidence). It reads what each level's evaluation wrote in the one per-query layout
(:func:`fusion.core.heldout.per_query_table`); `fusion report` prints it and `fusion report --json` prints it as
one JSON object. Where the levels evaluated different query sets, the summary uses the queries all of them answered
and says so."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from fusion.core.heldout import arm_scores
from fusion.core.stats import difference

BEST_SINGLE = "best-single"
#: (row label, level, arm): the fused systems of the levels after the query level's routed system
LEVEL_ROWS = (("templates", "thought", "templates"), ("distilled", "model", "distilled"),
              ("FusionRoute", "token", "fusionroute"))


def _ids(frame: pd.DataFrame, arm: str) -> list[str]:
    return frame.loc[frame["arm"] == arm, "query_id"].astype(str).tolist()


def summarise(levels: Mapping[str, pd.DataFrame | None], *, routed: str | None, routed_label: str | None = None,
              best_single: str | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """The summary over ``levels`` (level name -> its per-query rows, None or empty when the level did not run).
    ``levels["query"]`` must hold the ``best-single`` arm; ``routed``: the query level's arm shown as the routed
    system (the best router of the evaluation); ``best_single``: the candidate it stands for (for the label)."""
    query = levels.get("query")
    if query is None or query.empty or BEST_SINGLE not in set(query["arm"]):
        raise ValueError("no query-level evaluation with a best-single arm: run the pipeline's `evaluate` stage")
    wanted = [(f"best single ({best_single})" if best_single else "best single", "query", BEST_SINGLE)]
    if routed:
        wanted.append((routed_label or f"routed ({routed})", "query", routed))
    for label, level, arm in LEVEL_ROWS:
        frame = levels.get(level)
        if frame is not None and not frame.empty and arm in set(frame["arm"]):
            wanted.append((label, level, arm))
    evaluated = {f"{level}:{arm}": len(_ids(levels[level], arm)) for _, level, arm in wanted}
    common = set(_ids(query, BEST_SINGLE))
    for _, level, arm in wanted[1:]:
        common &= set(_ids(levels[level], arm))
    ids = sorted(common)
    if not ids:
        raise ValueError(f"the levels answered no held-out query in common (queries per arm: {evaluated})")

    base = arm_scores(query, BEST_SINGLE, ids)
    out_rows = []
    for label, level, arm in wanted:
        perf, cost = arm_scores(levels[level], arm, ids), arm_scores(levels[level], arm, ids, "cost")
        row = {"system": label, "level": level, "arm": arm, "score": float(perf.mean()),
               "cost_usd": None if np.isnan(cost).any() else float(cost.mean())}
        if arm == BEST_SINGLE:
            row.update(difference=None, lo=None, hi=None, word=None)
        else:
            ci = difference(perf, base, n_boot=n_boot, seed=seed)
            row.update(difference=ci["mean"], lo=ci["lo"], hi=ci["hi"], word=ci["word"])
        out_rows.append(row)
    partial = {k: n for k, n in evaluated.items() if n != len(ids)}
    return {"metric": "performance", "baseline": best_single or BEST_SINGLE, "n_queries": len(ids),
            "queries_fingerprint": hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16],
            "evaluated_on": evaluated,
            "note": (f"the levels evaluated different held-out sets ({partial}); every row is scored on the "
                     f"{len(ids)} queries all of them answered") if partial else None,
            "rows": out_rows}


def summary_table(summary: dict):
    from rich.table import Table

    t = Table(title=f"Fusion summary: every level on the same {summary['n_queries']} held-out queries against the "
                    f"best single candidate ({summary['baseline']})")
    for col in ("system", "level", "score", "cost $/query", "− best single (95% CI)", "shows"):
        t.add_column(col, justify="left" if col in ("system", "level", "shows") else "right")
    colour = {"gain": "green", "loss": "red", "no evidence": "yellow"}
    for r in summary["rows"]:
        diff = "" if r["difference"] is None else f"{r['difference']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
        word = "(baseline)" if r["word"] is None else f"[{colour[r['word']]}]{r['word']}[/{colour[r['word']]}]"
        t.add_row(r["system"], r["level"], f"{r['score']:.3f}",
                  "n/a" if r["cost_usd"] is None else f"{r['cost_usd']:.7f}", diff, word)
    if summary.get("note"):
        t.caption = summary["note"]
    return t
