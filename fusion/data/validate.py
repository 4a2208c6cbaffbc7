"""Stage ``validate``: great-expectations suites over the ingested routing log (and the query table); offending
rows are quarantined, the rest becomes the routing log the routers train on.

Row-level expectations (types, ranges, nulls, allowed values, uniqueness of (query_id, candidate), a complete
candidate grid per query, train/test disjoint by query text, ...) are *non-blocking*: the rows that break them go
to the quarantine file with the failed expectations named per row, and the pipeline goes on with the others.
*Blocking* expectations stop it with a readable summary: the table's columns, a candidate's error rate above
``validate.max_error_rate``, more quarantined rows than ``validate.max_quarantine_fraction``, and a query table
with repeated ids. Every expectation but the error-rate and quarantine-share bounds is a great-expectations
expectation (row-level ones over helper columns computed here: a row's query is complete, its text is in train);
GX Data Docs render them as HTML.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.data.config import ValidateConfig
from fusion.log.schema import COLUMNS, MODES, REQUIRED_NON_NULL, SPLITS, coerce_log

logger = logging.getLogger(__name__)

SOURCE = "_source"
FAILED = "failed_expectations"
NUMBER = r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*$"
INTEGER = r"^\s*[+-]?\d+(?:\.0*)?\s*$"
NUMERIC = {c: t for c, t in COLUMNS.items() if t in ("Int64", "Float64")}
#: what makes two rows of one (query_id, candidate) the same row
CONTENT = ["task", "split", "query", "llm", "mode", "response", "performance", "judge_score", "cost_usd",
           "input_tokens", "output_tokens", "error"]


class ValidationFailed(RuntimeError):
    """A blocking expectation failed; ``report`` holds the details."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(report.render())
        self.report = report


@dataclass
class ValidationReport:
    n_rows: int
    n_quarantined: int = 0
    results: list[dict] = field(default_factory=list)
    data_docs: str | None = None

    @property
    def success(self) -> bool:
        """No blocking expectation failed."""
        return not self.blocking_failures

    @property
    def failures(self) -> list[dict]:
        return [r for r in self.results if not r["success"]]

    @property
    def blocking_failures(self) -> list[dict]:
        return [r for r in self.failures if r["blocking"]]

    def render(self) -> str:
        met = len(self.results) - len(self.failures)
        head = (f"routing log validation: {'passed' if self.success else 'FAILED'} ({met}/{len(self.results)} "
                f"expectations met, {self.n_rows} rows, {self.n_quarantined} quarantined)")
        lines = [head]
        for r in self.failures:
            kind = "BLOCKING" if r["blocking"] else f"quarantined {r['rows']} row(s)"
            lines.append(f"  - [{r['suite']}] {r['name']} ({r['expectation']}{', ' + r['column'] if r['column'] else ''})"
                         f" — {kind}: {r['detail']}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"success": self.success, "n_rows": self.n_rows, "n_quarantined": self.n_quarantined,
                "data_docs": self.data_docs, "results": self.results}


@dataclass
class Validated:
    report: ValidationReport
    clean: pd.DataFrame  # the routing log (typed), without the quarantined rows
    quarantine: pd.DataFrame  # the quarantined rows as ingested, with `failed_expectations` and `_source`


# ---- helper columns ---------------------------------------------------------------------------------------
def _normalise_text(s: pd.Series) -> pd.Series:
    return s.astype("string").str.lower().str.replace(r"\s+", " ", regex=True).str.strip()


def _checked_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """What the row-level suite reads (once the schema check passed): numbers parsed (unparseable -> null, caught
    by the type expectation on the text), the raw text of numeric columns, and the helper columns of the
    cross-row expectations."""
    chk = pd.DataFrame(index=raw.index)
    for c in COLUMNS:
        if c in NUMERIC:
            chk[c] = pd.to_numeric(raw[c].astype("string").str.strip(), errors="coerce").astype("float64")
            chk[f"{c}__text"] = raw[c].astype("string").astype(object).where(raw[c].notna(), None)
        else:
            chk[c] = raw[c].astype(object).where(raw[c].notna(), None)
    ok = raw["error"].isna()
    for c in ("input_tokens", "output_tokens"):
        chk[f"{c}__ok_row"] = chk[c].where(ok.to_numpy(), np.nan)
    n_cands = raw["candidate"].nunique()
    per_query = raw.groupby("query_id", dropna=False)["candidate"].transform("nunique")
    chk["query_has_every_candidate"] = (per_query == n_cands).astype(object)
    text = _normalise_text(raw["query"])
    train_texts = set(text[raw["split"] == "train"].dropna())
    in_train = text.isin(train_texts) & (raw["split"] != "train")
    chk["text_not_in_train"] = (~in_train.fillna(False)).astype(object)
    consistent = raw.groupby("query_id", dropna=False)[["task", "query"]].transform("nunique").max(axis=1) <= 1
    chk["query_id_one_task_and_text"] = consistent.astype(object)
    when = raw["collected_at"]
    chk["collected_at_is_a_time"] = (when.isna() | _times(when).notna()).astype(object)
    chk["score_or_error"] = (chk["performance"].notna() | ~ok).astype(object)
    return chk


# ---- the suites -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    name: str  # readable: what a row must satisfy
    expectation: object  # a GX expectation
    blocking: bool = False
    column: str | None = None  # the log column it is about (None: the table or cross-row)


def schema_checks(gx) -> list[Check]:
    return [Check("the log has exactly the contract's columns",
                  gx.expectations.ExpectTableColumnsToMatchSet(column_set=list(COLUMNS), exact_match=True),
                  blocking=True)]


def routing_log_checks(gx) -> list[Check]:
    """Row-level expectations, over :func:`_checked_frame`."""
    E = gx.expectations
    checks = []
    for col, dtype in NUMERIC.items():
        checks.append(Check(f"{col} is {'an integer' if dtype == 'Int64' else 'a number'}",
                            E.ExpectColumnValuesToMatchRegex(column=f"{col}__text",
                                                             regex=INTEGER if dtype == "Int64" else NUMBER), column=col))
    for col in REQUIRED_NON_NULL:
        checks.append(Check(f"{col} is present", E.ExpectColumnValuesToNotBeNull(column=col), column=col))
    checks += [
        Check("mode is direct or think", E.ExpectColumnValuesToBeInSet(column="mode", value_set=list(MODES)),
              column="mode"),
        Check("split is train, val or test", E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
              column="split"),
        Check("performance in [0, 1]", E.ExpectColumnValuesToBeBetween(column="performance", min_value=0,
                                                                        max_value=1), column="performance"),
        Check("judge_score in [0, 1]", E.ExpectColumnValuesToBeBetween(column="judge_score", min_value=0,
                                                                        max_value=1), column="judge_score"),
        Check("cost_usd >= 0", E.ExpectColumnValuesToBeBetween(column="cost_usd", min_value=0), column="cost_usd"),
        Check("latency_s >= 0", E.ExpectColumnValuesToBeBetween(column="latency_s", min_value=0),
              column="latency_s"),
        Check("input_tokens > 0 on a successful row",
              E.ExpectColumnValuesToBeBetween(column="input_tokens__ok_row", min_value=1), column="input_tokens"),
        Check("output_tokens > 0 on a successful row",
              E.ExpectColumnValuesToBeBetween(column="output_tokens__ok_row", min_value=1), column="output_tokens"),
        Check("collected_at is a time", E.ExpectColumnValuesToBeInSet(column="collected_at_is_a_time",
                                                                      value_set=[True]), column="collected_at"),
        Check("a row has a score or an error", E.ExpectColumnValuesToBeInSet(column="score_or_error",
                                                                             value_set=[True]), column="performance"),
        Check("(query_id, candidate) is unique", E.ExpectCompoundColumnsToBeUnique(
            column_list=["query_id", "candidate"]), column="query_id, candidate"),
        Check("one task and one text per query_id", E.ExpectColumnValuesToBeInSet(
            column="query_id_one_task_and_text", value_set=[True]), column="query_id"),
        Check("every query has every candidate (an answer or an error row)", E.ExpectColumnValuesToBeInSet(
            column="query_has_every_candidate", value_set=[True]), column="candidate"),
        Check("train and test are disjoint by query text", E.ExpectColumnValuesToBeInSet(
            column="text_not_in_train", value_set=[True]), column="query"),
    ]
    return checks


QUERY_COLUMNS = ["query_id", "task", "domain", "split", "query", "ground_truth", "metric"]


def query_table_checks(gx) -> list[Check]:
    E = gx.expectations
    return [
        Check("the query table has its columns", E.ExpectTableColumnsToMatchSet(column_set=QUERY_COLUMNS,
                                                                                 exact_match=True), blocking=True),
        Check("query_id is unique", E.ExpectColumnValuesToBeUnique(column="query_id"), blocking=True,
              column="query_id"),
        Check("task and query are present", E.ExpectColumnValuesToNotBeNull(column="query"), column="query"),
        Check("split is train, val or test", E.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
              column="split"),
    ]


class _Runner:
    """One ephemeral GX context, with a Data Docs site when ``docs_dir`` is given."""

    def __init__(self, docs_dir: Path | None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        # GX pins one of its own loggers at INFO when imported; let it follow the level the application set
        logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.NOTSET)
        self.gx = gx
        self.ctx = gx.get_context(mode="ephemeral")
        self.ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs_dir = docs_dir
        if docs_dir is not None:
            if docs_dir.exists():
                shutil.rmtree(docs_dir)
            for name in list(self.ctx.get_config().data_docs_sites or {}):
                self.ctx.delete_data_docs_site(name)
            self.ctx.add_data_docs_site(site_name="fusion", site_config={
                "class_name": "SiteBuilder", "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
        self.source = self.ctx.data_sources.add_pandas("fusion")

    def run(self, name: str, frame: pd.DataFrame, checks: list[Check]) -> list:
        gx = self.gx
        batch = self.source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        suite = self.ctx.suites.add(gx.ExpectationSuite(name=name, expectations=[c.expectation for c in checks]))
        vd = self.ctx.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if self.docs_dir is not None else []
        cp = self.ctx.checkpoints.add(gx.Checkpoint(name=name, validation_definitions=[vd], actions=actions,
                                                    result_format={"result_format": "COMPLETE"}))
        res = cp.run(batch_parameters={"dataframe": frame})
        by_config = {r.expectation_config.id: r for r in next(iter(res.run_results.values())).results}
        # results come back in suite order; match them by the expectation's id
        return [by_config[c.expectation.id] for c in checks]


def _unexpected(result, frame: pd.DataFrame) -> pd.Index:
    info = result.result or {}
    idx = info.get("unexpected_index_list")
    if idx is None:
        return pd.Index([])
    flat = [i if not isinstance(i, dict) else i.get("index", next(iter(i.values()))) for i in idx]
    return pd.Index(flat).intersection(frame.index)


def _detail(result, rows: pd.Index, raw: pd.DataFrame) -> str:
    info = result.result or {}
    if len(rows):
        sample = raw.loc[rows[:3]]
        keys = [f"{q}/{c}" for q, c in zip(sample.get("query_id", []), sample.get("candidate", []), strict=False)]
        vals = info.get("partial_unexpected_list", [])[:3]
        return f"{len(rows)} row(s), e.g. {keys or list(rows[:3])}" + (f", values {vals}" if vals and
                                                                         not isinstance(vals[0], dict) else "")
    if "observed_value" in info:
        return f"observed {info['observed_value']}"
    return "" if result.success else json.dumps(info, default=str)[:300]


def _split_duplicates(raw: pd.DataFrame, rows: pd.Index) -> tuple[pd.Index, pd.Index]:
    """Rows of a repeated (query_id, candidate): (extra copies of identical rows, every copy of a conflict)."""
    dup = raw.loc[rows]
    content = [c for c in CONTENT if c in raw.columns]
    extra, conflict = [], []
    for _, g in dup.groupby(["query_id", "candidate"], dropna=False):
        if len(g[content].astype("string").fillna("<NA>").drop_duplicates()) == 1:
            extra += list(g.index[1:])
        else:
            conflict += list(g.index)
    return pd.Index(extra), pd.Index(conflict)


# ---- the whole validation ---------------------------------------------------------------------------------
_DEFAULTS = ValidateConfig()


def _entry(suite: str, check: Check, res, rows: int = 0, detail: str = "") -> dict:
    return {"suite": suite, "name": check.name, "expectation": res.expectation_config.type, "column": check.column,
            "blocking": check.blocking, "success": bool(res.success), "rows": rows, "detail": detail}


def validate_log(raw: pd.DataFrame, max_error_rate: float = _DEFAULTS.max_error_rate, *,
                 max_quarantine_fraction: float = _DEFAULTS.max_quarantine_fraction,
                 queries: pd.DataFrame | None = None, docs_dir: Path | None = None) -> Validated:
    """Validate an ingested (text) or typed routing log; quarantine offending rows; return the clean log."""
    raw = raw.reset_index(drop=True)
    log_part = raw.drop(columns=[SOURCE], errors="ignore")
    runner = _Runner(docs_dir)
    results, failed_by_row = [], {}

    def note(rows: pd.Index, name: str) -> None:
        for i in rows:
            failed_by_row.setdefault(i, []).append(name)

    schema = schema_checks(runner.gx)
    suites = [(schema, runner.run("routing_log_schema", log_part, schema), log_part)]
    if all(r.success for r in suites[0][1]):
        checks = routing_log_checks(runner.gx)
        chk = _checked_frame(log_part)
        suites.append((checks, runner.run("routing_log", chk, checks), chk))
    for check, res, chk in ((c, r, f) for cs, rs, f in suites for c, r in zip(cs, rs, strict=True)):
        rows = _unexpected(res, chk) if not check.blocking else pd.Index([])
        if isinstance(check.expectation, runner.gx.expectations.ExpectCompoundColumnsToBeUnique) and len(rows):
            extra, conflict = _split_duplicates(log_part, rows)
            note(extra, "duplicate row (the same (query_id, candidate) and content again)")
            note(conflict, "conflicting rows (one (query_id, candidate), different content)")
            rows = extra.append(conflict)
            detail = f"{len(extra)} duplicate copy(ies), {len(conflict)} row(s) in conflict"
        else:
            note(rows, check.name)
            detail = _detail(res, rows, log_part)
        results.append(_entry("routing_log", check, res, len(rows), detail))
    if len(suites) == 1:  # no contract: nothing more can be checked, nothing is kept
        return Validated(ValidationReport(len(raw), 0, results, _docs_index(docs_dir)),
                         coerce_log(pd.DataFrame(columns=list(COLUMNS))), _quarantine(raw, pd.Index([]), {}))

    bad = pd.Index(sorted(failed_by_row))
    clean_raw = log_part.drop(index=bad)
    results.append(_error_rate_per_candidate(clean_raw, max_error_rate))
    share = len(bad) / max(len(raw), 1)
    results.append({"suite": "routing_log", "name": f"at most {max_quarantine_fraction:.0%} of the rows quarantined",
                    "expectation": "quarantine_share_at_most", "column": None, "blocking": True,
                    "success": share <= max_quarantine_fraction, "rows": 0,
                    "detail": f"{len(bad)} of {len(raw)} rows ({share:.0%})"})
    if queries is not None:
        qchecks = query_table_checks(runner.gx)
        for check, res in zip(qchecks, runner.run("query_table", queries.reset_index(drop=True), qchecks),
                              strict=True):
            results.append(_entry("query_table", check, res, detail=_detail(res, _unexpected(res, queries), queries)))
    report = ValidationReport(len(raw), len(bad), results, _docs_index(docs_dir))
    return Validated(report, coerce_log(_typed(clean_raw)), _quarantine(raw, bad, failed_by_row))


def _quarantine(raw: pd.DataFrame, bad: pd.Index, failed_by_row: dict) -> pd.DataFrame:
    """The offending rows as ingested, with the expectations each broke and the file it came from (always these
    columns, also when no row is quarantined)."""
    out = raw.loc[bad].copy()
    out[FAILED] = pd.Series(["; ".join(failed_by_row[i]) for i in bad], index=bad, dtype="string")
    if SOURCE not in out.columns:
        out[SOURCE] = pd.Series("", index=bad, dtype="string")
    return out.reset_index(drop=True)


def _times(s: pd.Series) -> pd.Series:
    """Timestamps as written by any source (ISO 8601 with or without the ``T``), UTC; unreadable -> NaT."""
    if pd.api.types.is_datetime64_any_dtype(s):
        return pd.to_datetime(s, utc=True)
    return pd.to_datetime(s.astype("string"), utc=True, errors="coerce", format="mixed")


def _typed(raw: pd.DataFrame) -> pd.DataFrame:
    out = raw.copy()
    out["collected_at"] = _times(out["collected_at"])
    for c in NUMERIC:
        out[c] = pd.to_numeric(out[c].astype("string").str.strip(), errors="raise")
    for c in COLUMNS:
        if COLUMNS[c] == "string":
            out[c] = out[c].astype("string")
    return out


def _error_rate_per_candidate(df: pd.DataFrame, bound: float) -> dict:
    rate = df["error"].notna().groupby(df["candidate"].astype("string"), observed=True).mean()
    bad = rate[rate > bound]
    return {"suite": "routing_log", "name": f"error rate per candidate at most {bound:.0%}",
            "expectation": "error_rate_per_candidate_at_most", "column": "error", "blocking": True,
            "success": bad.empty, "rows": 0,
            "detail": "" if bad.empty else "above the bound: " + ", ".join(f"{k} {v:.0%}" for k, v in bad.items())}


def _docs_index(docs_dir: Path | None) -> str | None:
    if docs_dir is None:
        return None
    index = Path(docs_dir) / "index.html"
    return str(index) if index.is_file() else None


def write_report(report: ValidationReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    return path

