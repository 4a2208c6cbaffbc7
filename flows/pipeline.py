"""The ``fusion-pipeline`` Prefect flow: queries -> collect -> judge -> ingest -> validate -> embed -> train ->
evaluate -> promote.

Each task calls the stage runner from :mod:`fusion.stages`; the flow holds no business logic. Collection and
judging retry (they resume from their parts, so a retry loses nothing); validation failing stops the flow with its
report.

Run once:      fusion pipeline            (or: python -m flows.pipeline)
Serve nightly: python -m flows.serve      (a local process that runs the `nightly-retrain` schedule)
Deploy:        prefect deploy --name nightly-retrain   (prefect.yaml; needs a Prefect server and a work pool)
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from fusion.stages.driving import run_stage


def _stage_task(name: str, **options):
    @task(name=name, **options)
    def run(params_path: str):
        result = run_stage(name, params_path)
        get_run_logger().info("%s done: %s", name, result if not isinstance(result, dict) else "metrics")
        return str(result) if isinstance(result, Path) else result

    return run


queries_task = _stage_task("queries")
collect_task = _stage_task("collect", retries=2, retry_delay_seconds=10)
judge_task = _stage_task("judge", retries=2, retry_delay_seconds=10)
ingest_task = _stage_task("ingest")
validate_task = _stage_task("validate")
embed_task = _stage_task("embed", retries=1, retry_delay_seconds=5)
train_task = _stage_task("train")
evaluate_task = _stage_task("evaluate")
promote_task = _stage_task("promote")


@flow(name="fusion-pipeline", log_prints=False)
def fusion_pipeline(params_path: str = "params.yaml") -> dict:
    """Run every stage in order on the parameters in ``params_path``; returns the evaluation metrics and the
    promotion decision (``{"evaluate": ..., "promote": ...}``)."""
    params_path = str(Path(params_path).resolve())
    q = queries_task(params_path)
    c = collect_task(params_path, wait_for=[q])
    j = judge_task(params_path, wait_for=[c])
    i = ingest_task(params_path, wait_for=[j])
    v = validate_task(params_path, wait_for=[i])
    e = embed_task(params_path, wait_for=[v])
    t = train_task(params_path, wait_for=[e])
    metrics = evaluate_task(params_path, wait_for=[t])
    decision = promote_task(params_path, wait_for=[metrics])
    return {"evaluate": metrics, "promote": decision}


if __name__ == "__main__":  # pragma: no cover
    fusion_pipeline()
