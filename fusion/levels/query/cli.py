"""The query level's commands: the stages ``fusion train|evaluate|promote`` and ``fusion route ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from fusion.cli_base import PARAMS, _stage, console
from fusion.config import EmbedConfig, PathsConfig, TrackingConfig

route_app = typer.Typer(help='Query-level routing with a trained router.', no_args_is_help=True)


LOG_ARG = typer.Argument(..., help="routing log (.parquet), or any file/folder `fusion data import` reads (--format)")


FMT_OPT = typer.Option(None, "--format", "-f", help="import the log first: fusionbench | routerbench | llmrouter | long")


EMB_OPT = typer.Option(None, "--embeddings", help="query embeddings (.parquet); computed and cached when absent")


ENC_OPT = typer.Option(EmbedConfig().encoder, "--encoder", help="sentence-transformers model for embeddings")


CACHE_OPT = typer.Option(PathsConfig().embedding_cache, "--cache", help="embedding cache folder")


def train(params: Path = PARAMS) -> None:
    """Train every router in params.yaml on the train split and register each in MLflow."""
    console.print(f"routers saved to {_stage('train', params)}")


def evaluate(params: Path = PARAMS) -> None:
    """Evaluate the trained routers against random, best-single, task-best and oracle on the test split."""
    from fusion.levels.query.report import evaluation_table

    console.print(evaluation_table(_stage("evaluate", params)))


def promote(params: Path = PARAMS) -> None:
    """Promotion gate: the best router becomes `champion` only if it beats the champion by the margin."""
    _print_decision(_stage("promote", params))


def _print_decision(d: dict) -> None:
    verdict = "[green]promoted[/green]" if d.get("promoted") else "[yellow]not promoted[/yellow]"
    who = f"{d.get('challenger_router')} (version {d.get('challenger')})" if d.get("challenger") else "challenger"
    console.print(f"{who}: {verdict}: {d['reason']}")


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

        from fusion.levels.query.serving import predict_registered

        mlflow.set_tracking_uri(tracking_uri)
        pred = predict_registered(router, frame)
    else:
        from fusion.core.embedding import Encoder
        from fusion.levels.query import load_router
        from fusion.levels.query.serving import predict_frame

        r = load_router(router)
        pred = predict_frame(r, Encoder(r.meta["encoder"]), frame)
    paths = pred["route_path"] if "route_path" in pred.columns else [""] * len(texts)  # versions logged before
    for text, cand, path in zip(texts, pred["candidate"], paths, strict=True):
        console.print(f"{cand}\t{path}\t{text[:80]}", markup=False, highlight=False)


def _load_routing(log_path: Path, fmt: str | None, embeddings: Path | None, encoder: str, cache: Path,
                  scenario=None):
    """:func:`fusion.levels.query.data.load_routing_data` on a canonical log, or on any log an importer reads (with
    ``fmt``; its import summary printed)."""
    from fusion.core.embedding import Encoder
    from fusion.levels.query.data import load_routing_data

    log = log_path
    if fmt:
        from fusion.importers import import_log

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
    from fusion.levels.query.benchmark import BenchConfig, run_benchmark
    from fusion.levels.query.report import benchmark_table, plot_benchmark
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
    from fusion.levels.query.rewards import resolve_scenario
    from fusion.levels.query.training import train_router

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
    from fusion.levels.query.base import ROUTERS, router_names

    for n in router_names():
        cls = ROUTERS.get(n)
        doc = (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
        hp = ", ".join(f"{k}[{f.default}]" for k, f in cls.Params.model_fields.items())
        console.print(f"{n}\t{doc}{'  (evaluation only)' if cls.evaluation_only else ''}"
                      + (f"\n\t{hp}" if hp else ""), markup=False, highlight=False)


def mount(root: typer.Typer) -> None:
    """Add this level's commands to the ``fusion`` app."""
    root.add_typer(route_app, name="route")
    root.command("train")(train)
    root.command("evaluate")(evaluate)
    root.command("promote")(promote)
