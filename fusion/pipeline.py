"""The pipeline's stages over files: read inputs, call the stage function, write outputs, log to MLflow.

These are the only implementations; the CLI (`fusion <stage>`), the DVC stages (`dvc.yaml`) and the Prefect
tasks (`flows/`) all call them.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd

from fusion.config import Params
from fusion.tracking import flat_metrics, stage_run

logger = logging.getLogger(__name__)

STAGES = ("queries", "collect", "validate", "embed", "train", "evaluate", "promote")


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


MANIFEST = "manifest.json"


def _manifest(params: Params) -> dict:
    path = params.paths.routers_dir / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no trained routers at {params.paths.routers_dir} ({MANIFEST} missing): run train")
    return json.loads(path.read_text())


def run_train(params: Params) -> Path:
    """Fit every router in ``params.routers`` on the train split, save each under ``routers_dir/<name>/`` and
    register each as a version of the registered router; ``manifest.json`` lists them."""
    import shutil

    from fusion.embed import Encoder, shared_prefixes
    from fusion.routers import make_router
    from fusion.tracking import log_router_model

    log, data = _routing_data(params)
    train = data.split("train")
    val = data.split("val") if (data.splits == "val").any() else None
    root = params.paths.routers_dir
    if root.exists():
        shutil.rmtree(root)
    prefixes = shared_prefixes(log)
    examples = log["query"].drop_duplicates().head(3).tolist()
    logged = {"routers": {r.name: {"seed": r.seed, **r.params} for r in params.routers},
              "scenario": params.scenario.model_dump(), "encoder": params.embed.encoder}
    entries = []
    encoder = Encoder(params.embed.encoder, params.paths.embedding_cache, params.embed.batch_size)  # loads lazily
    with stage_run(params.tracking, "train", logged) as ml:
        for spec in params.routers:
            t0 = time.perf_counter()
            router = make_router(spec.name, seed=spec.seed, **spec.params).fit(train, val)
            fit_s = time.perf_counter() - t0
            router.meta.update(encoder=params.embed.encoder, scenario=params.scenario.model_dump(),
                               text_prefixes=prefixes)
            out = router.save(root / spec.name)
            version = (log_router_model(out, params.tracking, examples, name=f"router-{spec.name}", encoder=encoder)
                       if ml else None)
            entries.append({"name": spec.name, "dir": spec.name, "version": version, "fit_s": round(fit_s, 3)})
            logger.info("trained %s in %.1f s%s", spec.name, fit_s, f", registered version {version}" if version else "")
            if ml:
                ml.log_metric(f"{spec.name}.fit_s", fit_s)
        manifest = {"registered_model": params.tracking.registered_router if params.tracking.enabled else None,
                    "routers": entries, "train_run_id": ml.active_run().info.run_id if ml else None}
        (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if ml:
            ml.log_dict(manifest, "routers_manifest.json")
    return root


def run_evaluate(params: Params) -> dict:
    """Every trained router and the baselines on the evaluation split; the best router is the challenger."""
    from fusion.evaluate import evaluate_routers, plot_cost_quality, render_markdown, write_metrics
    from fusion.routers import load_router

    _, data = _routing_data(params)
    manifest = _manifest(params)
    routers = {e["name"]: load_router(params.paths.routers_dir / e["dir"]) for e in manifest["routers"]}
    test = data.split(params.evaluate.split)
    with stage_run(params.tracking, "evaluate", {"routers": ",".join(routers), "split": params.evaluate.split}) as ml:
        metrics = evaluate_routers(routers, data.split("train"), test)
        metrics["versions"] = {e["name"]: e["version"] for e in manifest["routers"]}
        write_metrics(metrics, params.paths.eval_metrics)
        params.paths.eval_report.parent.mkdir(parents=True, exist_ok=True)
        params.paths.eval_report.write_text(render_markdown(metrics))
        plot_cost_quality(metrics, test, params.paths.eval_plot)
        if ml:
            ml.log_metrics(flat_metrics({k: metrics[k] for k in ("overall", "per_task", "gap_recovered",
                                                                 "gain_over_best_single", "gain_over_task_best")}))
            ml.set_tag("fusion.best_router", metrics["best_router"])
            ml.set_tag("fusion.split_fingerprint", metrics["split_fingerprint"])
            for p in (params.paths.eval_metrics, params.paths.eval_report, params.paths.eval_plot):
                ml.log_artifact(str(p))
            client, model = ml.MlflowClient(), manifest["registered_model"]
            for name, version in metrics["versions"].items():
                if version is None or model is None:
                    continue
                for key in ("performance", "cost", "reward"):
                    client.set_model_version_tag(model, version, f"eval.{key}", f"{metrics['overall'][name][key]:.6g}")
                client.set_model_version_tag(model, version, "eval.split",
                                             f"{params.evaluate.split}:{metrics['split_fingerprint']}")
    return metrics


def run_promote(params: Params) -> dict:
    """The promotion gate on the evaluation's best router (see :mod:`fusion.promote`); writes its decision."""
    from fusion.evaluate import split_fingerprint
    from fusion.promote import promote
    from fusion.tracking import registry_client

    metrics = json.loads(params.paths.eval_metrics.read_text())
    model = _manifest(params)["registered_model"]  # where train registered the versions
    best = metrics["best_router"]
    version = metrics["versions"].get(best)
    if not params.tracking.enabled:
        decision = {"promoted": False, "challenger": None, "reason": "tracking disabled: no model registry"}
    elif model is None or version is None:
        decision = {"promoted": False, "challenger": None,
                    "reason": f"the routers were trained without registering them (no version of {best!r}): "
                              "re-run train with tracking enabled"}
    else:
        _, data = _routing_data(params)
        test = data.split(params.evaluate.split)
        if split_fingerprint(test) != metrics["split_fingerprint"]:
            raise RuntimeError("the evaluation metrics are stale (another split than the current log's): "
                               "re-run evaluate before promote")
        cfg = params.promote
        with stage_run(params.tracking, "promote", {**cfg.model_dump(), "challenger_router": best,
                                                    "challenger_version": version}) as ml:
            client = registry_client(params.tracking)
            decision = promote(client, model, version, test, cfg.metric, cfg.margin).to_dict()
            decision["challenger_router"] = best
            ml.log_metrics({k: decision[k] for k in ("challenger_score", "champion_score")
                            if decision[k] is not None})
            ml.log_metric("promoted", float(decision["promoted"]))
            ml.set_tags({"fusion.promotion.decision": "promoted" if decision["promoted"] else "kept",
                         "fusion.promotion.reason": decision["reason"][:5000]})
            ml.log_dict(decision, "promotion.json")
    params.paths.promotion.parent.mkdir(parents=True, exist_ok=True)
    params.paths.promotion.write_text(json.dumps(decision, indent=2) + "\n")
    return decision


RUNNERS = {
    "queries": run_queries,
    "collect": run_collect,
    "validate": run_validate,
    "embed": run_embed,
    "train": run_train,
    "evaluate": run_evaluate,
    "promote": run_promote,
}
