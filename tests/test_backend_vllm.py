"""The vllm backend's wrapper on a CPU machine: vLLM itself needs a GPU and cannot be installed beside this stack,
so a stand-in module with vLLM's documented offline API (``LLM(model=..., tensor_parallel_size=..., dtype=...)``,
``LLM.chat(conversations, SamplingParams, use_tqdm=False)`` returning ``RequestOutput``s with ``prompt_token_ids``
and ``outputs[0].text/.token_ids``), built on transformers, checks what we do around it: one ``chat`` call per
part, options passed through, token counts, rows. The engine itself awaits a GPU (docs/benchmarks.md)."""

from __future__ import annotations

import sys
import types

import pytest

from fusion.backends import make_backend
from fusion.config import CollectConfig, LLMSpec, QueriesConfig
from fusion.data.collect import collect
from fusion.data.queries import build_queries


def _standin_vllm(calls: list):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class SamplingParams:
        def __init__(self, max_tokens, temperature, seed):
            self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed

    class LLM:
        def __init__(self, model, **kwargs):
            calls.append(("init", model, kwargs))
            self.tok = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForCausalLM.from_pretrained(model).eval()

        def chat(self, conversations, sampling, use_tqdm=True, add_generation_prompt=True,
                 continue_final_message=False):
            calls.append(("chat", len(conversations), sampling.max_tokens))
            outs = []
            for conv in conversations:
                ids = self.tok.apply_chat_template(conv, add_generation_prompt=add_generation_prompt,
                                                   continue_final_message=continue_final_message,
                                                   return_tensors="pt", return_dict=True)
                new = self.model.generate(**ids, max_new_tokens=sampling.max_tokens, do_sample=False)[0]
                new = new[ids["input_ids"].shape[1]:].tolist()
                comp = types.SimpleNamespace(text=self.tok.decode(new, skip_special_tokens=True), token_ids=new)
                outs.append(types.SimpleNamespace(prompt_token_ids=ids["input_ids"][0].tolist(), outputs=[comp]))
            return outs

    return types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams)


def test_vllm_backend_one_chat_call_per_part(tiny_llama, tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "vllm", _standin_vllm(calls))
    spec = LLMSpec(name="gpu", backend="vllm", model=str(tiny_llama), modes=["direct"], input_price=1,
                   output_price=1, options={"tensor_parallel_size": 2, "dtype": "bfloat16", "part_size": 4})
    queries = build_queries(QueriesConfig(sources=[{"task": "arith_word", "source": "synthetic", "limit": 10}]))
    log = collect(queries, [spec], CollectConfig(max_new_tokens={"direct": 5, "think": 5}, sandbox_workers=1),
                  tmp_path / "parts", model_cache=tmp_path / "mc")
    init = calls[0]
    assert init[0] == "init" and init[2]["tensor_parallel_size"] == 2 and init[2]["dtype"] == "bfloat16"
    assert [c[1] for c in calls[1:]] == [4, 4, 2]  # every prompt of a part in one call
    assert len(log) == 10 and log["error"].isna().all() and (log["output_tokens"] <= 5).all()
    assert (log["backend"] == "vllm").all() and (log["input_tokens"] > 10).all()


def test_vllm_backend_says_how_to_install_it(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # not installed
    spec = LLMSpec(name="gpu", backend="vllm", model=str(tiny_llama), input_price=1, output_price=1)
    with pytest.raises(RuntimeError, match=r"\[gpu\]"):
        make_backend(spec, model_cache=tmp_path)
