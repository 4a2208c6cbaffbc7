"""The token-level decoding engine on tiny random Llama models (a locally trained tokenizer): the cached policies
against the no-cache reference, batching, the meaning of the two logit terms, the forward-call counts, stop
conditions, seeded sampling, and the shared-vocabulary check."""

from __future__ import annotations

import copy

import pytest
import torch

from fusion.levels.token.engine import TokenRouteDecoder
from fusion.levels.token.router import RouterLM
from fusion.levels.token.vocab import VocabularyMismatchError, shared_vocab_size
from fusion.models.tiny_llama import build_tiny_llama, build_tokenizer

PROMPTS = ["the answer is", "think step by step about the apples and books and the total cost in dollars",
           "def f(x):", "which is the largest number"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tmp_path_factory.mktemp("tiny")
    # expert b pads its embedding matrix (512 tokens -> 600 rows): its extra logits are sliced off
    paths = [build_tiny_llama(d / f"m{i}", seed=i, init_std=0.5, vocab_multiple=100 if i == 1 else None, tie=i != 2)
             for i in range(3)]
    tok = AutoTokenizer.from_pretrained(paths[0])
    a, b, r = (AutoModelForCausalLM.from_pretrained(p) for p in paths)
    router = RouterLM(r, 2, head_seed=1)
    with torch.no_grad():
        router.head.weight.normal_(0, 3.0, generator=torch.Generator().manual_seed(3))  # routes vary token to token
    return {"tok": tok, "a": a, "b": b, "router": router}


def _decode(m, *, router="default", experts=None, max_new_tokens=12, prompts=PROMPTS, **kw):
    experts = experts or [("a", m["a"]), ("b", m["b"])]
    dec = TokenRouteDecoder(experts, m["tok"], m["router"] if router == "default" else router, **kw)
    return dec, dec.generate(prompts, max_new_tokens=max_new_tokens)


def test_padded_vocab_is_sliced(models):
    assert models["b"].get_output_embeddings().weight.shape[0] == 600
    dec, _ = _decode(models, batch_size=4, max_new_tokens=1)
    assert dec.vocab_size == len(models["tok"]) == 512


@pytest.mark.parametrize("policy", ["all", "lazy"])
def test_cached_equals_no_cache_reference(models, policy):
    """Left padding (prompts of 3 to 20 tokens in one batch), both experts used, a padded-vocab expert."""
    _, ref = _decode(models, use_cache=False, batch_size=4)
    dec, got = _decode(models, policy=policy, batch_size=4)
    lengths = [r.prompt_tokens for r in ref]
    assert max(lengths) - min(lengths) >= 10
    assert {e for r in got for e in r.experts} == {0, 1}
    assert [g.tokens for g in got] == [r.tokens for r in ref]
    assert [g.experts for g in got] == [r.experts for r in ref]
    for g, r in zip(got, ref, strict=True):
        assert g.scores == pytest.approx(r.scores, abs=1e-4)
    if policy == "lazy":
        assert sum(dec.counters.catchups.values()) > 0  # the lazy path caught up at least once


def test_batched_row_equals_unbatched(models):
    _, batched = _decode(models, policy="lazy", batch_size=4)
    for prompt, row in zip(PROMPTS, batched, strict=True):
        _, (alone,) = _decode(models, policy="lazy", batch_size=1, prompts=[prompt])
        assert alone.tokens == row.tokens and alone.experts == row.experts


def test_zero_router_lm_weights_give_pure_routing(models):
    """With the router LM's output layer at zero its log-softmax is flat: fused decoding is routing only."""
    router = copy.deepcopy(models["router"])
    lm_head = router.lm.get_output_embeddings()
    with torch.no_grad():
        lm_head.weight.zero_()
    _, fused = _decode(models, router=router, combine="fused", batch_size=4)
    _, routed = _decode(models, router=router, combine="routing", batch_size=4)
    assert [f.tokens for f in fused] == [r.tokens for r in routed]
    assert not any(c for f in fused for c in f.changed)
    # and with the real router the complementary logits do change tokens
    _, real = _decode(models, combine="fused", batch_size=4)
    assert any(c for f in real for c in f.changed)


def test_identical_experts_make_the_routing_choice_irrelevant(models):
    twins = [("a", models["a"]), ("a2", copy.deepcopy(models["a"]))]
    _, one = _decode(models, experts=twins, batch_size=4)
    other = copy.deepcopy(models["router"])
    with torch.no_grad():
        other.head.weight.copy_(-other.head.weight)  # every choice flipped
    _, two = _decode(models, experts=twins, router=other, batch_size=4)
    assert [r.experts for r in one] != [r.experts for r in two]
    assert [r.tokens for r in one] == [r.tokens for r in two]


def test_lazy_runs_one_expert_forward_per_token_at_batch_1(models):
    dec, (out,) = _decode(models, policy="lazy", batch_size=1, prompts=[PROMPTS[1]], max_new_tokens=20)
    n = len(out.tokens)
    experts_calls = sum(dec.counters.calls[k] for k in ("a", "b"))
    assert dec.counters.calls["router"] == n
    assert experts_calls == n  # one expert forward per generated token, catch-ups included in it
    switches = sum(1 for x, y in zip(out.experts, out.experts[1:], strict=False) if x != y)
    assert switches > 0 and sum(dec.counters.catchups.values()) > 0
    # `all` runs every expert at every step
    dec_all, _ = _decode(models, policy="all", batch_size=1, prompts=[PROMPTS[1]], max_new_tokens=20)
    assert dec_all.counters.calls["a"] == dec_all.counters.calls["b"] == n


def test_single_model_without_router(models):
    from transformers import GenerationConfig

    dec, out = _decode(models, router=None, experts=[("a", models["a"])], batch_size=4)
    tok = models["tok"]
    assert all(e == -1 for r in out for e in r.experts)
    # the same greedy tokens as transformers' own generate, row by row
    for prompt, row in zip(PROMPTS, out, strict=True):
        ids = torch.tensor([dec.encode([prompt])[0]])
        gen = models["a"].generate(ids, generation_config=GenerationConfig(max_new_tokens=12, do_sample=False,
                                                                           eos_token_id=tok.eos_token_id,
                                                                           pad_token_id=tok.pad_token_id))
        assert gen[0, ids.shape[1]:].tolist()[: len(row.tokens)] == row.tokens


def test_eos_and_stop_strings(models):
    tok = models["tok"]
    dec = TokenRouteDecoder([("a", models["a"]), ("b", models["b"])], tok, models["router"], batch_size=4)
    free = dec.generate(PROMPTS, max_new_tokens=16)
    row = next(r for r in free if len(r.tokens) >= 6 and r.finish_reason == "length")
    # a stop string taken from the row's own text: generation ends there and the text is cut before it
    words = tok.decode(row.tokens[3:5], skip_special_tokens=True)
    stopped = dec.generate([PROMPTS[free.index(row)]], max_new_tokens=16, stop=[words])[0]
    assert stopped.finish_reason == "stop" and len(stopped.tokens) <= 5
    assert words not in stopped.text
    # an end token ends a row; the other rows of its batch go on
    eos_rows = [r for r in free if r.finish_reason == "eos"]
    for r in eos_rows:
        assert r.tokens[-1] in dec.eos_ids
    if not eos_rows:  # make one: the end token is any token the model emits
        dec.eos_ids = {row.tokens[2]}
        again = dec.generate(PROMPTS, max_new_tokens=16)
        assert again[free.index(row)].finish_reason == "eos" and len(again[free.index(row)].tokens) <= 3
        assert max(len(r.tokens) for r in again) > 3


def test_sampling_is_seeded_and_row_independent(models):
    dec = TokenRouteDecoder([("a", models["a"]), ("b", models["b"])], models["tok"], models["router"], batch_size=4)
    one = dec.generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=7)
    two = dec.generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=7)
    other = dec.generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=8)
    greedy = dec.generate(PROMPTS, max_new_tokens=10)
    assert [r.tokens for r in one] == [r.tokens for r in two]
    assert [r.tokens for r in one] != [r.tokens for r in other]
    assert [r.tokens for r in one] != [r.tokens for r in greedy]
    alone = dec.generate([PROMPTS[2]], max_new_tokens=10, temperature=1.0, seed=7)[0]
    assert alone.tokens == one[2].tokens
    ref = TokenRouteDecoder([("a", models["a"]), ("b", models["b"])], models["tok"], models["router"],
                            use_cache=False, batch_size=4).generate(PROMPTS, max_new_tokens=10, temperature=1.0, seed=7)
    assert [r.tokens for r in ref] == [r.tokens for r in one]


def test_vocabulary_mismatch_raises(models, tmp_path):
    tok = models["tok"]
    other = build_tokenizer(vocab_size=400)
    with pytest.raises(VocabularyMismatchError, match="different vocabularies"):
        shared_vocab_size({"x": tok, "y": other})
    changed = copy.deepcopy(tok)
    changed.chat_template = "{{ messages[0]['content'] }}"
    with pytest.raises(VocabularyMismatchError, match="chat templates"):
        shared_vocab_size({"x": tok, "y": changed})
    small = build_tiny_llama(tmp_path / "small", seed=5)
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(small)
    m.resize_token_embeddings(400)
    with pytest.raises(VocabularyMismatchError, match="fewer than the shared vocabulary"):
        TokenRouteDecoder([("a", models["a"]), ("small", m)], tok, models["router"])
    with pytest.raises(ValueError, match="routing head has 2 outputs"):
        TokenRouteDecoder([("a", models["a"])], tok, models["router"])


def test_expert_shares_and_change_rate(models):
    _, out = _decode(models, batch_size=4)
    for r in out:
        shares = r.expert_shares(2)
        assert sum(shares) == pytest.approx(1.0)
        assert shares[1] == pytest.approx(r.experts.count(1) / len(r.experts))
        assert 0.0 <= r.change_rate <= 1.0


def test_the_decoder_takes_the_highest_weight_expert_and_adds_the_router_logits(models):
    """The head set by hand so that expert b has the higher weight at the prompt's last position; the first token
    must be argmax(log_softmax(router LM) + log_softmax(b)), computed here from direct forwards: a token that is
    neither b's own argmax, nor the router LM's, nor what expert a would have given."""
    tok, prompt = models["tok"], PROMPTS[0]
    router = copy.deepcopy(models["router"])
    dec = TokenRouteDecoder([("a", models["a"]), ("b", models["b"])], tok, router, policy="all")
    ids = torch.tensor([dec.encode([prompt])[0]])
    V = dec.vocab_size
    with torch.no_grad():
        h = router(ids).hidden[0, -1]
        router.head.weight.zero_()
        router.head.weight[1] = h / h.dot(h) * 5.0  # scores: a 0, b 5
        assert router(ids).route_logits[0, -1].tolist() == pytest.approx([0.0, 5.0], abs=1e-3)
        r = torch.log_softmax(router(ids).logits[0, -1, :V], -1)
        la, lb = (torch.log_softmax(models[k](ids).logits[0, -1, :V], -1) for k in ("a", "b"))
    want_b, want_a = int((r + lb).argmax()), int((r + la).argmax())
    assert want_b not in (want_a, int(lb.argmax()), int(r.argmax()))  # the case decides the choice and the sum
    (out,) = dec.generate([prompt], max_new_tokens=1)
    assert out.experts == [1]
    assert out.tokens == [want_b]
    assert out.changed == [True]
    assert out.scores[0] == pytest.approx(float((r + lb)[want_b]), abs=1e-4)
