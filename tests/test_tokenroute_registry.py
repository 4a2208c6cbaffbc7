"""The trained router in the MLflow registry (SQLite): registered with its experts, loaded back by alias by
`fusion tokenroute generate` and by MLflow's pyfunc loader, and refused when an expert's weights changed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fusion.cli import app
from fusion.levels.token.engine import TokenRouteDecoder
from fusion.levels.token.level import Expert, init_router, open_router
from fusion.levels.token.registry import log_tokenroute, router_dir
from fusion.models.tiny_llama import build_tiny_llama
from tests.profiles import write_tiny_profile

PROMPTS = ["the answer is", "def f(x):"]


def _lora_expert(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter on ``base`` with non-zero weights (a trained adapter's stand-in)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture()
def registered(tmp_path):
    import mlflow

    base = build_tiny_llama(tmp_path / "base", seed=0, init_std=0.3)
    adapter = _lora_expert(base, tmp_path / "adapter", seed=1)
    experts = [Expert("base", str(base)), Expert("lora", str(base), adapter)]
    params = write_tiny_profile(tmp_path / "proj", base)
    router, tok = init_router(str(base), 2, model_cache=tmp_path / "cache", device="cpu", dtype="float32", seed=0)
    with torch.no_grad():
        router.head.weight.normal_(0, 3.0, generator=torch.Generator().manual_seed(2))
    folder = router.save(tmp_path / "router", tok, [e.record() for e in experts])
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/proj/mlflow.db")
    mlflow.set_experiment("tiny")
    with mlflow.start_run():
        version = log_tokenroute(mlflow, folder, registered_model="tiny-tokenroute")
    mlflow.MlflowClient().set_registered_model_alias("tiny-tokenroute", "challenger", version)
    return {"tmp": tmp_path, "params": params, "folder": folder, "experts": experts, "adapter": adapter,
            "version": version}


def _expected(r) -> list[str]:
    router, loaded, tok = open_router(r["folder"], model_cache=r["tmp"] / "cache")
    return [g.text for g in TokenRouteDecoder(loaded, tok, router).generate(PROMPTS, max_new_tokens=10)]


def test_generate_loads_the_registered_router_by_alias(registered, monkeypatch):
    import mlflow

    client = mlflow.MlflowClient()
    mv = client.get_model_version("tiny-tokenroute", registered["version"])
    assert mv.tags["fusion.experts"] == "base,lora" and str(registered["adapter"]) in mv.tags["fusion.expert.lora"]
    res = CliRunner().invoke(app, ["tokenroute", "generate", *PROMPTS, "--router", "models:/tiny-tokenroute@challenger",
                                   "--max-new-tokens", "10", "--json", "--params", str(registered["params"])])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line[line.index("{"):]) for line in res.output.splitlines() if "{" in line]
    assert [r["text"] for r in rows] == _expected(registered)
    for r in rows:
        assert set(r["expert_shares"]) == {"base", "lora"} and sum(r["expert_shares"].values()) == pytest.approx(1.0)
        assert 0 <= r["change_rate"] <= 1
    # the same through MLflow's own loader (the pyfunc model)
    monkeypatch.setenv("FUSION_MODEL_CACHE", str(registered["tmp"] / "cache"))
    model = mlflow.pyfunc.load_model("models:/tiny-tokenroute@challenger")
    out = model.predict(pd.DataFrame({"prompt": PROMPTS}), params={"max_new_tokens": 10})
    assert out["text"].tolist() == _expected(registered)
    assert router_dir("models:/tiny-tokenroute@challenger", registered["tmp"] / "c2").joinpath("routing_head.safetensors").is_file()


def test_generate_refuses_experts_that_changed(registered):
    _lora_expert(Path(registered["experts"][0].model), registered["adapter"], seed=99)  # retrained in place
    res = CliRunner().invoke(app, ["tokenroute", "generate", "hello", "--router", str(registered["folder"]),
                                   "--params", str(registered["params"])])
    assert res.exit_code == 1
    assert "not the weights the router was trained with" in res.output and "lora" in res.output


def test_generate_refuses_a_folder_that_is_no_router(registered):
    res = CliRunner().invoke(app, ["tokenroute", "generate", "hello", "--router", str(registered["tmp"] / "base"),
                                   "--params", str(registered["params"])])
    assert res.exit_code == 1 and "not a saved token-level router" in res.output
