"""LoRA SFT with TRL + PEFT on a tiny model: the loss falls, a killed run resumes, the adapter reloads and
generates, the merged model answers as the adapter does, and the registered model loads back by alias."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fusion.config import LLMSpec, TrainerConfig

EXAMPLES = pd.DataFrame({"query_id": [f"q{i}" for i in range(16)],
                         "prompt": [f"What is {a} + {b}?" for a in range(4) for b in range(4)],
                         "completion": [f"Answer: {a + b}" for a in range(4) for b in range(4)]})


def _cfg(**kw) -> TrainerConfig:
    base = {"max_steps": 12, "batch_size": 4, "save_steps": 4, "learning_rate": 5e-3, "max_length": 128,
            "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    return TrainerConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    from fusion.core.lora import train_lora

    out = tmp_path_factory.mktemp("distill")
    return train_lora(EXAMPLES, str(tiny_llama), out, _cfg(), model_cache=out / "cache")


def test_lora_lowers_the_training_loss(trained):
    losses = [loss for _, loss in trained.losses]
    assert trained.steps == 12 and len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05  # it learnt something
    assert trained.train_tokens > 0 and trained.tokens_per_s > 0 and trained.peak_memory_mb > 0


def _greedy(spec_model: str, tmp_path: Path, prompts: list[str]) -> list[str]:
    from fusion.backends import Request, make_backend

    spec = LLMSpec(name="m", backend="transformers", model=spec_model, input_price=0, output_price=0)
    backend = make_backend(spec, model_cache=tmp_path / "cache", batch_size=4)
    try:
        return [g.text for g in backend.generate([Request(p) for p in prompts], max_new_tokens=6)]
    finally:
        backend.close()


def test_adapter_reloads_and_merged_equals_adapter(trained, tmp_path):
    assert (trained.adapter / "adapter_config.json").is_file()
    assert not (trained.merged / "adapter_config.json").exists() and (trained.merged / "config.json").is_file()
    prompts = ["What is 1 + 2?", "What is 3 + 0?", "Name a colour."]
    via_adapter = _greedy(str(trained.adapter), tmp_path, prompts)  # the transformers backend loads the adapter
    via_merged = _greedy(str(trained.merged), tmp_path, prompts)
    assert via_adapter == via_merged
    assert all(isinstance(t, str) for t in via_adapter)


def test_registered_model_loads_by_alias(trained, tmp_path, monkeypatch):
    import mlflow

    from fusion.core.lora import log_lora_model
    from fusion.core.promotion import CHAMPION
    from fusion.models.refs import ModelNotFoundError, materialize

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("t")
    with mlflow.start_run():
        version = log_lora_model(mlflow, trained.merged, trained.adapter, registered_model="tiny-distilled",
                                tags={"fusion.data.md5": "abc"})
    client = mlflow.MlflowClient(uri)
    client.set_registered_model_alias("tiny-distilled", CHAMPION, version)
    assert client.get_model_version("tiny-distilled", version).tags["fusion.data.md5"] == "abc"
    run = client.get_run(client.get_model_version("tiny-distilled", version).run_id)
    assert "adapter" in {a.path for a in client.list_artifacts(run.info.run_id)}
    folder = Path(materialize("models:/tiny-distilled@champion", tmp_path / "cache"))
    assert (folder / "config.json").is_file() and (folder / "tokenizer_config.json").is_file()
    prompts = ["What is 1 + 2?", "What is 2 + 2?"]
    assert _greedy("models:/tiny-distilled@champion", tmp_path, prompts) == _greedy(str(trained.merged), tmp_path,
                                                                                   prompts)
    with pytest.raises(ModelNotFoundError, match="not in the registry"):
        materialize("models:/tiny-distilled@nobody", tmp_path / "cache")


SCRIPT = """
import sys, time, json
import pandas as pd
from pathlib import Path
from fusion.config import TrainerConfig
from fusion.core.lora import train_lora
ex = pd.read_json(sys.argv[3], orient="records")
cfg = TrainerConfig(**json.loads(sys.argv[4]))
slow = lambda step, logs: time.sleep(float(sys.argv[5]))
r = train_lora(ex, sys.argv[1], Path(sys.argv[2]), cfg, model_cache=Path(sys.argv[2]) / "cache", on_log=slow)
print(json.dumps({"steps": r.steps, "resumed_from": r.resumed_from}))
"""


def test_a_killed_training_run_resumes_from_its_last_checkpoint(tiny_llama, tmp_path):
    """A real SIGKILL mid-run: the rerun continues from the last checkpoint and ends at the same step count."""
    out = tmp_path / "run"
    data = tmp_path / "ex.json"
    EXAMPLES.to_json(data, orient="records")
    cfg = json.dumps(_cfg(max_steps=30, save_steps=3).model_dump())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, "-c", SCRIPT, str(tiny_llama), str(out), str(data), cfg]
    proc = subprocess.Popen([*args, "0.25"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("checkpoint-6")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("checkpoint-*")
                  if (p / "trainer_state.json").is_file())  # complete ones (the kill may cut one mid-write)
    assert done and max(done) < 30, done  # killed mid-way
    assert not (out / "adapter").exists()
    second = subprocess.run([*args, "0"], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    result = json.loads(second.stdout.strip().splitlines()[-1])
    assert result["steps"] == 30 and result["resumed_from"] == f"checkpoint-{max(done)}"
    state = json.loads((out / "checkpoints" / "checkpoint-30" / "trainer_state.json").read_text())
    logged = [h["step"] for h in state["log_history"] if "loss" in h]
    assert logged[-1] == 30 and max(done) + 1 in logged  # the steps after the checkpoint were trained
    assert (out / "adapter" / "adapter_config.json").is_file()
    # changed inputs start afresh
    third = subprocess.run([*args[:-1], json.dumps(_cfg(max_steps=3, save_steps=3).model_dump()), "0"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert json.loads(third.stdout.strip().splitlines()[-1]) == {"steps": 3, "resumed_from": None}
    # the same inputs again: the finished run is not repeated (its adapter stays as it was)
    stamp = (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    fourth = subprocess.run([*args[:-1], json.dumps(_cfg(max_steps=3, save_steps=3).model_dump()), "0"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert json.loads(fourth.stdout.strip().splitlines()[-1]) == {"steps": 3, "resumed_from": None}
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp


def test_domain_experts_train_and_register(tmp_path, tiny_llama, shared_data):
    """A math expert from GSM8K's train split and a code expert from MBPP's (task ids 601-974), each a LoRA
    adapter on the one base, registered in MLflow for the token-level router."""
    import mlflow
    import yaml

    from fusion.levels.token.stages.experts import run
    from fusion.stages import load_params
    from tests.profiles import write_tiny_profile

    params_path = write_tiny_profile(tmp_path, tiny_llama)
    p = yaml.safe_load(params_path.read_text())
    queries = shared_data / "queries"
    p["tokenroute"]["experts"] = [
        {"name": "base"},
        {"name": "math", "train": {"task": "gsm8k", "source": str(queries / "gsm8k" / "train.jsonl"), "limit": 8}},
        {"name": "code", "train": {"task": "mbpp", "source": str(queries / "mbpp.jsonl"), "id_range": [601, 974],
                                   "limit": 8, "mode": "direct",
                                   "trainer": {"max_steps": 2, "batch_size": 4, "save_steps": 2}}},
    ]
    params_path.write_text(yaml.safe_dump(p, sort_keys=False))
    out = run(load_params(params_path))
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["experts"]) == {"math", "code"}
    math, code = manifest["experts"]["math"], manifest["experts"]["code"]
    assert math["domain"] == "math" and code["domain"] == "code" and code["steps"] == 2 and math["steps"] == 4
    assert math["registered_model"] == "fusion-expert-math" and math["version"] == "1"
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_model_version("fusion-expert-code", "1").tags["fusion.expert.domain"] == "code"
    for name in ("math", "code"):
        adapter = out / name / "adapter"
        assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
        assert isinstance(_greedy(str(adapter), tmp_path, ["What is 2 + 2?"])[0], str)
    with pytest.raises(ValueError, match="no reference solutions"):
        from fusion.levels.token.config import TokenExpertConfig
        from fusion.levels.token.experts import expert_examples

        expert_examples(TokenExpertConfig(name="x", train={"task": "arc_challenge", "source": "hf"}))


def test_the_collator_labels_the_completion_only(tiny_llama, tmp_path):
    """Token by token: the labels of a collated batch are -100 on every prompt token and on padding, and the
    token itself on every completion token (the chat-rendered assistant turn), so only the answer is learnt."""
    from fusion.core.lora import sft_trainer

    examples = pd.DataFrame({"query_id": ["a", "b"], "prompt": ["What is 12 + 30?", "Name a colour of the sky"],
                             "completion": ["Answer: 42", "The sky is blue on a clear day"]})
    trainer = sft_trainer(examples, str(tiny_llama), _cfg(), tmp_path / "ck")
    tok = trainer.processing_class
    rows = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(rows)
    for i, (row, ex) in enumerate(zip(rows, examples.itertuples(), strict=True)):
        prompt_ids = tok.apply_chat_template([{"role": "user", "content": ex.prompt}], add_generation_prompt=True,
                                             tokenize=True)
        prompt_ids = list(prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids)
        ids, labels, attn = (batch[k][i].tolist() for k in ("input_ids", "labels", "attention_mask"))
        n = len(row["input_ids"])
        assert ids[:len(prompt_ids)] == prompt_ids  # the prompt, as the chat template renders it
        assert labels[:len(prompt_ids)] == [-100] * len(prompt_ids)
        assert labels[len(prompt_ids):n] == ids[len(prompt_ids):n]
        assert all(x == -100 for x, a in zip(labels, attn, strict=True) if a == 0)
        assert ex.completion in tok.decode(ids[len(prompt_ids):n])


@pytest.fixture(scope="module")
def base_model(tiny_llama, tmp_path_factory) -> Path:
    """The tiny model without a chat template: a base model like Gemma-3-270M."""
    import shutil

    out = tmp_path_factory.mktemp("base") / "tiny-base"
    shutil.copytree(tiny_llama, out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(cfg))
    return out


def test_a_base_model_is_distilled_in_the_completion_layout_it_is_prompted_in(base_model, tmp_path):
    """Without a chat template, SFT trains on the text the transformers backend gives the model in generation
    (``Question: …\\nAnswer:``, token for token), the loss on the answer and its EOS only; the trained model is
    prompted in that layout without being told (no ``options.layout``)."""
    from fusion.backends.hf import TransformersBackend
    from fusion.core.lora import sft_trainer, train_lora

    examples = pd.DataFrame({"query_id": ["a", "b"], "prompt": ["What is 12 + 30?", "Name a colour of the sky"],
                             "completion": ["Answer: 42", "The sky is blue"]})
    trainer = sft_trainer(examples, str(base_model), _cfg(), tmp_path / "ck")
    tok = trainer.processing_class
    assert not tok.chat_template
    spec = LLMSpec(name="base", backend="transformers", model=str(base_model), input_price=0, output_price=0)
    backend = TransformersBackend(spec, model_cache=tmp_path / "cache")
    rows = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(rows)
    for i, (row, ex) in enumerate(zip(rows, examples.itertuples(), strict=True)):
        rendered = backend.render(ex.prompt)
        assert rendered.endswith(f"Question: {ex.prompt}\nAnswer:")
        prompt_ids = tok(rendered, add_special_tokens=False)["input_ids"]  # what generation feeds the model
        ids, labels = (batch[k][i].tolist() for k in ("input_ids", "labels"))
        n = len(row["input_ids"])
        assert ids[:len(prompt_ids)] == prompt_ids
        assert labels[:len(prompt_ids)] == [-100] * len(prompt_ids)
        assert labels[len(prompt_ids):n] == ids[len(prompt_ids):n] and ids[n - 1] == tok.eos_token_id
        assert tok.decode(ids[len(prompt_ids):n - 1]).strip() == ex.completion
    result = train_lora(EXAMPLES, str(base_model), tmp_path / "out", _cfg(max_steps=2), model_cache=tmp_path / "c")
    merged = TransformersBackend(LLMSpec(name="d", backend="transformers", model=str(result.merged), input_price=0,
                                         output_price=0),
                                 model_cache=tmp_path / "cache")
    assert merged.render("2+2?") == backend.render("2+2?")
