"""The ``fusion-pipeline`` Prefect flow: queries -> collect -> judge -> ingest -> validate -> embed -> train ->
evaluate -> promote, then the thought level (templates -> thought_eval), the model level (sft_data -> distill ->
distill_eval -> promote_distilled -> experts) and the token level (tokenroute_data -> tokenroute_train ->
tokenroute_eval) after the routing log is validated.

Each task calls the stage runner from :mod:`fusion.stages`; the flow holds no business logic. Collection is a
subflow of mapped shards (``collect.scale_out``: a thread pool, or a Dask cluster; GPU shards to a GPU work pool).
Collection shards and judging retry (they resume from their parts, so a retry loses nothing); validation failing
stops the flow with its report.

Run once:      fusion pipeline            (or: python -m flows.pipeline)
Serve nightly: python -m flows.serve      (a local process that runs the `nightly-retrain` schedule)
Deploy:        prefect deploy --name nightly-retrain   (prefect.yaml; needs a Prefect server and a work pool)
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.utilities.annotations import unmapped

from fusion.config import ScaleOutConfig
from fusion.stages.driving import load_params, run_stage


def _stage_task(name: str, **options):
    @task(name=name, **options)
    def run(params_path: str):
        result = run_stage(name, params_path)
        get_run_logger().info("%s done: %s", name, result if not isinstance(result, dict) else "metrics")
        return str(result) if isinstance(result, Path) else result

    return run


queries_task = _stage_task("queries")
judge_task = _stage_task("judge", retries=2, retry_delay_seconds=10)
ingest_task = _stage_task("ingest")
validate_task = _stage_task("validate")
embed_task = _stage_task("embed", retries=1, retry_delay_seconds=5)
train_task = _stage_task("train")
evaluate_task = _stage_task("evaluate")
promote_task = _stage_task("promote")
templates_task = _stage_task("templates", retries=1, retry_delay_seconds=10)  # summaries resume from their parts
thought_eval_task = _stage_task("thought_eval", retries=1, retry_delay_seconds=10)  # answers cached
sft_data_task = _stage_task("sft_data")
distill_task = _stage_task("distill", retries=1, retry_delay_seconds=10, tags=["gpu"])  # resumes from checkpoints
distill_eval_task = _stage_task("distill_eval", retries=1, retry_delay_seconds=10)
promote_distilled_task = _stage_task("promote_distilled")
experts_task = _stage_task("experts", retries=1, retry_delay_seconds=10, tags=["gpu"])  # resumes from checkpoints
tokenroute_data_task = _stage_task("tokenroute_data", retries=1, retry_delay_seconds=10, tags=["gpu"])  # per expert
tokenroute_train_task = _stage_task("tokenroute_train", retries=1, retry_delay_seconds=10, tags=["gpu"])  # resumes
tokenroute_eval_task = _stage_task("tokenroute_eval", retries=1, retry_delay_seconds=10)  # answers cached


@flow(name="fusion-distill", log_prints=False)
def distill_flow(params_path: str) -> str:
    """LoRA distillation as a flow of its own: what the GPU deployment ``gpu-distill`` (prefect.yaml) runs when
    ``distill.gpu_deployment`` is set."""
    return distill_task(params_path)


def _distill(params_path: str, wait_for: list):
    """The distill stage here, or on ``distill.gpu_deployment`` (the tasks before it have returned: the flow
    calls them in order)."""
    deployment = load_params(params_path).distill.gpu_deployment
    if not deployment:
        return distill_task(params_path, wait_for=wait_for)
    from prefect.deployments import run_deployment

    run = run_deployment(deployment, parameters={"params_path": params_path})
    if not run.state or not run.state.is_completed():
        raise RuntimeError(f"distillation on {deployment} ended {run.state.name if run.state else 'without a state'}")
    return run


# ---- collection, fanned out ---------------------------------------------------------------------------------
def task_runner(cfg: ScaleOutConfig):
    """The task runner ``collect.scale_out`` asks for: a Dask cluster (a scheduler address, else a LocalCluster),
    or a thread pool."""
    if cfg.runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.dask_address:
            return DaskTaskRunner(address=cfg.dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.dask_workers, "processes": cfg.dask_processes,
                                              "threads_per_worker": 1})
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=cfg.shards)


@task(name="collect-shard", retries=2, retry_delay_seconds=10)
def collect_shard_task(params_path: str, shard: dict) -> int:
    """One shard of the collection: whole parts of one candidate (resumable, so a retry loses nothing)."""
    from fusion.stages.collect import run_one_shard

    rows = run_one_shard(load_params(params_path), shard)
    get_run_logger().info("shard %s:%s#%d: %d rows", shard["llm"], shard["mode"], shard["index"], rows)
    return rows


@flow(name="fusion-collect-shard", log_prints=False)
def collect_shard_flow(params_path: str, shard: dict) -> int:
    """One shard as a flow of its own: what the GPU deployment (prefect.yaml, a GPU work pool) runs."""
    return collect_shard_task(params_path, shard)


@flow(name="fusion-collect", log_prints=False)
def collect_flow(params_path: str) -> dict:
    """Collection as mapped shards on this flow's task runner (see :func:`task_runner`); shards of vllm pool
    entries go to ``collect.scale_out.gpu_deployment`` when set. Returns the log's path and the shard count."""
    from fusion.stages.collect import finish, plan_shards

    params = load_params(params_path)
    cfg = params.collect.scale_out
    shards = plan_shards(params)
    def on_gpu(shard: dict) -> bool:
        return bool(cfg.gpu_deployment) and shard["backend"] == "vllm"

    gpu = [s for s in shards if on_gpu(s)]
    local = [s for s in shards if not on_gpu(s)]
    futures = collect_shard_task.map(unmapped(params_path), local)
    if gpu:
        from prefect.deployments import run_deployment

        for shard in gpu:
            run = run_deployment(cfg.gpu_deployment, parameters={"params_path": params_path, "shard": shard})
            if not run.state or not run.state.is_completed():
                raise RuntimeError(f"GPU shard {shard['llm']}:{shard['mode']}#{shard['index']} ended "
                                   f"{run.state.name if run.state else 'without a state'}")
    rows = [f.result() for f in futures]  # raises if a shard failed (after its retries)
    out = finish(params)
    get_run_logger().info("collect: %d shard(s), %d rows generated, log %s", len(shards), sum(rows), out)
    return {"log": str(out), "shards": len(shards)}


@flow(name="fusion-pipeline", log_prints=False)
def fusion_pipeline(params_path: str = "params.yaml") -> dict:
    """Run every stage in order on the parameters in ``params_path``; returns the evaluation metrics and the
    promotion decision (``{"evaluate": ..., "promote": ...}``)."""
    params_path = str(Path(params_path).resolve())
    q = queries_task(params_path)
    scale_out = load_params(params_path).collect.scale_out
    c = collect_flow.with_options(task_runner=task_runner(scale_out))(params_path, wait_for=[q])
    j = judge_task(params_path, wait_for=[c])
    i = ingest_task(params_path, wait_for=[j])
    v = validate_task(params_path, wait_for=[i])
    e = embed_task(params_path, wait_for=[v])
    t = train_task(params_path, wait_for=[e])
    metrics = evaluate_task(params_path, wait_for=[t])
    decision = promote_task(params_path, wait_for=[metrics])
    bank = templates_task(params_path, wait_for=[decision])
    thought = thought_eval_task(params_path, wait_for=[bank])
    sft = sft_data_task(params_path, wait_for=[thought])
    d = _distill(params_path, wait_for=[sft])
    distilled = distill_eval_task(params_path, wait_for=[d])
    gate = promote_distilled_task(params_path, wait_for=[distilled])
    experts = experts_task(params_path, wait_for=[gate])
    token_data = tokenroute_data_task(params_path, wait_for=[experts])
    token_router = tokenroute_train_task(params_path, wait_for=[token_data])
    token = tokenroute_eval_task(params_path, wait_for=[token_router])
    return {"experts": experts, "evaluate": metrics, "promote": decision, "thought_eval": thought,
            "distill_eval": distilled, "promote_distilled": gate, "tokenroute_eval": token}


if __name__ == "__main__":  # pragma: no cover
    fusion_pipeline()
