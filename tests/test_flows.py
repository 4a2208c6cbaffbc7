"""The nightly-retrain deployment: prefect.yaml points at the real flow with the nightly cron."""

import importlib

import yaml


def test_prefect_yaml_nightly_deployment(repo_root):
    cfg = yaml.safe_load((repo_root / "prefect.yaml").read_text())
    (dep,) = [d for d in cfg["deployments"] if d["name"] == "nightly-retrain"]
    assert dep["schedules"][0]["cron"] == "0 2 * * *"
    module, _, attr = dep["entrypoint"].partition(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
    assert flow.name == "fusion-pipeline"
    assert set(dep["parameters"]) <= set(flow.parameters.properties)


def test_serve_builds_a_scheduled_deployment():
    from flows.pipeline import fusion_pipeline
    from flows.serve import NIGHTLY_CRON

    deployment = fusion_pipeline.to_deployment(name="nightly-retrain", cron=NIGHTLY_CRON)
    assert deployment.name == "nightly-retrain"
    assert deployment.schedules[0].schedule.cron == "0 2 * * *"
