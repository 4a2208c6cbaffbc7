"""The nightly-retrain deployment: what prefect.yaml and `make serve` register must run our pipeline flow nightly on
the project's parameters, in the work pool the infra script creates."""

from pathlib import Path

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
