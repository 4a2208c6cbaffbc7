"""The nightly-retrain deployment: what prefect.yaml and `make serve` register must run our pipeline flow nightly on
the project's parameters, in the work pool the infra script creates. The flow is built from dvc.yaml (one DAG): its
tasks wait on exactly the stages dvc.yaml says they depend on, skip what `dvc status` finds up to date and record
what they ran in dvc.lock."""

import json
from pathlib import Path

import pytest
import yaml


def test_prefect_yaml_nightly_deployment(repo_root):
    from prefect.flows import load_flow_from_entrypoint

    from fusion.cli import FLOW_ENTRYPOINT

    cfg = yaml.safe_load((repo_root / "prefect.yaml").read_text())
    (dep,) = [d for d in cfg["deployments"] if d["name"] == "nightly-retrain"]
    # the entrypoint the CLI's `fusion pipeline` loads is the deployment's, and it is our flow with its stages
    assert dep["entrypoint"] == FLOW_ENTRYPOINT
    flow = load_flow_from_entrypoint(str(repo_root / dep["entrypoint"]))
    assert flow.fn.__module__.endswith("pipeline") and flow.fn.__name__ == "fusion_pipeline"
    assert dep["parameters"] == {"params_path": "params.yaml"} and "params_path" in flow.parameters.properties
    assert (repo_root / dep["parameters"]["params_path"]).is_file()
    (schedule,) = dep["schedules"]
    assert schedule == {"cron": "0 2 * * *", "timezone": "UTC", "active": True}
    # the pool the infra script creates and starts a worker for
    assert dep["work_pool"]["name"] == "cpu-pool"
    script = (repo_root / "infra" / "prefect-worker.sh").read_text()
    assert "work-pool create cpu-pool" in script and "worker start --pool cpu-pool" in script


def test_serve_builds_the_nightly_deployment(repo_root, tmp_path):
    from flows.pipeline import fusion_pipeline
    from flows.serve import nightly_deployment

    deployment = nightly_deployment(repo_root / "params.yaml")
    assert deployment.flow_name == fusion_pipeline.name
    assert deployment.schedules[0].schedule.cron == "0 2 * * *"
    assert deployment.parameters == {"params_path": str((repo_root / "params.yaml").resolve())}
    assert Path(deployment.parameters["params_path"]).is_absolute()
    assert set(deployment.tags) == {"fusion", "nightly"}
    assert nightly_deployment("p.yaml", "5 4 * * *").schedules[0].schedule.cron == "5 4 * * *"


def test_prefect_yaml_gpu_shard_deployment(repo_root):
    """vllm shards go to a deployment of the one-shard flow in the GPU work pool the GPU infra script serves."""
    from prefect.flows import load_flow_from_entrypoint

    cfg = yaml.safe_load((repo_root / "prefect.yaml").read_text())
    (dep,) = [d for d in cfg["deployments"] if d["name"] == "gpu-shards"]
    flow = load_flow_from_entrypoint(str(repo_root / dep["entrypoint"]))
    assert flow.name == "fusion-collect-shard" and {"params_path", "shard"} <= set(flow.parameters.properties)
    assert dep["work_pool"]["name"] == "gpu-pool"
    script = (repo_root / "infra" / "prefect-gpu-worker.sh").read_text()
    assert "work-pool create gpu-pool" in script and "deploy --name gpu-shards" in script
    assert "worker start --pool gpu-pool" in script


def test_prefect_yaml_gpu_distill_deployment(repo_root):
    """The distill stage can run on the GPU work pool: a deployment of the one-stage flow, and the task tagged."""
    from prefect.flows import load_flow_from_entrypoint

    from flows.pipeline import distill_task, experts_task

    cfg = yaml.safe_load((repo_root / "prefect.yaml").read_text())
    (dep,) = [d for d in cfg["deployments"] if d["name"] == "gpu-distill"]
    flow = load_flow_from_entrypoint(str(repo_root / dep["entrypoint"]))
    assert flow.name == "fusion-distill" and "params_path" in flow.parameters.properties
    assert dep["work_pool"]["name"] == "gpu-pool"
    assert "gpu" in distill_task.tags and "gpu" in experts_task.tags


# ---- one DAG: the flow is built from dvc.yaml --------------------------------------------------------------------
def _dvc_yaml_dag(root: Path) -> dict[str, set[str]]:
    """dvc.yaml's stage DAG read without DVC: a stage depends on the stages with an output (outs, metrics, plots)
    that is, contains or lies in one of its deps (${paths.*} from params.yaml)."""
    import re
    from pathlib import PurePosixPath

    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    paths = yaml.safe_load((root / "params.yaml").read_text())["paths"]

    def entries(items) -> list[PurePosixPath]:
        names = [i if isinstance(i, str) else next(iter(i)) for i in items or []]
        return [PurePosixPath(re.sub(r"\$\{paths\.(\w+)\}", lambda m: str(paths[m.group(1)]), n)) for n in names]

    def overlap(a: PurePosixPath, b: PurePosixPath) -> bool:
        return a == b or a in b.parents or b in a.parents

    outs = {s: entries(spec.get("outs")) + entries(spec.get("metrics")) + entries(spec.get("plots"))
            for s, spec in stages.items()}
    return {s: {u for u in stages if u != s and any(overlap(d, o) for d in entries(spec.get("deps")) for o in outs[u])}
            for s, spec in stages.items()}


def test_the_flow_graph_is_dvc_yaml_dag(repo_root):
    """The flow's stages and their upstream stages are dvc.yaml's, through DVC's graph (edges: stage -> the stages
    it depends on), and equal to dvc.yaml read independently."""
    from flows.pipeline import stage_graph

    graph = stage_graph(repo_root)
    assert graph == _dvc_yaml_dag(repo_root)
    assert list(graph) == list(yaml.safe_load((repo_root / "dvc.yaml").read_text())["stages"])
    # the direction: a stage's set holds what it depends on, never what depends on it
    assert graph["queries"] == set() and graph["collect"] == {"queries"} and graph["validate"] == {"ingest", "queries"}
    assert graph["experts"] == set() and graph["tokenroute_data"] == {"experts", "sft_data", "validate"}
    # every stage named in pipeline.retries is a stage of dvc.yaml
    assert set(yaml.safe_load((repo_root / "params.yaml").read_text())["pipeline"]["retries"]) <= set(graph)


# a toy DVC project with the flow's special stages: collect (the subflow) and distill (the GPU deployment), two
# independent branches after queries (collect | sft_data -> distill) and a stage with no upstream (experts)
TOY_DVC_YAML = """
stages:
  queries: {cmd: fusion queries, deps: [src/queries.txt], outs: [out/queries.txt]}
  collect: {cmd: fusion collect, deps: [out/queries.txt], outs: [out/collect.txt]}
  sft_data: {cmd: fusion distill data, deps: [out/queries.txt, src/sft_data.txt], outs: [out/sft_data.txt]}
  distill: {cmd: fusion distill train, deps: [out/sft_data.txt], outs: [out/distill.txt]}
  evaluate:
    cmd: fusion evaluate
    deps: [out/collect.txt, out/distill.txt]
    params: [evaluate]
    metrics: [{out/evaluate.json: {cache: false}}]
  experts: {cmd: fusion distill experts, deps: [src/experts.txt], outs: [out/experts.txt]}
"""
TOY_DAG = {"queries": set(), "collect": {"queries"}, "sft_data": {"queries"}, "distill": {"sft_data"},
           "evaluate": {"collect", "distill"}, "experts": set()}
TOY_DEPS = {"queries": ["src/queries.txt"], "collect": ["out/queries.txt"],
            "sft_data": ["out/queries.txt", "src/sft_data.txt"], "distill": ["out/sft_data.txt"],
            "evaluate": ["out/collect.txt", "out/distill.txt"], "experts": ["src/experts.txt"]}
TOY_OUT = {s: f"out/{s}.json" if s == "evaluate" else f"out/{s}.txt" for s in TOY_DAG}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def toy(tmp_path, repo_root):
    from dvc.repo import Repo

    root = tmp_path / "toy"
    (root / "src").mkdir(parents=True)
    (root / "dvc.yaml").write_text(TOY_DVC_YAML)
    for name in ("queries", "sft_data", "experts"):
        (root / "src" / f"{name}.txt").write_text(f"{name} v1\n")
    params = yaml.safe_load((repo_root / "params.yaml").read_text())
    params["pipeline"] = {"retries": {"sft_data": 1}, "retry_delay_s": 0}
    params["distill"]["gpu_deployment"] = "fusion-distill/gpu-distill"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Repo.init(str(root), no_scm=True).close()
    return root


class _Recorder:
    """Stands in for the stage runners: records each stage's start and end, writes its output from its deps."""

    def __init__(self, root: Path, meet: list[set[str]] = ()):
        import threading

        self.root, self.spans, self.deployments = root, {}, []
        barriers = [(group, threading.Barrier(len(group), timeout=60)) for group in meet]
        self.barriers = {s: barrier for group, barrier in barriers for s in group}

    def run_stage(self, name: str, params_path) -> object:
        import time

        assert Path(params_path).parent == self.root
        start = time.monotonic()
        if name in self.barriers:  # the two stages of an independent pair must be running at once to pass
            self.barriers.pop(name).wait()
        text = name + ":" + "|".join((self.root / d).read_text() for d in TOY_DEPS[name])
        out = self.root / TOY_OUT[name]
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"text": text}) if out.suffix == ".json" else text)
        time.sleep(0.2)
        self.spans[name] = (start, time.monotonic())
        return {"metric": 1.0} if name == "evaluate" else out

    def install(self, monkeypatch):
        from types import SimpleNamespace
        from uuid import uuid4

        import prefect.deployments
        from prefect import flow

        import flows.pipeline as pipeline

        @flow(name="fusion-collect")
        def fake_collect(params_path: str) -> dict:
            return {"log": str(self.run_stage("collect", params_path)), "shards": 1}

        def fake_run_deployment(name, parameters):
            self.deployments.append(name)
            self.run_stage("distill", parameters["params_path"])
            return SimpleNamespace(id=uuid4(), state=SimpleNamespace(is_completed=lambda: True, name="Completed"))

        monkeypatch.setattr(pipeline, "run_stage", self.run_stage)
        monkeypatch.setattr(pipeline, "in_child", lambda fn, *args: fn(*args))  # the recorder is in this process
        monkeypatch.setattr(pipeline, "collect_flow", fake_collect)
        monkeypatch.setattr(prefect.deployments, "run_deployment", fake_run_deployment)
        return self


def _task_runs(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {r.name: r for r in runs}


def _subflow_runs(task_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentTaskRunId

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(any_=[task_run_id])))


@pytest.fixture
def skipped():
    """The stages the tasks logged as skipped "up to date" (their logger is prefect.task_runs), as a list."""
    import logging

    import flows.pipeline  # noqa: F401  (importing prefect configures its loggers, replacing their handlers)

    found: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            if "up to date" in record.getMessage():
                found.append(record.getMessage().split(":")[0])

    handler, logger = Keep(), logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    yield found
    logger.removeHandler(handler)


def test_the_flow_runs_dvc_yaml_dag_concurrently_and_records_dvc_lock(harness, toy, monkeypatch, skipped):
    """Run under the test harness with the runners recorded: one task per stage of dvc.yaml waiting on exactly
    its upstream stages (in the API and in time), independent branches at once, retries from params.yaml, collect
    as its subflow, distill on its GPU deployment; then every stage is in dvc.lock and `dvc status` is clean."""
    from dvc.repo import Repo

    from flows.pipeline import fusion_pipeline, stage_graph

    assert stage_graph(toy) == TOY_DAG
    rec = _Recorder(toy, meet=[{"queries", "experts"}, {"collect", "sft_data"}]).install(monkeypatch)
    monkeypatch.chdir(toy)  # DVC's run cache is written from inside the project
    state = fusion_pipeline(params_path=str(toy / "params.yaml"), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert set(result) == set(TOY_DAG) and result["evaluate"] == {"metric": 1.0}
    assert result["collect"] == {"log": str(toy / "out/collect.txt"), "shards": 1}
    assert result["distill"]["deployment"] == "fusion-distill/gpu-distill" and rec.deployments == [
        "fusion-distill/gpu-distill"]
    # each stage started once all its upstream stages had ended; the independent pairs met at their barriers
    assert set(rec.spans) == set(TOY_DAG) and not rec.barriers
    for stage, upstream in TOY_DAG.items():
        for u in upstream:
            assert rec.spans[stage][0] >= rec.spans[u][1], (stage, u)
    # the task runs the flow submitted: one per stage, waiting on exactly its upstream stages' task runs
    runs = _task_runs(state.state_details.flow_run_id)
    (placeholder,) = set(runs) - set(TOY_DAG)  # Prefect's record of the subflow the collect task called
    assert placeholder.startswith("fusion-collect")
    (sub,) = _subflow_runs(runs.pop(placeholder).id)
    assert sub.state.is_completed()
    assert set(runs) == set(TOY_DAG)
    names = {r.id: name for name, r in runs.items()}
    for stage, run in runs.items():
        assert {names[i.id] for i in run.task_inputs.get("wait_for", [])} == TOY_DAG[stage], stage
        assert run.empirical_policy.retries == (1 if stage == "sft_data" else 0), stage
    assert "gpu" in runs["distill"].tags and "gpu" in runs["experts"].tags and "gpu" not in runs["collect"].tags
    # every stage the flow ran is recorded in dvc.lock: `dvc status` is clean, as after `dvc repro`
    with Repo(str(toy)) as repo:
        assert repo.status() == {}
    assert set(yaml.safe_load((toy / "dvc.lock").read_text())["stages"]) == set(TOY_DAG)
    assert any((toy / ".dvc" / "cache" / "runs").iterdir())  # and DVC's run cache, as `dvc repro` writes
    assert skipped == []


def test_the_flow_skips_stages_dvc_status_finds_up_to_date(harness, toy, monkeypatch, repo_root, skipped):
    """A stage `dvc status` finds up to date is skipped (logged "up to date", result None); a changed dependency
    re-runs its stage and the stages downstream of it only; another parameters file runs every stage and leaves
    dvc.lock alone."""
    from dvc.repo import Repo

    from flows.pipeline import fusion_pipeline

    monkeypatch.chdir(repo_root)  # outside the project: no run cache, the rest the same
    rec = _Recorder(toy).install(monkeypatch)
    fusion_pipeline(params_path=str(toy / "params.yaml"))
    assert set(rec.spans) == set(TOY_DAG) and (toy / "dvc.lock").is_file()
    assert skipped == []

    rec = _Recorder(toy).install(monkeypatch)
    result = fusion_pipeline(params_path=str(toy / "params.yaml"))
    assert rec.spans == {} and rec.deployments == [] and result == dict.fromkeys(TOY_DAG)
    assert sorted(skipped) == sorted(TOY_DAG)

    (toy / "src" / "sft_data.txt").write_text("sft_data v2\n")
    skipped.clear()
    rec = _Recorder(toy).install(monkeypatch)
    result = fusion_pipeline(params_path=str(toy / "params.yaml"))
    assert set(rec.spans) == {"sft_data", "distill", "evaluate"}
    assert {s for s, r in result.items() if r is None} == {"queries", "collect", "experts"}
    assert sorted(skipped) == ["collect", "experts", "queries"]
    with Repo(str(toy)) as repo:
        assert repo.status() == {}

    # parameters other than the project's params.yaml: dvc.lock does not describe their data
    lock = (toy / "dvc.lock").read_text()
    (toy / "other.yaml").write_text((toy / "params.yaml").read_text())
    rec = _Recorder(toy).install(monkeypatch)
    fusion_pipeline(params_path=str(toy / "other.yaml"))
    assert set(rec.spans) == set(TOY_DAG) and (toy / "dvc.lock").read_text() == lock


def test_the_flow_rejects_retries_of_unknown_stages(harness, toy):
    from flows.pipeline import fusion_pipeline

    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["pipeline"]["retries"] = {"sft-data": 1}
    (toy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    state = fusion_pipeline(params_path=str(toy / "params.yaml"), return_state=True)
    assert state.is_failed() and "sft-data" in state.message


def test_the_gpu_deployment_runs_distill_here(harness, toy, monkeypatch):
    """The flow the gpu-distill deployment runs trains on its own machine, never sending it on again."""
    from flows.pipeline import distill_flow

    (toy / "out").mkdir()
    (toy / "out" / "sft_data.txt").write_text("sft")
    rec = _Recorder(toy).install(monkeypatch)
    assert distill_flow(str(toy / "params.yaml")) == str(toy / "out/distill.txt")
    assert set(rec.spans) == {"distill"} and rec.deployments == []


def test_max_parallel_one_runs_the_stages_one_at_a_time(harness, toy, monkeypatch):
    from itertools import pairwise

    from flows.pipeline import fusion_pipeline

    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["pipeline"]["max_parallel"] = 1
    (toy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rec = _Recorder(toy).install(monkeypatch)
    fusion_pipeline(params_path=str(toy / "params.yaml"))
    spans = sorted(rec.spans.values())
    assert len(spans) == len(TOY_DAG) and all(a[1] <= b[0] for a, b in pairwise(spans))


def _fails_unpicklably():
    class Report:
        def render(self) -> str:
            return "3 blocking expectations failed"

    from fusion.data.validate import ValidationFailed

    raise ValidationFailed(Report())


def test_a_stage_runs_in_a_process_of_its_own():
    """Stages that run at once do not share a process (model loading and seeds are process-wide); the result and
    the exception come back, one that does not pickle as a RuntimeError with its message."""
    import os

    from flows.pipeline import in_child

    assert in_child(os.getpid) != os.getpid()
    with pytest.raises(ValueError, match="invalid literal"):
        in_child(int, "x")
    with pytest.raises(RuntimeError, match="ValidationFailed: 3 blocking expectations failed"):
        in_child(_fails_unpicklably)
