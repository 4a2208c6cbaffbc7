"""Stage ``evaluate``: every trained router and the baselines on the evaluation split; the best router is the
challenger. Writes the metrics (JSON), every method's per-query rows (Parquet), the report (Markdown) and the
cost-quality plot, and tags each registered
version with its scores."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fusion.core.heldout import write_per_query
from fusion.levels.query import load_router
from fusion.levels.query.evaluation import evaluate_routers, per_query_frame
from fusion.levels.query.report import evaluation_markdown, plot_evaluation
from fusion.levels.query.stages.routing import read_manifest, routing_data
from fusion.tracking import data_version, flat_metrics, stage_run

if TYPE_CHECKING:  # the assembled parameters: a driver's type, not a dependency of this stage
    from fusion.config import Params


def run(params: Params) -> dict:
    _, data = routing_data(params)
    manifest = read_manifest(params)
    routers = {e["name"]: load_router(params.paths.routers_dir / e["dir"]) for e in manifest["routers"]}
    test = data.split(params.evaluate.split)
    paths = params.paths
    with stage_run(params.tracking, "evaluate", {"routers": ",".join(routers), "split": params.evaluate.split}) as ml:
        values: dict = {}
        metrics = evaluate_routers(routers, data.split("train"), test, task_blind=params.evaluate.task_blind,
                                   values=values)
        write_per_query(per_query_frame(test, values), paths.eval_per_query)
        metrics["versions"] = {e["name"]: e["version"] for e in manifest["routers"]}
        for p in (paths.eval_metrics, paths.eval_report):
            p.parent.mkdir(parents=True, exist_ok=True)
        paths.eval_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        paths.eval_report.write_text(evaluation_markdown(metrics))
        plot_evaluation(metrics, test, paths.eval_plot)
        if ml:
            ml.log_metrics(flat_metrics({k: metrics[k] for k in ("overall", "per_task", "gap_recovered",
                                                                 "gain_over_best_single", "gain_over_task_best",
                                                                 "task_blind") if k in metrics}))
            ml.set_tags(data_version(params.paths.routing_log))
            ml.set_tag("fusion.best_router", metrics["best_router"])
            ml.set_tag("fusion.split_fingerprint", metrics["split_fingerprint"])
            for p in (paths.eval_metrics, paths.eval_report, paths.eval_plot):
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
