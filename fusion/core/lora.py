"""LoRA SFT with TRL + PEFT, shared by the model level (distillation) and the token level (the domain experts): prompt–completion examples in, an adapter and a merged model out, resumable.

``train_lora`` runs TRL's ``SFTTrainer`` with a PEFT ``LoraConfig`` (loss on the completion only), checkpoints
every ``save_steps`` under ``<out>/checkpoints`` and, when a checkpoint of the same run exists (same examples,
base and settings: ``<out>/fingerprint.json``), resumes from the last one: a run killed mid-way continues where
its last checkpoint left it. A run whose inputs changed starts afresh. The adapter goes to ``<out>/adapter`` and
the merged model (``merge_and_unload``, a plain model folder that vLLM or any tool loads) to ``<out>/merged``,
each with the tokenizer.

GGUF bases are materialised to a plain folder first (the GGUF quantizer refuses training and saving).
"""

from __future__ import annotations

import hashlib
import json
import logging
import resource
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from fusion.core.config import TrainerConfig
from fusion.core.examples import to_conversations
from fusion.models.load import completion_sft_records
from fusion.models.refs import materialize
from fusion.tracking import pinned_requirements

logger = logging.getLogger(__name__)

ADAPTER, MERGED, CHECKPOINTS, RESULT = "adapter", "merged", "checkpoints", "result.json"


@dataclass
class TrainResult:
    adapter: Path
    merged: Path
    steps: int
    resumed_from: str | None
    first_loss: float | None
    last_loss: float | None
    train_tokens: int
    runtime_s: float
    tokens_per_s: float
    peak_memory_mb: float
    losses: list[tuple[int, float]]

    def metrics(self) -> dict:
        d = asdict(self)
        return {k: v for k, v in d.items() if isinstance(v, int | float) and v is not None}


def fingerprint(examples: pd.DataFrame, base: str, cfg: TrainerConfig) -> str:
    h = hashlib.sha1()
    h.update(base.encode())
    h.update(json.dumps(cfg.model_dump(), sort_keys=True).encode())
    for p, c in zip(examples["prompt"], examples["completion"], strict=True):
        h.update(p.encode())
        h.update(b"\0")
        h.update(c.encode())
    return h.hexdigest()[:16]


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _last_checkpoint(d: Path) -> str | None:
    """The last complete checkpoint; a checkpoint cut off by a kill mid-write (no ``trainer_state.json``, which
    the trainer writes last) is removed."""
    if not d.is_dir():
        return None
    found = sorted((p for p in d.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for ckpt in found:
        try:
            json.loads((ckpt / "trainer_state.json").read_text())
            return str(ckpt)
        except (OSError, ValueError):
            pass
        logger.warning("distill: %s is incomplete (killed while it was written): removed", ckpt.name)
        shutil.rmtree(ckpt, ignore_errors=True)
    return None


def train_lora(examples: pd.DataFrame, base: str, out: Path, cfg: TrainerConfig, *, model_cache: Path,
               on_log: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train a LoRA adapter on ``examples`` (prompt, completion) into ``out``; resume a killed run."""
    if examples.empty:
        raise ValueError("no SFT examples to train on")
    from transformers import TrainerCallback

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_path = materialize(base, model_cache)
    fp = fingerprint(examples, base, cfg)
    fp_file = out / "fingerprint.json"
    ckpt_dir = out / CHECKPOINTS
    if fp_file.is_file() and json.loads(fp_file.read_text()).get("fingerprint") != fp:
        logger.info("distill: inputs changed since the last run in %s: starting afresh", out)
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    done = _finished(out, fp)
    if done is not None:
        logger.info("distill: %s is trained already (same examples, base and settings): nothing to do", out)
        return done
    fp_file.write_text(json.dumps({"fingerprint": fp, "base": base}) + "\n")
    resume = _last_checkpoint(ckpt_dir)

    class _Log(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_):
            if logs and on_log is not None:
                on_log(int(state.global_step), {k: float(v) for k, v in logs.items() if isinstance(v, int | float)})

    trainer = sft_trainer(examples, base_path, cfg, ckpt_dir, callbacks=[_Log()])
    tok = trainer.processing_class
    n_tokens = int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]))
    if resume:
        logger.info("distill: resuming from %s", resume)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    runtime = time.perf_counter() - t0
    steps = int(trainer.state.global_step)
    epochs_done = float(trainer.state.epoch or 0.0)
    # the tokens this process trained on: the whole passes done here, scaled by the share of steps it ran
    steps_here = steps - (int(Path(resume).name.split("-")[-1]) if resume else 0)
    tokens_here = n_tokens * epochs_done * (steps_here / steps if steps else 0.0)

    adapter_dir, merged_dir = out / ADAPTER, out / MERGED
    for d in (adapter_dir, merged_dir):
        shutil.rmtree(d, ignore_errors=True)
    trainer.model.save_pretrained(adapter_dir)
    tok.save_pretrained(adapter_dir)
    merged = trainer.model.merge_and_unload()
    merged.save_pretrained(merged_dir)
    tok.save_pretrained(merged_dir)
    history = [(int(h["step"]), float(h["loss"])) for h in trainer.state.log_history if "loss" in h]
    result = TrainResult(
        adapter=adapter_dir, merged=merged_dir, steps=steps, resumed_from=Path(resume).name if resume else None,
        first_loss=history[0][1] if history else None, last_loss=history[-1][1] if history else None,
        train_tokens=int(tokens_here), runtime_s=runtime,
        tokens_per_s=tokens_here / runtime if runtime > 0 else 0.0,
        peak_memory_mb=_peak_memory_mb(cfg.device), losses=history)
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
    (out / RESULT).write_text(json.dumps({"fingerprint": fp, **record}) + "\n")
    return result


def sft_trainer(examples: pd.DataFrame, base_path: str | Path, cfg: TrainerConfig, ckpt_dir: Path, *,
                callbacks: list | None = None):
    """TRL's ``SFTTrainer`` with a PEFT ``LoraConfig`` on prompt–completion conversations (a base model without a
    chat template: plain prompt–completion text in the completion layout it is prompted in): the loss on the
    completion tokens only (``completion_only_loss``; the collator's labels are -100 on the prompt and padding,
    tested token by token)."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(base_path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    dtype = getattr(torch, cfg.dtype)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    if tok.chat_template:
        records = [{"prompt": r["prompt"], "completion": r["completion"]} for r in to_conversations(examples)]
    else:  # a base model: the completion layout it is prompted in (fusion.models.load.render_completion)
        records = completion_sft_records(tok, examples["prompt"].tolist(), examples["completion"].tolist())
    ds = Dataset.from_list(records)
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM")
    on_cpu = cfg.device == "cpu"
    args = SFTConfig(
        output_dir=str(ckpt_dir), num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate, lr_scheduler_type="constant", warmup_steps=0,
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, report_to="none", seed=cfg.seed, data_seed=cfg.seed,
        max_length=cfg.max_length, completion_only_loss=True, packing=False, use_cpu=on_cpu,
        bf16=cfg.dtype == "bfloat16" and not on_cpu, fp16=cfg.dtype == "float16" and not on_cpu,
        activation_checkpointing=cfg.gradient_checkpointing, dataloader_num_workers=0,
        disable_tqdm=False, save_only_model=False,
    )
    return SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora,
                      callbacks=callbacks or [])


def _finished(out: Path, fp: str) -> TrainResult | None:
    """The result of a finished run of the same fingerprint whose adapter and merged model are in place."""
    path = out / RESULT
    if not path.is_file():
        return None
    rec = json.loads(path.read_text())
    if rec.pop("fingerprint", None) != fp:
        return None
    rec["adapter"], rec["merged"] = Path(rec["adapter"]), Path(rec["merged"])
    if not (rec["adapter"] / "adapter_config.json").is_file() or not (rec["merged"] / "config.json").is_file():
        return None
    rec["losses"] = [tuple(x) for x in rec["losses"]]
    return TrainResult(**rec)


def log_lora_model(ml, merged: Path, adapter: Path | None, *, registered_model: str, tags: dict[str, str]) -> str:
    """Log ``merged`` (transformers flavour) and ``adapter`` in the active run ``ml`` (the mlflow module) and
    register a version of ``registered_model``; returns the version."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(merged)
    tok = AutoTokenizer.from_pretrained(merged)
    info = ml.transformers.log_model(transformers_model={"model": model, "tokenizer": tok}, name="model",
                                     task="text-generation",
                                     pip_requirements=pinned_requirements("torch", "transformers", "accelerate", "peft"),
                                     registered_model_name=registered_model)
    if adapter is not None:
        ml.log_artifacts(str(adapter), "adapter")
    version = str(info.registered_model_version)
    client = ml.MlflowClient()
    for k, v in tags.items():
        client.set_model_version_tag(registered_model, version, k, str(v)[:5000])
    return version
