"""The ``fusion-pipeline`` Prefect flow, built from dvc.yaml: one task per stage of dvc.yaml, each waiting for
exactly the stages it depends on there (the stages whose outputs are among its dependencies), so independent
branches run at once (the routers, the thought level, the model level and the experts of the token level; at most
``pipeline.max_parallel`` stages at a time when it is set), each stage in a Python process of its own.
dvc.yaml stays the one declaration of the stages, their dependencies, parameters and outputs; the flow reads it
through DVC's own API (``Repo(root).index.graph``), never by parsing it.

Each task calls the stage runner from :mod:`fusion.stages` (through :func:`fusion.stages.run_stage`); the
flow holds no business logic. Two stages run differently: ``collect`` is a subflow of mapped shards
(``collect.scale_out``: a thread pool, or a Dask cluster; GPU shards to a GPU work pool), and ``distill`` goes to
the GPU deployment ``distill.gpu_deployment`` when it is set. A failed stage is retried ``pipeline.retries`` times
(params.yaml); validation failing stops everything downstream of it, with its report.

Like ``dvc repro``, the flow skips a stage ``dvc status`` finds up to date (its command, dependencies, parameters
and outputs are those dvc.lock records; the task logs "up to date" and returns None) and records a stage it ran in
dvc.lock (``dvc commit --force`` of that stage: its outputs go to the DVC cache), so the next run, the flow's or
``dvc repro``'s, skips it. Both happen only where dvc.lock describes the data: the parameters are the project's own
params.yaml (the file dvc.yaml reads) in an initialised DVC project (``pipeline.skip_up_to_date``,
``pipeline.lock``); elsewhere (another parameters file, or a folder without dvc.yaml: then the stages are those of
the dvc.yaml this flow ships beside) every stage runs and no dvc.lock is touched.

Run once:      fusion pipeline            (or: python -m flows.pipeline)
Serve nightly: python -m flows.serve      (a local process that runs the `nightly-retrain` schedule)
Deploy:        prefect deploy --name nightly-retrain   (prefect.yaml; needs a Prefect server and a work pool)
"""

from __future__ import annotations

import logging
import pickle
import threading
from contextlib import nullcontext
from functools import cache
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from fusion.cli_base import apply_thread_policy
from fusion.config import PipelineConfig, ScaleOutConfig
from fusion.stages import load_params, run_stage
from fusion.tracking import use_registry

apply_thread_policy()  # before a stage loads torch (none of the imports above does)

#: the project this flow ships in: its dvc.yaml declares the stages when the parameters' folder has none
PROJECT_ROOT = Path(__file__).resolve().parents[1]
#: stages tagged for the GPU work pool (prefect.yaml): they train or run the LoRA experts
GPU_STAGES = frozenset({"distill", "experts", "tokenroute_data", "tokenroute_train"})
#: one DVC call at a time in this process: a DVC ``Repo`` is not thread-safe, its lock is per process, and
#: dvc.lock is one file that every stage's commit rewrites
_DVC = threading.Lock()
#: per flow run (by id), the slots of ``pipeline.max_parallel``: a stage holds one while it runs
_SLOTS: dict[str, threading.BoundedSemaphore] = {}


# ---- the DAG and its state, from dvc.yaml through DVC ------------------------------------------------------------
def dvc_project(params_path: str | Path) -> Path:
    """The folder whose dvc.yaml declares the stages: the one holding the parameters if it has a dvc.yaml, else
    the project this flow ships in."""
    folder = Path(params_path).resolve().parent
    return folder if (folder / "dvc.yaml").is_file() else PROJECT_ROOT


def _target(root: Path, stage: str) -> str:
    # DVC resolves a bare stage name against the working directory; dvc.yaml's path makes it independent of it
    return f"{Path(root) / 'dvc.yaml'}:{stage}"


def stage_graph(root: str | Path) -> dict[str, set[str]]:
    """Each stage of ``root/dvc.yaml`` -> the stages it depends on (those with an output among its dependencies),
    from DVC's own stage graph. Its edges go from a stage to the stages it depends on (``dvc.repo.graph``); only
    the pipeline stages of ``root/dvc.yaml`` are kept (not ``.dvc`` files of ``dvc add``ed data, nor other
    dvc.yaml files)."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    dvcfile = Path(root).resolve() / "dvc.yaml"

    def ours(stage) -> bool:
        return isinstance(stage, PipelineStage) and Path(stage.dvcfile.path).resolve() == dvcfile

    with _DVC, Repo(str(root), uninitialized=True) as repo:
        graph = repo.index.graph
        return {s.name: {u.name for u in graph.successors(s) if ours(u)} for s in graph.nodes if ours(s)}


def stage_up_to_date(root: str | Path, stage: str) -> bool:
    """Whether ``dvc status`` reports nothing for the stage: its command, dependencies, parameters and outputs
    are those dvc.lock records (a stage dvc.lock lacks, or whose output is missing, is not up to date)."""
    from dvc.repo import Repo

    with _DVC, Repo(str(root)) as repo:
        return not repo.status(targets=[_target(root, stage)])


def commit_stage(root: str | Path, stage: str) -> None:
    """Record the stage as it is now in dvc.lock, as ``dvc commit --force <stage>`` does (``Repo.commit``, stage
    by stage): its dependencies', parameters' and outputs' hashes, its outputs into the DVC cache. The run cache
    too when the working directory is in the project (DVC resolves its entries against it)."""
    from dvc.repo import Repo, lock_repo

    root = Path(root).resolve()
    with _DVC, Repo(str(root)) as repo, lock_repo(repo):
        for st in repo.stage.collect(_target(root, stage)):
            st.save(run_cache=Path.cwd().resolve().is_relative_to(root))
            st.commit()
            st.dump(update_pipeline=False)


def _tracked(params_path: Path, root: Path, cfg: PipelineConfig) -> bool:
    """Whether dvc.lock describes this run's data: the parameters are the project's params.yaml (what dvc.yaml
    reads) in an initialised DVC project, and skipping or recording is on."""
    return ((cfg.skip_up_to_date or cfg.lock) and params_path == root / "params.yaml"
            and (root / ".dvc").is_dir())


# ---- one task per stage ------------------------------------------------------------------------------------------
def _child(fn, args: tuple, level: int) -> Any:
    """What the child process of :func:`in_child` runs: ``fn(*args)``, its logs on stderr as the CLI's, an
    exception that would not survive the trip back (one whose arguments are not its constructor's) as a
    RuntimeError with its message."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("fusion").setLevel(level)
    try:
        return fn(*args)
    except Exception as exc:
        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:
            raise RuntimeError(f"{type(exc).__name__}: {exc}") from exc
        raise


def in_child(fn, *args) -> Any:
    """``fn(*args)`` in a fresh Python process (spawned), its result or exception back here. A stage runs in
    one: stages that run at once must not share a process (loading a model is not thread-safe: transformers
    builds it on the meta device process-wide; seeds and torch's thread count are process-wide too)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    level = logging.getLogger("fusion").getEffectiveLevel()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_child, fn, args, level).result()


def _run(name: str, params_path: str, here: bool) -> Any:
    """Run one stage: collection as the subflow of mapped shards, distillation on its GPU deployment when set
    (unless ``here``), any other stage with its runner in a process of its own."""
    if name == "collect":
        scale_out = load_params(params_path).collect.scale_out
        return collect_flow.with_options(task_runner=task_runner(scale_out))(params_path)
    if name == "distill" and not here:
        return _distill(params_path)
    return in_child(run_stage, name, params_path)


@cache
def stage_task(name: str):
    """The Prefect task of one stage (GPU stages tagged ``gpu``); the flow sets its retries from params.yaml."""

    @task(name=name, task_run_name=name, tags=["gpu"] if name in GPU_STAGES else None)
    def run(params_path: str, project: str | None = None, skip: bool = False, lock: bool = False,
            here: bool = False) -> Any:
        logger = get_run_logger()
        if project and skip:
            try:
                if stage_up_to_date(project, name):
                    logger.info("%s: up to date (dvc status), skipped", name)
                    return None
            except Exception as exc:  # e.g. a `dvc` command holding the lock: running is the safe choice
                logger.warning("%s: dvc status failed (%s); running it", name, exc)
        with _SLOTS.get(str(flow_run.id)) or nullcontext():
            result = _run(name, params_path, here)
        logger.info("%s done: %s", name, result if not isinstance(result, dict) else "metrics")
        if project and lock:
            try:
                commit_stage(project, name)
                logger.info("%s: recorded in dvc.lock", name)
            except Exception as exc:  # the stage ran; only the record is missing: the next run re-runs it
                logger.warning("%s: not recorded in dvc.lock (%s); `dvc status` will list it", name, exc)
        return str(result) if isinstance(result, Path) else result

    return run


distill_task = stage_task("distill")
experts_task = stage_task("experts")


@flow(name="fusion-distill", log_prints=False)
def distill_flow(params_path: str) -> Any:
    """LoRA distillation as a flow of its own: what the GPU deployment ``gpu-distill`` (prefect.yaml) runs when
    ``distill.gpu_deployment`` is set."""
    return distill_task(params_path, here=True)


def _distill(params_path: str) -> Any:
    """The distill stage here, or on ``distill.gpu_deployment`` (a run of :func:`distill_flow` on a GPU worker)."""
    deployment = load_params(params_path).distill.gpu_deployment
    if not deployment:
        return in_child(run_stage, "distill", params_path)
    from prefect.deployments import run_deployment

    run = run_deployment(deployment, parameters={"params_path": params_path})
    if not run.state or not run.state.is_completed():
        raise RuntimeError(f"distillation on {deployment} ended {run.state.name if run.state else 'without a state'}")
    return {"deployment": deployment, "flow_run": str(run.id)}


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
    from fusion.data.stages.collect import run_one_shard

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
    from fusion.data.stages.collect import finish, plan_shards

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


@flow(name="fusion-pipeline", log_prints=False, task_runner=ThreadPoolTaskRunner())
def fusion_pipeline(params_path: str = "params.yaml") -> dict:
    """Run the stages of dvc.yaml on the parameters in ``params_path``, each once the stages it depends on are
    done, independent ones at once (see the module's docstring for what is skipped and recorded in dvc.lock).
    Returns every stage's result by name (None for a stage skipped as up to date), e.g. the evaluation metrics
    and the promotion decision (``{"evaluate": ..., "promote": ..., ...}``)."""
    logger = get_run_logger()
    path = Path(params_path).resolve()
    params_path = str(path)
    params = load_params(params_path)
    cfg = params.pipeline
    root = dvc_project(path)
    graph = stage_graph(root)
    unknown = sorted(set(cfg.retries) - set(graph))
    if unknown:
        raise ValueError(f"pipeline.retries names {unknown}, not stages of {root / 'dvc.yaml'} ({sorted(graph)})")
    tracked = _tracked(path, root, cfg)
    if not tracked:
        why = ("pipeline.skip_up_to_date and pipeline.lock are off" if not (cfg.skip_up_to_date or cfg.lock)
               else f"{path} is not {root / 'params.yaml'} in a DVC project")
        logger.info("every stage runs, dvc.lock is left alone: %s", why)
    # the tracking store and experiment exist before stages that run at once write to it (each would create them)
    use_registry(params.tracking)
    if cfg.max_parallel:
        _SLOTS[str(flow_run.id)] = threading.BoundedSemaphore(cfg.max_parallel)
    # submitted in topological order: each stage's upstream stages are already submitted (so a bounded thread
    # pool cannot fill up with stages waiting on stages queued behind them)
    futures = {}
    try:
        for name in TopologicalSorter(graph).static_order():
            stage = stage_task(name).with_options(retries=cfg.retries.get(name, cfg.default_retries),
                                                  retry_delay_seconds=cfg.retry_delay_s)
            futures[name] = stage.submit(params_path, str(root) if tracked else None, cfg.skip_up_to_date,
                                         cfg.lock, wait_for=[futures[u] for u in sorted(graph[name])])
        wait(list(futures.values()))
    finally:
        _SLOTS.pop(str(flow_run.id), None)
    failed = [n for n, f in futures.items() if not f.state.is_completed()]
    if failed:
        logger.error("stages not completed (failed, or after a failed one): %s", ", ".join(failed))
    return {name: f.result() for name, f in futures.items()}  # raises the first failure, in topological order


if __name__ == "__main__":  # pragma: no cover
    fusion_pipeline()
