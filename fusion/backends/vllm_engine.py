"""vLLM's offline engine (``vllm.LLM``) for GPU workers: every prompt of a part in one ``chat`` call.

Needs the ``gpu`` extra (``pip install -e '.[gpu]'`` on a machine with a GPU); vLLM is imported only when this
backend is built. The model is the same plain folder the transformers backend loads (a GGUF reference is
dequantised into it once). Token counts are vLLM's own (``prompt_token_ids`` and the generated ``token_ids``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fusion.backends.base import BACKENDS, TOKENS_FROM_TOKENIZER, Backend, Generation, Request
from fusion.models.refs import materialize


class VLLMOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tensor_parallel_size: int = Field(default=1, gt=0)
    dtype: str = Field(default="auto", description="auto | float16 | bfloat16 | float32")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    max_model_len: int | None = Field(default=None, gt=0)
    part_size: int = Field(default=1024, gt=0, description="prompts per generate call (one durable part each)")


@BACKENDS.register("vllm")
class VLLMBackend(Backend):
    name = "vllm"
    Options = VLLMOptions
    identity_options = ("dtype",)

    def __init__(self, spec, *, model_cache: str | Path, device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 8) -> None:
        super().__init__(spec, model_cache=model_cache, device=device, dtype=dtype, batch_size=batch_size)
        try:
            import vllm
        except ImportError as exc:
            raise RuntimeError("the vllm backend needs vLLM: pip install -e '.[gpu]' on a GPU machine "
                               f"({exc})") from None
        o: VLLMOptions = self.options
        self._vllm = vllm
        kwargs = {"tensor_parallel_size": o.tensor_parallel_size, "dtype": o.dtype,
                  "gpu_memory_utilization": o.gpu_memory_utilization}
        if o.max_model_len:
            kwargs["max_model_len"] = o.max_model_len
        self.llm = vllm.LLM(model=materialize(spec.model, model_cache), **kwargs)

    @classmethod
    def part_size_for(cls, options: VLLMOptions, batch_size: int) -> int:
        return options.part_size

    def generate(
        self, requests: Sequence[Request], *, max_new_tokens: int, temperature: float = 0.0, seed: int = 0
    ) -> list[Generation]:
        sampling = self._vllm.SamplingParams(max_tokens=max_new_tokens, temperature=temperature, seed=seed)
        conversations = [[{"role": "user", "content": r.prompt}] for r in requests]
        prefill = any(r.prefill for r in requests)
        if prefill:  # continue the reply's start (all requests of a judge part share it)
            for conv, r in zip(conversations, requests, strict=True):
                conv.append({"role": "assistant", "content": r.prefill})
        t0 = time.perf_counter()
        outputs = self.llm.chat(conversations, sampling, use_tqdm=False, add_generation_prompt=not prefill,
                                continue_final_message=prefill)
        latency = time.perf_counter() - t0  # one call for the part: each row carries the part's wall time
        gens = []
        for r, out in zip(requests, outputs, strict=True):
            comp = out.outputs[0]
            gens.append(Generation((r.prefill + comp.text).strip(), len(out.prompt_token_ids), len(comp.token_ids), latency,
                                   tokens_source=TOKENS_FROM_TOKENIZER))
        return gens

    def close(self) -> None:
        del self.llm
