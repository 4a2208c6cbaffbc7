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

from fusion.config import ConfigError, EmbedConfig, PathsConfig, TrackingConfig, ValidateConfig

app = typer.Typer(help="FusionFactory: learn from multi-LLM routing logs how to fuse LLMs.", no_args_is_help=True)
data_app = typer.Typer(help="Routing logs: import and inspect.", no_args_is_help=True)
models_app = typer.Typer(help="Local models.", no_args_is_help=True)
route_app = typer.Typer(help="Query-level routing with a trained router.", no_args_is_help=True)
thought_app = typer.Typer(help="Thought-level fusion: the template bank and its evaluation.", no_args_is_help=True)
distill_app = typer.Typer(help="Model-level fusion: SFT data, LoRA distillation, evaluation, the gate.",
                          no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(route_app, name="route")
app.add_typer(thought_app, name="thought")
app.add_typer(distill_app, name="distill")
tokenroute_app = typer.Typer(help="Token-level fusion (FusionRoute): a router LM picks an expert at every decoding "
                                  "step and adds its own logits.", no_args_is_help=True)
app.add_typer(tokenroute_app, name="tokenroute")


def _console(stderr: bool = False) -> Console:
    """A console that prints whole tables: to a terminal at its width, to a pipe or a file without cutting them
    to 80 columns."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr) if stream.isatty() else Console(stderr=stderr, width=1000)


console = _console()

PARAMS = typer.Option(Path("params.yaml"), "--params", "-p", help="parameters file")


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


def _params(path: Path):
    from fusion.backends import BackendOptionError
    from fusion.routers.base import RouterParamError
    from fusion.stages.driving import load_params

    try:
        return load_params(path)
    except (ConfigError, RouterParamError, BackendOptionError) as exc:
        console.print(f"[red]{exc}[/red]", markup=True, highlight=False)
        raise typer.Exit(2) from None


def _stage(name: str, params_path: Path):
    from fusion.stages import runner

    return _run(runner(name), name, params_path)


def _run(fn, name: str, params_path: Path):
    from fusion.collection.collect import BudgetExceeded
    from fusion.collection.validate import ValidationFailed

    params = _params(params_path)
    try:
        return fn(params)
    except ValidationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except BudgetExceeded as exc:  # collection or judging: finished parts are kept
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(3) from None
    except (FileNotFoundError, ValueError) as exc:
        console.print(f"[red]{name} failed: {exc}[/red]")
        raise typer.Exit(1) from None


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
    from fusion.stages import collect as stage

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
def train(params: Path = PARAMS) -> None:
    """Train every router in params.yaml on the train split and register each in MLflow."""
    console.print(f"routers saved to {_stage('train', params)}")


@app.command()
def evaluate(params: Path = PARAMS) -> None:
    """Evaluate the trained routers against random, best-single, task-best and oracle on the test split."""
    from fusion.routers.report import evaluation_table

    console.print(evaluation_table(_stage("evaluate", params)))


@app.command()
def promote(params: Path = PARAMS) -> None:
    """Promotion gate: the best router becomes `champion` only if it beats the champion by the margin."""
    _print_decision(_stage("promote", params))


def _print_decision(d: dict) -> None:
    verdict = "[green]promoted[/green]" if d.get("promoted") else "[yellow]not promoted[/yellow]"
    who = f"{d.get('challenger_router')} (version {d.get('challenger')})" if d.get("challenger") else "challenger"
    console.print(f"{who}: {verdict}: {d['reason']}")


@app.command()
def report(params: Path = PARAMS) -> None:
    """Print the last evaluation table and where to browse the runs."""
    from fusion.routers.report import evaluation_table

    p = _params(params)
    if not p.paths.eval_metrics.is_file():
        console.print(f"[red]no evaluation yet ({p.paths.eval_metrics}); run `dvc repro` or `fusion pipeline`[/red]")
        raise typer.Exit(1)
    console.print(evaluation_table(json.loads(p.paths.eval_metrics.read_text())))
    if p.paths.promotion.is_file():
        _print_decision(json.loads(p.paths.promotion.read_text()))
    console.print(f"report: {p.paths.eval_report}   plot: {p.paths.eval_plot}")
    from fusion.target_eval import rich_table

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
    console.print(f"browse runs and the registered router: [bold]make ui[/bold] "
                  f"(mlflow ui --backend-store-uri {p.tracking.uri} --host 127.0.0.1 --port 5000)")


FLOW_ENTRYPOINT = "flows/pipeline.py:fusion_pipeline"


@app.command()
def pipeline(params: Path = PARAMS) -> None:
    """Run the whole pipeline as the Prefect flow `fusion-pipeline` (locally), loaded by its entrypoint
    (flows/pipeline.py:fusion_pipeline, as in prefect.yaml) from the project folder that holds the parameters."""
    from prefect.flows import load_flow_from_entrypoint

    from fusion.routers.report import evaluation_table

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


@thought_app.command("templates")
def thought_templates(params: Path = PARAMS) -> None:
    """Select the top responses of each training query, summarise them into templates (resumable), embed them:
    the template bank."""
    console.print(f"wrote {_stage('templates', params)}")


@thought_app.command("eval")
def thought_eval(params: Path = PARAMS) -> None:
    """The target model on held-out queries: zero-shot vs few-shot vs templates, with 95% intervals."""
    report = _stage("thought_eval", params)
    if report.get("enabled"):
        p = _params(params)
        console.print(f"metrics: {p.paths.thought_eval}   plot: {p.paths.thought_plot}")


@distill_app.command("data")
def distill_data(params: Path = PARAMS) -> None:
    """The SFT sets: the top correct responses per training query, and the label-only baseline."""
    console.print(f"wrote {_stage('sft_data', params)}")


@distill_app.command("train")
def distill_train(params: Path = PARAMS) -> None:
    """LoRA SFT (TRL + PEFT) on the SFT sets; resumes a killed run; registers the distilled model in MLflow."""
    console.print(f"wrote {_stage('distill', params)}")


@distill_app.command("eval")
def distill_eval(params: Path = PARAMS) -> None:
    """Base vs distilled vs label-only on the same held-out queries, with 95% intervals."""
    report = _stage("distill_eval", params)
    if report.get("enabled"):
        p = _params(params)
        console.print(f"metrics: {p.paths.distill_eval}   plot: {p.paths.distill_plot}")


@distill_app.command("experts")
def distill_experts(params: Path = PARAMS) -> None:
    """Train and register the domain LoRA experts of distill.experts (GSM8K / MBPP reference solutions)."""
    console.print(f"wrote {_stage('experts', params)}")


@distill_app.command("promote")
def distill_promote(params: Path = PARAMS) -> None:
    """The gate: the distilled model becomes `champion` only if it beats the champion (or the base) by the margin."""
    d = _stage("promote_distilled", params)
    verdict = "[green]promoted[/green]" if d.get("promoted") else "[yellow]not promoted[/yellow]"
    console.print(f"distilled version {d.get('challenger')}: {verdict}: {d['reason']}")


@tokenroute_app.command("data")
def tokenroute_data(params: Path = PARAMS) -> None:
    """Training sequences (SFT examples mixed across domains, preference pairs from the log) and every expert's
    statistics over them (gold-token log-prob and greedy token per position; resumable)."""
    console.print(f"wrote {_stage('tokenroute_data', params)}")


@tokenroute_app.command("train")
def tokenroute_train(params: Path = PARAMS) -> None:
    """Train the router (SFT, then mix training with CDPO) and the no-routing baseline; register the router in
    MLflow. Runs `fusion tokenroute data` first when its output is missing."""
    p = _params(params)
    if not (p.paths.tokenroute_data / "sequences.parquet").is_file() and p.tokenroute.enabled:
        console.print("no training sequences yet: running `fusion tokenroute data` first")
        _stage("tokenroute_data", params)
    console.print(f"wrote {_stage('tokenroute_train', params)}")


@tokenroute_app.command("evaluate")
def tokenroute_evaluate(params: Path = PARAMS) -> None:
    """FusionRoute vs each expert alone, routing only, sequence selection and the fine-tuned model without routing,
    on the held-out queries, with 95% intervals."""
    report = _stage("tokenroute_eval", params)
    if report.get("enabled"):
        p = _params(params)
        console.print(f"metrics: {p.paths.tokenroute_eval}   plots: {p.paths.tokenroute_plot}, "
                      f"{p.paths.tokenroute_routing_plot}")


@tokenroute_app.command("generate")
def tokenroute_generate(
    prompts: list[str] = typer.Argument(None, help="prompts to answer (or --file)"),
    router: str = typer.Option("models:/fusion-tokenroute@challenger",
                               help="a router folder, or a registered version models:/<name>@<alias>|/<version>"),
    file: Path | None = typer.Option(None, help="a text file with one prompt per line"),
    policy: str = typer.Option("lazy", help="lazy: run only the selected experts; all: every expert every token"),
    max_new_tokens: int = typer.Option(128, min=1),
    temperature: float = typer.Option(0.0, min=0.0),
    seed: int = 0,
    stop: list[str] = typer.Option([], help="stop strings (repeatable)"),
    batch_size: int = typer.Option(8, min=1),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per prompt"),
    params: Path = PARAMS,
) -> None:
    """Answer prompts with a trained router and the experts it was trained for (refused if they changed): each
    answer with the share of tokens each expert produced and how often the router changed the argmax token."""
    from fusion.models.refs import ModelNotFoundError
    from fusion.tokenroute.level import ExpertMismatchError, generate
    from fusion.tokenroute.registry import router_dir
    from fusion.tokenroute.vocab import VocabularyMismatchError
    from fusion.tracking import use_registry

    p = _params(params)
    texts = list(prompts or [])
    if file is not None:
        texts += [ln for ln in file.read_text().splitlines() if ln.strip()]
    if not texts:
        console.print("[red]no prompts: give them as arguments or with --file[/red]")
        raise typer.Exit(2)
    try:
        if router.startswith("models:/"):
            use_registry(p.tracking)
        folder = router_dir(router, p.paths.model_cache)
        gens, names = generate(folder, texts, model_cache=p.paths.model_cache, policy=policy,
                               max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, stop=stop,
                               batch_size=batch_size)
    except (ExpertMismatchError, VocabularyMismatchError, ModelNotFoundError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]", markup=False)
        raise typer.Exit(1) from None
    for prompt, g in zip(texts, gens, strict=True):
        shares = dict(zip(names, g.expert_shares(len(names)), strict=True))
        if as_json:
            print(json.dumps({"prompt": prompt, "text": g.text, "tokens": len(g.tokens), "finish_reason":
                              g.finish_reason, "expert_shares": shares, "change_rate": g.change_rate}))
        else:
            console.rule(prompt[:80])
            console.print(g.text, markup=False, highlight=False)
            console.print(f"[dim]{len(g.tokens)} tokens ({g.finish_reason}); experts "
                          + ", ".join(f"{k} {v:.0%}" for k, v in shares.items())
                          + f"; router changed the argmax at {g.change_rate:.0%}[/dim]")


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
    from fusion.collection.ingest import SourceError, ingest
    from fusion.collection.validate import FAILED, SOURCE, validate_log
    from fusion.config import SourceConfig
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
    from fusion.log.importers import import_log
    from fusion.log.schema import LogSchemaError, write_log
    from fusion.registry import UnknownNameError

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


REGISTERED_CHAMPION = f"models:/{TrackingConfig().registered_router}@champion"


@route_app.command("predict")
def route_predict(
    texts: list[str] = typer.Argument(..., help="queries to route"),
    router: str = typer.Option(REGISTERED_CHAMPION,
                               help="a saved router folder or an MLflow model URI (models:/name@alias, models:/name/N)"),
    tracking_uri: str = typer.Option(TrackingConfig().uri, help="MLflow tracking URI for models:/ URIs"),
    task: str | None = typer.Option(None, "--task", help="the queries' task (routers that use task identity)"),
) -> None:
    """Route queries with a saved or registered router: text in; candidate, route path (task, inferred from the
    query, text-only, prior) and text out."""
    import pandas as pd

    frame = pd.DataFrame({"query": texts})
    if task:
        frame["task"] = task
    if router.startswith(("models:/", "runs:/")):
        import mlflow

        from fusion.routers.serving import predict_registered

        mlflow.set_tracking_uri(tracking_uri)
        pred = predict_registered(router, frame)
    else:
        from fusion.embedding import Encoder
        from fusion.routers import load_router
        from fusion.routers.serving import predict_frame

        r = load_router(router)
        pred = predict_frame(r, Encoder(r.meta["encoder"]), frame)
    paths = pred["route_path"] if "route_path" in pred.columns else [""] * len(texts)  # versions logged before
    for text, cand, path in zip(texts, pred["candidate"], paths, strict=True):
        console.print(f"{cand}\t{path}\t{text[:80]}", markup=False, highlight=False)


def _load_routing(log_path: Path, fmt: str | None, embeddings: Path | None, encoder: str, cache: Path,
                  scenario=None):
    """:func:`fusion.routers.data.load_routing_data` on a canonical log, or on any log an importer reads (with
    ``fmt``; its import summary printed)."""
    from fusion.embedding import Encoder
    from fusion.routers.data import load_routing_data

    log = log_path
    if fmt:
        from fusion.log.importers import import_log

        log, summary = import_log(log_path, fmt)
        console.print(summary.to_table())
    return load_routing_data(log, embeddings=embeddings, scenario=scenario or "performance_first",
                             encoder=None if embeddings else Encoder(encoder, cache, 64))


def _router_params(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


LOG_ARG = typer.Argument(..., help="routing log (.parquet), or any file/folder `fusion data import` reads (--format)")
FMT_OPT = typer.Option(None, "--format", "-f", help="import the log first: fusionbench | routerbench | llmrouter | long")
EMB_OPT = typer.Option(None, "--embeddings", help="query embeddings (.parquet); computed and cached when absent")
ENC_OPT = typer.Option(EmbedConfig().encoder, "--encoder", help="sentence-transformers model for embeddings")
CACHE_OPT = typer.Option(PathsConfig().embedding_cache, "--cache", help="embedding cache folder")


@route_app.command("benchmark")
def route_benchmark(
    log_path: Path = LOG_ARG, fmt: str | None = FMT_OPT, embeddings: Path | None = EMB_OPT,
    encoder: str = ENC_OPT, cache: Path = CACHE_OPT,
    routers: str = typer.Option("knn,mlp,svm", help="comma-separated learned routers (baselines always run)"),
    scenarios: str = typer.Option("performance_first,balance,cost_first",
                                  help="comma-separated scenarios; 'floor': each router at the least cost that "
                                       "keeps best-single's performance"),
    cv: int | None = typer.Option(None, "--cv", help="K-fold cross-validation stratified by task"),
    task_blind: bool = typer.Option(False, "--task-blind", help="hide the test queries' tasks from the routers "
                                    "(they infer them; task-best still gets them, marked as needing labels)"),
    blind_training: bool = typer.Option(False, "--blind-training", help="with --task-blind: train the routers "
                                        "without task labels too"),
    leave_task_out: bool = typer.Option(False, "--leave-task-out", help="hold out each task in turn (train on the "
                                        "others, test on it): per-task results and their mean"),
    floor: float = typer.Option(1.0, "--floor", help="the floor scenario's quality floor, as a share of "
                                "best-single's performance"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="bootstrap resamples of the 95%% intervals (0: none)"),
    seed: int = typer.Option(0, "--seed"),
    json_path: Path | None = typer.Option(None, "--json", help="write every record as JSON here"),
    plot_path: Path | None = typer.Option(None, "--plot", help="write the cost-quality plane (PNG) here"),
    tracking_uri: str | None = typer.Option(None, help="log the benchmark to this MLflow tracking URI"),
) -> None:
    """Every router x scenario on one routing log: performance, cost, reward, gains, gap recovered, AIQ."""
    from fusion.routers.benchmark import BenchConfig, run_benchmark
    from fusion.routers.report import benchmark_table, plot_benchmark
    from fusion.tracking import flat_metrics

    if task_blind and leave_task_out:
        console.print("[red]--task-blind and --leave-task-out are two protocols: give one[/red]")
        raise typer.Exit(2)
    protocol = "leave-task-out" if leave_task_out else "task-blind" if task_blind else "standard"
    try:
        _, data = _load_routing(log_path, fmt, embeddings, encoder, cache)
        cfg = BenchConfig(routers={r: {} for r in routers.split(",") if r}, scenarios=tuple(scenarios.split(",")),
                          cv=cv, seed=seed, protocol=protocol, blind_training=blind_training, floor=floor,
                          bootstrap=bootstrap)
        result = run_benchmark(data, cfg)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        console.print(f"[red]benchmark failed: {exc}[/red]")
        raise typer.Exit(1) from None
    console.print(benchmark_table(result))
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=1, default=float) + "\n")
        console.print(f"wrote {json_path}")
    if plot_path and plot_benchmark(result, plot_path):
        console.print(f"wrote {plot_path}")
    if tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment("route-benchmark")
        with mlflow.start_run(run_name=f"benchmark {log_path.name}"):
            mlflow.log_params({"log": str(log_path), "routers": routers, "scenarios": scenarios, "cv": cv,
                               "seed": seed, "protocol": protocol, "blind_training": blind_training})
            for r in result["records"]:
                mlflow.log_metrics(flat_metrics({k: v for k, v in r.items() if k not in ("per_task",
                                                                                         "floor_calibration")},
                                                f"{r['scenario']}.{r['router']}."))
            mlflow.log_dict(result, "benchmark.json")
            if plot_path:
                mlflow.log_artifact(str(plot_path))


@route_app.command("train")
def route_train(
    log_path: Path = LOG_ARG, fmt: str | None = FMT_OPT, embeddings: Path | None = EMB_OPT,
    encoder: str = ENC_OPT, cache: Path = CACHE_OPT,
    router: str = typer.Option("knn", "--router", "-r", help="router name (see `fusion route list`)"),
    scenario: str = typer.Option("performance_first", "--scenario", "-s"),
    param: list[str] = typer.Option([], "--param", help="router parameter KEY=VALUE (repeatable)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path | None = typer.Option(None, "--out", "-o", help="folder to save the router in "
                                                              "(default models/routers/<router>)"),
) -> None:
    """Train one router on a log's train split and save it (predict with `fusion route predict --router OUT`)."""
    from fusion.rewards import resolve_scenario
    from fusion.routers.training import train_router

    try:
        sc = resolve_scenario(scenario)
        log, data = _load_routing(log_path, fmt, embeddings, encoder, cache, sc)
        r = train_router(router, data, log, encoder=encoder, scenario=sc, seed=seed, params=_router_params(param))
    except (ValueError, FileNotFoundError, KeyError) as exc:
        console.print(f"[red]train failed: {exc}[/red]")
        raise typer.Exit(1) from None
    out = out or PathsConfig().routers_dir / router
    console.print(f"router {router} ({r.meta.get('selected', {})}) saved to {r.save(out)}")


@route_app.command("list")
def route_list() -> None:
    """The registered routers and their parameters (defaults in brackets)."""
    from fusion.routers.base import ROUTERS, router_names

    for n in router_names():
        cls = ROUTERS.get(n)
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        hp = ", ".join(f"{k}[{f.default}]" for k, f in cls.Params.model_fields.items())
        console.print(f"{n}\t{doc}{'  (evaluation only)' if cls.evaluation_only else ''}"
                      + (f"\n\t{hp}" if hp else ""), markup=False, highlight=False)


def main() -> None:  # pragma: no cover
    sys.exit(app())
