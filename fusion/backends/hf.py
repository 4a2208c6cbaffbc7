"""Local generation with transformers (CPU or GPU): batched, left-padded. The model is any model reference
(:mod:`fusion.models.refs`: a folder, a package file, GGUF, a registered ``models:/`` model) or a PEFT adapter folder
(its base is loaded from the adapter's config, the adapter applied on top).

A prompt is rendered with the model's chat template, or, for a base model without one (Gemma-3-270M), in a plain
completion layout (``options.layout: completion``, ``options.completion_template``); ``options.stop`` strings end a
generation (a base model goes on to write the next question) and are cut from the text."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fusion.backends.base import BACKENDS, TOKENS_FROM_TOKENIZER, Backend, Generation, Request
from fusion.models.load import COMPLETION_TEMPLATE, load_causal_lm, render_chat, render_completion

logger = logging.getLogger(__name__)


class TransformersOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``chat``: the tokenizer's chat template; ``completion``: ``completion_template`` (a base model); None: the
    #: chat template when the tokenizer has one, else the completion layout (how a base model is also distilled)
    layout: Literal["chat", "completion"] | None = None
    completion_template: str = Field(default=COMPLETION_TEMPLATE, description="must hold {prompt}")
    #: strings that end a generation (cut from the text, not counted beyond the tokens generated)
    stop: list[str] = []

    @field_validator("completion_template")
    @classmethod
    def _has_prompt(cls, v: str) -> str:
        if "{prompt}" not in v:
            raise ValueError("completion_template must contain {prompt}")
        return v

    @field_validator("stop")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("stop strings must not be empty")
        return v


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first of the ``stop`` strings, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


@BACKENDS.register("transformers")
class TransformersBackend(Backend):
    name = "transformers"
    Options: ClassVar[type[BaseModel]] = TransformersOptions
    identity_options = ("layout", "completion_template", "stop")
    identity_defaults_omitted = True

    def __init__(self, spec, *, model_cache: str | Path, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8) -> None:
        super().__init__(spec, model_cache=model_cache, device=device, dtype=dtype, batch_size=batch_size)
        t0 = time.perf_counter()
        self.model, self.tokenizer, path = load_causal_lm(spec.model, model_cache=model_cache, device=device,
                                                          dtype=dtype)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.eval()
        self.device = device
        logger.info("loaded %s in %.1fs", path, time.perf_counter() - t0)

    def render(self, prompt: str) -> str:
        layout = self.options.layout
        if layout is None:
            layout = "chat" if self.tokenizer.chat_template else "completion"
        if layout == "chat":
            if not self.tokenizer.chat_template:
                raise ValueError(f"{self.spec.name}: layout 'chat' but {self.spec.model} has no chat template "
                                 "(a base model): set options.layout: completion")
            return render_chat(self.tokenizer, prompt)
        return render_completion(self.tokenizer, prompt, self.options.completion_template)

    def generate(
        self, requests: Sequence[Request], *, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[Generation]:
        out: list[Generation] = []
        for i in range(0, len(requests), self.batch_size):
            out.extend(self._generate_batch(requests[i : i + self.batch_size], max_new_tokens, temperature, seed))
        return out

    def _generate_batch(
        self, requests: Sequence[Request], max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        import torch

        texts = [self.render(r.prompt) + r.prefill for r in requests]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs = {"max_new_tokens": max_new_tokens, "pad_token_id": self.tokenizer.pad_token_id}
        if self.options.stop:
            kwargs.update(stop_strings=list(self.options.stop), tokenizer=self.tokenizer)
        if temperature > 0:
            torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        t0 = time.perf_counter()
        with torch.inference_mode():
            seqs = self.model.generate(**enc, **kwargs)
        latency = time.perf_counter() - t0
        new = seqs[:, enc["input_ids"].shape[1] :]
        eos = _eos_ids(self.model, self.tokenizer)
        gens = []
        for req, row_in, row_new in zip(requests, enc["attention_mask"], new, strict=True):
            ids = row_new.tolist()
            n_out = len(ids)
            for j, t in enumerate(ids):  # count up to and including the first end token
                if t in eos:
                    n_out = j + 1
                    break
            text = self.tokenizer.decode(ids[:n_out], skip_special_tokens=True)
            if self.options.stop:
                text, stopped = cut_at_stop(text, self.options.stop)
                if stopped:  # the row's own tokens end with its stop string (the batch ran on for the others)
                    n_out = next(j for j in range(1, n_out + 1) if cut_at_stop(
                        self.tokenizer.decode(ids[:j], skip_special_tokens=True), self.options.stop)[1])
            text = (req.prefill + text).strip()
            gens.append(Generation(text, int(row_in.sum()), n_out, latency, tokens_source=TOKENS_FROM_TOKENIZER))
        return gens

    def close(self) -> None:
        del self.model


def _eos_ids(model, tokenizer) -> set[int]:
    ids = model.generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids]) if ids is not None else set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
