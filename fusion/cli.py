"""The ``fusion`` command line. Thin: every command calls a stage runner from :mod:`fusion.stages` or a library
function, and prints its result."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from fusion.cli_base import PARAMS, _params, _run, _stage, console
from fusion.config import PathsConfig, ValidateConfig
from fusion.levels.model import cli as model_cli
from fusion.levels.query import cli as query_cli
from fusion.levels.query.cli import _print_decision
from fusion.levels.thought import cli as thought_cli
from fusion.levels.token import cli as token_cli

app = typer.Typer(help="FusionFactory: learn from multi-LLM routing logs how to fuse LLMs.", no_args_is_help=True)

data_app = typer.Typer(help="Routing logs: import and inspect.", no_args_is_help=True)

models_app = typer.Typer(help="Local models.", no_args_is_help=True)

app.add_typer(data_app, name="data")

app.add_typer(models_app, name="models")
for level in (query_cli, thought_cli, model_cli, token_cli):  # each level mounts its own commands
    level.mount(app)


@app.callback()


def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging, and the libraries' own "
                                                                      "INFO logs")) -> None:
    from rich.logging import RichHandler

    for k, v in {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "DVC_NO_ANALYTICS": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "TOKENIZERS_PARALLELISM": "false"}.items():
        os.environ.setdefault(k, v)
    if not verbose:  # the libraries' own loggers and load/save progress bars too (ours stay: collection, training)
        for k, v in {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
                     "MLFLOW_LOGGING_LEVEL": "WARNING", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}.items():
            os.environ.setdefault(k, v)
    # libraries (great-expectations, mlflow, httpx, ...) log at WARNING unless --verbose; our own stages at INFO
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(console=Console(stderr=True), show_path=False)
    else:  # a pipe or a file: plain lines, not padded to a console width
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)
    for ours in ("fusion", "flows"):
        logging.getLogger(ours).setLevel(logging.DEBUG if verbose else logging.INFO)
    if not verbose:  # libraries that set their own logger's level
        for lib in ("great_expectations", "mlflow", "alembic", "sentence_transformers"):
            logging.getLogger(lib).setLevel(logging.WARNING)


@app.command()


def queries(params: Path = PARAMS) -> None:
    """Build the query table (tasks x sources in params.yaml) with train/test splits."""
    console.print(f"wrote {_stage('queries', params)}")


@app.command()


def collect(
    params: Path = PARAMS,
    retry_errors: bool = typer.Option(False, "--retry-errors", help="re-run only the error rows of earlier runs"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the planned calls and their estimated cost; "
                                                          "generate nothing"),
) -> None:
    """Run every candidate (LLM x mode) on every query, score, count tokens and cost (resumable: a killed run
    goes on where it stopped). Failed calls are kept as error rows; collect.max_cost_usd caps the cost."""
    from fusion.data.stages import collect as stage

    if dry_run:
        p = _params(params)
        plan = stage.dry_run(p, retry_errors=retry_errors)
        console.print(_frame_table(plan, "planned calls (nothing generated)"))
        cap = p.collect.max_cost_usd
        console.print(f"{int(plan['calls'].sum())} calls, estimated ${plan['est_cost_usd'].sum():.4f} "
                      f"(+ ${plan['spent_usd'].sum():.4f} already spent)"
                      + (f"; cap collect.max_cost_usd = ${cap:.4f}" if cap is not None else ""))
        return
    console.print(f"wrote {_run(lambda p: stage.run(p, retry_errors=retry_errors), 'collect', params)}")


def _frame_table(df, title: str):
    from rich.table import Table

    table = Table(title=title)
    for c in df.columns:
        table.add_column(str(c), justify="right" if df[c].dtype.kind in "iuf" else "left")
    for row in df.itertuples(index=False):
        table.add_row(*[f"{v:.6g}" if isinstance(v, float) else str(v) for v in row])
    return table


@app.command()


def judge(params: Path = PARAMS) -> None:
    """Score every answer with the LLM judge in params.judge (resumable), and report its agreement with the task
    metric per task; with judge.enabled false, pass the collected log through."""
    import json

    out = _stage("judge", params)
    report = json.loads(_params(params).paths.judge_report.read_text())
    if report["agreement"]:
        import pandas as pd

        console.print(_frame_table(pd.DataFrame(report["agreement"]).round(3),
                                   f"judge {report['judge'] or '(source scores)'} vs the task metric"))
    for reason, n in (report.get("null_reasons") or {}).items():
        console.print(f"{n} null score(s): {reason}")
    console.print(f"wrote {out}")


@app.command()


def ingest(params: Path = PARAMS) -> None:
    """Union the judged collected rows with the imported logs of params.sources (paths or globs of daily drops,
    any importer format), as read, for validation."""
    console.print(f"wrote {_stage('ingest', params)}")


@app.command()


def validate(params: Path = PARAMS) -> None:
    """Check the ingested log with the great-expectations suites: offending rows go to the quarantine file (each
    with its failed expectations), the rest becomes the routing log; exit 1 when a blocking expectation fails."""
    import json

    out = _stage("validate", params)
    report = json.loads(Path(out).read_text())
    console.print(f"routing log valid: {report['n_rows'] - report['n_quarantined']} rows kept, "
                  f"{report['n_quarantined']} quarantined; report in {out}"
                  + (f"; Data Docs {report['data_docs']}" if report.get("data_docs") else ""))


@app.command()


def embed(params: Path = PARAMS) -> None:
    """Embed every query of the routing log (cached by content)."""
    console.print(f"wrote {_stage('embed', params)}")


@app.command()


def report(params: Path = PARAMS,
           as_json: bool = typer.Option(False, "--json", help="print only the summary, as one JSON object")) -> None:
    """Print each level's last evaluation, then the summary: every level on the same held-out queries against the
    best single candidate (score, cost, difference with its 95% interval, gain / loss / no evidence)."""
    from fusion.core.summary import summary_table
    from fusion.levels.query.report import evaluation_table

    p = _params(params)
    if not p.paths.eval_metrics.is_file():
        console.print(f"[red]no evaluation yet ({p.paths.eval_metrics}); run `dvc repro` or `fusion pipeline`[/red]")
        raise typer.Exit(1)
    summary = _summary(p)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(evaluation_table(json.loads(p.paths.eval_metrics.read_text())))
    if p.paths.promotion.is_file():
        _print_decision(json.loads(p.paths.promotion.read_text()))
    console.print(f"report: {p.paths.eval_report}   plot: {p.paths.eval_plot}")
    from fusion.core.evaluation import rich_table

    for path, plot, title in ((p.paths.thought_eval, p.paths.thought_plot, "thought level"),
                              (p.paths.distill_eval, p.paths.distill_plot, "model level")):
        level = json.loads(path.read_text()) if path.is_file() else {}
        if level.get("enabled"):
            console.print(rich_table(level, f"{title} on {level['n_queries']} held-out queries"))
            console.print(f"plot: {plot}")
    if p.paths.distill_promotion.is_file():
        d = json.loads(p.paths.distill_promotion.read_text())
        verdict = "[green]promoted[/green]" if d.get("promoted") else "[yellow]not promoted[/yellow]"
        console.print(f"distilled version {d.get('challenger')}: {verdict}: {d['reason']}")
    token = json.loads(p.paths.tokenroute_eval.read_text()) if p.paths.tokenroute_eval.is_file() else {}
    if token.get("enabled"):
        console.print(rich_table(token, f"token level on {token['n_queries']} held-out queries"))
        r = token["routing"]["fusionroute"]["all"]
        console.print(f"FusionRoute token shares {', '.join(f'{k} {v:.0%}' for k, v in r['shares'].items())}; "
                      f"argmax changed by the router at {r['change_rate']:.1%} of tokens; plots: "
                      f"{p.paths.tokenroute_plot}, {p.paths.tokenroute_routing_plot}")
    console.print(summary_table(summary))
    console.print(f"browse runs and the registered router: [bold]make ui[/bold] "
                  f"(mlflow ui --backend-store-uri {p.tracking.uri} --host 127.0.0.1 --port 5000)")


def _summary(p) -> dict:
    """:func:`fusion.core.summary.summarise` over the per-query rows the levels' evaluations wrote."""
    import pandas as pd

    from fusion.core.summary import summarise

    metrics = json.loads(p.paths.eval_metrics.read_text())
    levels = {level: pd.read_parquet(path) if path.is_file() else None
              for level, path in (("query", p.paths.eval_per_query), ("thought", p.paths.thought_per_query),
                                  ("model", p.paths.distill_per_query), ("token", p.paths.tokenroute_per_query))}
    if levels["query"] is None:
        console.print(f"[red]no per-query rows of the router evaluation ({p.paths.eval_per_query}): re-run "
                      "`dvc repro`[/red]")
        raise typer.Exit(1)
    routed, label = metrics.get("best_router"), None
    if routed and p.paths.promotion.is_file():
        d = json.loads(p.paths.promotion.read_text())
        if d.get("challenger_router") == routed:
            label = f"routed ({routed}, " + ("champion)" if d.get("promoted") or "already the champion" in
                                             d.get("reason", "") else "challenger: champion kept)")
    return summarise(levels, routed=routed, routed_label=label, best_single=metrics.get("best_single"))


FLOW_ENTRYPOINT = "flows/pipeline.py:fusion_pipeline"


@app.command()


def pipeline(params: Path = PARAMS) -> None:
    """Run the whole pipeline as the Prefect flow `fusion-pipeline` (locally), loaded by its entrypoint
    (flows/pipeline.py:fusion_pipeline, as in prefect.yaml) from the project folder that holds the parameters."""
    from prefect.flows import load_flow_from_entrypoint

    from fusion.levels.query.report import evaluation_table

    p = params.resolve()
    flow_file = p.parent / FLOW_ENTRYPOINT.partition(":")[0]
    if not flow_file.is_file():
        console.print(f"[red]no flow at {flow_file}: run from the project folder[/red]")
        raise typer.Exit(2)
    cfg = _params(p)  # fail on bad parameters before the flow starts
    result = load_flow_from_entrypoint(str(p.parent / FLOW_ENTRYPOINT))(params_path=str(p))
    # a stage `dvc status` found up to date was skipped (None): its last outputs
    metrics, decision = result["evaluate"], result["promote"]
    console.print(evaluation_table(metrics if metrics is not None else json.loads(cfg.paths.eval_metrics.read_text())))
    _print_decision(decision if decision is not None else json.loads(cfg.paths.promotion.read_text()))


VALIDATE_DEFAULTS = ValidateConfig()


@data_app.command("validate")


def data_validate(
    src: Path = typer.Argument(..., help="a routing log file or folder (any importer format)"),
    fmt: str = typer.Option("long", "--format", "-f", help="its format (fusion data import --help)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write the clean rows here (.parquet)"),
    quarantine: Path | None = typer.Option(None, help="write the quarantined rows here (.parquet)"),
    docs: Path | None = typer.Option(None, help="write great-expectations Data Docs (HTML) into this folder"),
    max_error_rate: float = typer.Option(VALIDATE_DEFAULTS.max_error_rate, help="blocking: error rows per candidate"),
    max_quarantine_fraction: float = typer.Option(VALIDATE_DEFAULTS.max_quarantine_fraction,
                                                  help="blocking: share of rows quarantined"),
) -> None:
    """Validate any routing log with the pipeline's suites, outside the pipeline: the failed expectations with
    the rows they quarantine; exit 1 when a blocking expectation fails."""
    from fusion.config import SourceConfig
    from fusion.data.ingest import SourceError, ingest
    from fusion.data.validate import FAILED, SOURCE, validate_log
    from fusion.log.schema import write_log

    try:
        raw, _ = ingest(None, [SourceConfig(path=str(src.resolve()), format=fmt)], Path.cwd())
    except SourceError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    v = validate_log(raw, max_error_rate, max_quarantine_fraction=max_quarantine_fraction, docs_dir=docs)
    console.print(v.report.render(), highlight=False)
    if len(v.quarantine):
        import pandas as pd

        kinds = v.quarantine[FAILED].str.split("; ").explode().value_counts()
        console.print(_frame_table(pd.DataFrame({"expectation": kinds.index, "rows": kinds.to_numpy()}),
                                   "quarantined rows per failed expectation"))
    if quarantine is not None:
        quarantine.parent.mkdir(parents=True, exist_ok=True)
        v.quarantine.to_parquet(quarantine, index=False)
        console.print(f"wrote {quarantine} ({len(v.quarantine)} rows, with {FAILED} and {SOURCE})")
    if out is not None and v.report.success:
        write_log(v.clean, out)
        console.print(f"wrote {out} ({len(v.clean)} rows)")
    if v.report.data_docs:
        console.print(f"Data Docs: {v.report.data_docs}")
    if not v.report.success:
        raise typer.Exit(1)


@data_app.command("import")


def data_import(
    src: Path = typer.Argument(..., help="file or folder to import"),
    fmt: str = typer.Option(..., "--format", "-f", help="fusionbench | routerbench | llmrouter | long"),
    out: Path = typer.Option(..., "--out", "-o", help="routing log to write (.parquet)"),
    split: str | None = typer.Option(None, help="put every row in this split (formats without splits)"),
) -> None:
    """Import a routing log from another format into the canonical Parquet log."""
    from fusion.core.registry import UnknownNameError
    from fusion.importers import import_log
    from fusion.log.schema import LogSchemaError, write_log

    options = {"split": split} if split else {}
    try:
        df, summary = import_log(src, fmt, **options)
    except (LogSchemaError, UnknownNameError, FileNotFoundError, ValueError) as exc:
        console.print(f"[red]import failed: {exc}[/red]")
        raise typer.Exit(1) from None
    write_log(df, out)
    console.print(summary.to_table())
    console.print(f"wrote {out} ({len(df)} rows)")


@models_app.command("tiny-llama")


def tiny_llama(out: Path = typer.Argument(..., help="folder to write"), seed: int = 0) -> None:
    """Build a tiny random Llama with a locally trained tokenizer (for tests and dry runs)."""
    from fusion.models.tiny_llama import build_tiny_llama

    console.print(f"wrote {build_tiny_llama(out, seed=seed)}")


DEFAULT_MODEL_CACHE = PathsConfig().model_cache


@models_app.command("serve")


def models_serve(
    model: str = typer.Argument(..., help="a local folder, a .gguf file or pkg:<module>/<file>"),
    port: int = typer.Option(8000, help="port on 127.0.0.1"),
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    model_cache: Path = typer.Option(DEFAULT_MODEL_CACHE, help="where a GGUF model is dequantised once"),
) -> None:
    """Serve a local model over an OpenAI-compatible API (`transformers serve`, offline) until Ctrl-C: the
    endpoint for an `openai` pool entry on a machine without vLLM."""
    import time

    from fusion.backends.local_server import local_server

    with local_server(model, model_cache=model_cache, host=host, port=port) as srv:
        console.print(f"serving {srv.model} at {srv.base_url} (log {srv.log_file}); pool entry: "
                      f"{{backend: openai, model: {srv.model}, options: {{base_url: {srv.base_url}}}}}")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            console.print("stopped")


def main() -> None:  # pragma: no cover
    sys.exit(app())
