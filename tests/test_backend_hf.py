"""The transformers backend's prompt layouts (chat template, or a plain completion layout for a base model) and stop
strings, on the tiny random Llama; the options are checked when params.yaml is loaded."""

from __future__ import annotations

import pytest

from fusion.backends.base import BackendOptionError, Request, check_pool, identity
from fusion.backends.hf import TransformersBackend, cut_at_stop
from fusion.core.config import LLMSpec


def _spec(model, **options) -> LLMSpec:
    return LLMSpec(name="m", backend="transformers", model=str(model), input_price=0.1, output_price=0.2,
                   options=options)


def test_cut_at_stop_takes_the_earliest_stop():
    assert cut_at_stop("Paris\nQuestion: next", ["\nQuestion:", "\n\n"]) == ("Paris", True)
    assert cut_at_stop("a\n\nb\nQuestion:", ["\nQuestion:", "\n\n"]) == ("a", True)
    assert cut_at_stop("no stop here", ["\nQ:"]) == ("no stop here", False)


def test_options_are_checked_and_only_set_ones_change_the_identity(tiny_llama):
    with pytest.raises(BackendOptionError, match=r"options.completion_template.*\{prompt\}"):
        check_pool([_spec(tiny_llama, completion_template="Q: A:")])
    with pytest.raises(BackendOptionError, match="options.layout"):
        check_pool([_spec(tiny_llama, layout="plain")])
    with pytest.raises(BackendOptionError, match="options.stop"):
        check_pool([_spec(tiny_llama, stop=[""])])
    plain = identity(_spec(tiny_llama))
    assert "options" not in plain  # the fingerprint of entries written before the options existed
    assert identity(_spec(tiny_llama, stop=["\n\n"]))["options"] == {"stop": ["\n\n"]}
    assert identity(_spec(tiny_llama, layout="completion")) != plain


def test_completion_layout_and_stop_strings_on_a_real_generate(tmp_path, tiny_llama):
    chat = TransformersBackend(_spec(tiny_llama), model_cache=tmp_path)
    assert chat.render("2+2?") != "2+2?" and "2+2?" in chat.render("2+2?")  # the chat template
    completion = TransformersBackend(_spec(tiny_llama, layout="completion"), model_cache=tmp_path)
    bos = completion.tokenizer.bos_token or ""
    assert completion.render("2+2?") == bos + "Question: 2+2?\nAnswer:"
    forced = TransformersBackend(_spec(tiny_llama, layout="chat"), model_cache=tmp_path)
    forced.tokenizer.chat_template = None  # a base model's tokenizer
    with pytest.raises(ValueError, match="no chat template"):
        forced.render("x")
    free = completion.generate([Request("What is 2+2?")], max_new_tokens=24)[0]
    assert free.error is None and len(free.text) > 12
    stop = free.text[4:8]  # a piece of what the model writes: generation must end there
    stopped = TransformersBackend(_spec(tiny_llama, layout="completion", stop=[stop]), model_cache=tmp_path)
    g = stopped.generate([Request("What is 2+2?")], max_new_tokens=24)[0]
    # the same greedy text up to the stop (transformers also stops on a stop string that begins in the prompt)
    assert free.text.startswith(g.text) and stop not in g.text and len(g.text) < len(free.text)
    assert g.output_tokens < free.output_tokens  # counted up to the stop, not to max_new_tokens
