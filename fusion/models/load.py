"""Loading a causal LM and its tokenizer from any model reference (:mod:`fusion.models.refs`), with a PEFT LoRA
adapter on it when asked: the one loader of the transformers backend and of the token-level router's experts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from fusion.models.refs import materialize

#: transformers' loading is not thread-safe (its lazy imports, and the meta-device weights of `from_pretrained`):
#: shards collected by threads of one process (Prefect's thread pool, a Dask cluster with processes=False) load
#: their models one at a time
LOAD_LOCK = threading.RLock()


def load_causal_lm(ref: str, *, model_cache: str | Path, adapter: str | Path | None = None, merge: bool = False,
                   device: str = "cpu", dtype: str = "float32"):
    """``(model, tokenizer, path)``. ``ref`` may itself be a LoRA adapter folder (its base comes from the
    adapter's config); ``adapter`` is a LoRA adapter folder applied on ``ref``. ``merge``: fold the adapter into
    the weights (a plain model: faster to run, and its KV cache is that of a normal model)."""
    with LOAD_LOCK:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = materialize(ref, model_cache)
        torch_dtype = getattr(torch, dtype)
        tokenizer = AutoTokenizer.from_pretrained(path)
        if (Path(path) / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        if adapter is not None:
            from peft import PeftModel

            if not (Path(adapter) / "adapter_config.json").is_file():
                raise FileNotFoundError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json)")
            model = PeftModel.from_pretrained(model, str(adapter))
        if merge and hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        return model.to(device), tokenizer, path


#: how a base model (no chat template, e.g. Gemma-3-270M) is prompted: in generation and in SFT alike, so that a
#: model distilled in this layout is asked in it
COMPLETION_TEMPLATE = "Question: {prompt}\nAnswer:"


def render_chat(tokenizer, prompt: str) -> str:
    """The text a chat model is given for a one-turn user ``prompt`` (the prompt itself without a chat template)."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def render_completion(tokenizer, prompt: str, template: str = COMPLETION_TEMPLATE) -> str:
    """The text a base model is given for ``prompt`` in the completion layout (its BOS token first)."""
    return (tokenizer.bos_token or "") + template.format(prompt=prompt)


def completion_sft_records(tokenizer, prompts: Sequence[str], completions: Sequence[str],
                           template: str = COMPLETION_TEMPLATE) -> list[dict[str, str]]:
    """Standard (not conversational) TRL prompt–completion records in the completion layout, whose tokens are
    those :func:`render_completion` gives in generation: TRL tokenizes the text with the tokenizer's special
    tokens, so the BOS token is written only where the tokenizer would not add it; each completion follows after
    one space (TRL appends the EOS token)."""
    bos = tokenizer.bos_token
    adds_bos = bool(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]
    records = []
    for prompt, completion in zip(prompts, completions, strict=True):
        text = render_completion(tokenizer, prompt, template)
        records.append({"prompt": text.removeprefix(bos) if adds_bos else text,
                        "completion": " " + completion.strip()})
    return records
