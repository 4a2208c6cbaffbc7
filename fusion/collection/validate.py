"""Stage ``validate``: a great-expectations suite over the routing log; a failure stops the pipeline.

The suite checks the contract (columns, types, ranges, uniqueness) and the completeness of the grid (every
query has every candidate). The report names each failed expectation with example rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fusion.log.schema import COLUMNS, MODES, SPLITS

logger = logging.getLogger(__name__)


class ValidationFailed(RuntimeError):
    """The routing log broke a blocking expectation; ``report`` holds the details."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.render())
        self.report = report


@dataclass
class ValidationReport:
    success: bool
    n_rows: int
    results: list[dict] = field(default_factory=list)

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.results if not r["success"]]

    def render(self) -> str:
        lines = [f"routing log validation: {'passed' if self.success else 'FAILED'} "
                 f"({len(self.results) - len(self.failures)}/{len(self.results)} expectations met, {self.n_rows} rows)"]
        for r in self.failures:
            lines.append(f"  - {r['expectation']} {r['column'] or ''}: {r['detail']}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"success": self.success, "n_rows": self.n_rows, "results": self.results}


def _suite(gx, max_error_rate: float):
    E = gx.expectations
    exps = [E.ExpectTableColumnsToMatchSet(column_set=list(COLUMNS), exact_match=True)]
    for col in ("query_id", "task", "split", "query", "llm", "mode", "candidate", "backend"):
        exps.append(E.ExpectColumnValuesToNotBeNull(column=col))
    exps += [
        E.ExpectColumnValuesToBeInSet(column="mode", value_set=list(MODES)),
        E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
        E.ExpectColumnValuesToBeBetween(column="performance", min_value=0, max_value=1),
        E.ExpectColumnValuesToBeBetween(column="judge_score", min_value=0, max_value=1),
        E.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0),
        E.ExpectColumnValuesToBeBetween(column="input_tokens", min_value=0),
        E.ExpectColumnValuesToBeBetween(column="output_tokens", min_value=0),
        E.ExpectCompoundColumnsToBeUnique(column_list=["query_id", "candidate"]),
        # a row with no score must say why
        E.ExpectColumnValuesToNotBeNull(column="performance", mostly=1.0 - max_error_rate),
    ]
    return exps


def validate_log(df: pd.DataFrame, max_error_rate: float = 0.2) -> ValidationReport:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        ctx.data_sources.add_pandas("routing")
        .add_dataframe_asset("log")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = ctx.suites.add(gx.ExpectationSuite(name="routing_log", expectations=_suite(gx, max_error_rate)))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="routing_log", data=batch_def, suite=suite))
    # GX reads plain numpy-backed columns most reliably
    plain = df.astype({c: "float64" for c, t in COLUMNS.items() if t in ("Int64", "Float64")})
    res = vd.run(batch_parameters={"dataframe": plain}, result_format={"result_format": "SUMMARY"})
    results = []
    for r in res.results:
        cfg = r.expectation_config
        detail = ""
        if not r.success:
            info = r.result or {}
            if "unexpected_count" in info:
                detail = (f"{info.get('unexpected_count')} unexpected values, e.g. "
                          f"{info.get('partial_unexpected_list', [])[:3]}")
            elif "observed_value" in info:
                detail = f"observed {info['observed_value']}"
            else:
                detail = json.dumps(info, default=str)[:300]
        results.append({
            "expectation": cfg.type,
            "column": cfg.kwargs.get("column") or cfg.kwargs.get("column_list"),
            "success": bool(r.success),
            "detail": detail,
        })
    results.append(_grid_complete(df))
    results.append(_error_rate_per_candidate(df, max_error_rate))
    return ValidationReport(success=all(r["success"] for r in results), n_rows=len(df), results=results)


def _grid_complete(df: pd.DataFrame) -> dict:
    """Every query has a row (answer or error) for every candidate."""
    n_q, n_c = df["query_id"].nunique(), df["candidate"].nunique()
    counts = df.groupby("query_id", observed=True)["candidate"].nunique()
    short = counts[counts < n_c]
    return {
        "expectation": "every_query_has_every_candidate",
        "column": None,
        "success": short.empty,
        "detail": "" if short.empty else f"{len(short)} of {n_q} queries lack a candidate, e.g. {short.index[:3].tolist()}",
    }


def _error_rate_per_candidate(df: pd.DataFrame, bound: float) -> dict:
    rate = df["error"].notna().groupby(df["candidate"], observed=True).mean()
    bad = rate[rate > bound]
    return {
        "expectation": "error_rate_per_candidate_at_most",
        "column": "error",
        "success": bad.empty,
        "detail": "" if bad.empty else f"above {bound:.0%}: " + ", ".join(f"{k} {v:.0%}" for k, v in bad.items()),
    }


def write_report(report: ValidationReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return path
