"""The pipeline's stages over files: read inputs, call the stage function, write outputs, log to MLflow.

These are the only implementations; the CLI (`fusion <stage>`), the DVC stages (`dvc.yaml`) and the Prefect
tasks (`flows/`) all call them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from fusion.config import Params
from fusion.tracking import flat_metrics, stage_run

logger = logging.getLogger(__name__)

STAGES = ("queries", "collect", "validate", "embed", "train", "evaluate")


def run_queries(params: Params) -> Path:
    from fusion.queries import build_queries, write_queries

    with stage_run(params.tracking, "queries", params.queries.model_dump()) as ml:
        df = build_queries(params.queries)
        out = write_queries(df, params.paths.queries)
        if ml:
            ml.log_metrics({"n_queries": len(df), "n_test": int((df["split"] == "test").sum())})
            ml.log_dict(df.groupby(["task", "split"]).size().unstack(fill_value=0).to_dict(), "queries_per_task.json")
    return out


def run_collect(params: Params) -> Path:
    from fusion.collect import collect
    from fusion.log.schema import write_log
    from fusion.log.summary import summarize
    from fusion.queries import read_queries

    queries = read_queries(params.paths.queries)
    logged = {"pool": [s.model_dump() for s in params.pool], "collect": params.collect.model_dump()}
    with stage_run(params.tracking, "collect", logged) as ml:
        log = collect(queries, list(params.pool), params.collect, params.paths.collect_parts,
                      model_cache=params.paths.model_cache)
        out = write_log(log, params.paths.routing_log)
        if ml:
            by_cand = log.groupby("candidate", observed=True).agg(
                performance=("performance", "mean"), cost_usd=("cost_usd", "sum"),
                output_tokens=("output_tokens", "sum"), errors=("error", "count"))
            for cand, row in by_cand.iterrows():
                ml.log_metrics(flat_metrics(row.to_dict(), f"{cand}.".replace(":", "_")))
            ml.log_metrics({"rows": len(log), "total_cost_usd": float(log["cost_usd"].sum())})
            ml.log_dict(summarize(log, source=str(out)).to_dict(), "routing_log_summary.json")
            ml.log_table(by_cand.reset_index(), "per_candidate.json")
    return out


def run_validate(params: Params) -> Path:
    from fusion.log.schema import coerce_log
    from fusion.validate import ValidationFailed, validate_log, write_report

    log = coerce_log(pd.read_parquet(params.paths.routing_log))
    with stage_run(params.tracking, "validate", params.validate_.model_dump()) as ml:
        report = validate_log(log, params.validate_.max_error_rate)
        out = write_report(report, params.paths.validation_report)
        if ml:
            ml.log_metric("expectations_failed", len(report.failures))
            ml.log_artifact(str(out))
    logger.info(report.render())
    if not report.success:
        raise ValidationFailed(report)
    return out


def run_embed(params: Params) -> Path:
    from fusion.embed import Encoder, embed_queries, write_embeddings
    from fusion.log.schema import read_log
    from fusion.models import resolve_ref

    log = read_log(params.paths.routing_log)
    with stage_run(params.tracking, "embed", params.embed.model_dump()) as ml:
        enc = Encoder(params.embed.encoder, params.paths.embedding_cache, params.embed.batch_size)
        emb = embed_queries(log, enc)
        out = write_embeddings(emb, params.paths.embeddings)
        if ml:
            dim = len(emb["embedding"].iloc[0]) if len(emb) else 0
            ml.log_metrics({"n_queries": len(emb), "dim": dim})
            ml.log_dict({"encoder": params.embed.encoder, "resolved": resolve_ref(params.embed.encoder),
                         "n_queries": len(emb), "dim": dim, "output": str(out)}, "embeddings.json")
    return out


def _routing_data(params: Params):
    from fusion.embed import read_embeddings
    from fusion.log.schema import read_log
    from fusion.routers import build_routing_data

    alpha, beta = params.scenario.weights()
    log = read_log(params.paths.routing_log)
    return log, build_routing_data(log, read_embeddings(params.paths.embeddings), alpha, beta)


def run_train(params: Params) -> Path:
    from fusion.routers import make_router
    from fusion.tracking import log_router_model

    log, data = _routing_data(params)
    train = data.split("train")
    logged = {"router": params.router.model_dump(), "scenario": params.scenario.model_dump(),
              "encoder": params.embed.encoder}
    with stage_run(params.tracking, "train", logged) as ml:
        router = make_router(params.router.name, seed=params.router.seed, **params.router.params).fit(train)
        router.meta["encoder"] = params.embed.encoder
        router.meta["scenario"] = params.scenario.model_dump()
        out = router.save(params.paths.router_dir)
        if ml:
            version = log_router_model(out, params.tracking, log["query"].drop_duplicates().head(3).tolist())
            ml.set_tag("fusion.registered_version", str(version))
    return out


def run_evaluate(params: Params) -> dict:
    from fusion.evaluate import evaluate_router, plot_cost_quality, render_markdown, write_metrics
    from fusion.routers import load_router

    _, data = _routing_data(params)
    router = load_router(params.paths.router_dir)
    test = data.split(params.evaluate.split)
    with stage_run(params.tracking, "evaluate", {"router": router.name, "split": params.evaluate.split}) as ml:
        metrics = evaluate_router(router, data.split("train"), test)
        metrics["router"] = router.name
        write_metrics(metrics, params.paths.eval_metrics)
        params.paths.eval_report.parent.mkdir(parents=True, exist_ok=True)
        params.paths.eval_report.write_text(render_markdown(metrics))
        plot_cost_quality(metrics, test, params.paths.eval_plot)
        if ml:
            ml.log_metrics(flat_metrics({"overall": metrics["overall"], "per_task": metrics["per_task"]}))
            if metrics["gap_recovered"] is not None:
                ml.log_metric("gap_recovered", metrics["gap_recovered"])
            for p in (params.paths.eval_metrics, params.paths.eval_report, params.paths.eval_plot):
                ml.log_artifact(str(p))
    return metrics


RUNNERS = {
    "queries": run_queries,
    "collect": run_collect,
    "validate": run_validate,
    "embed": run_embed,
    "train": run_train,
    "evaluate": run_evaluate,
}
