"""Training the token-level router on tiny random Llama models: the data it learns from, the experts' statistics,
the informative mask, the SFT and CDPO losses, resume after a crash, and the saved router."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.config import TokenRouteConfig, TokenRouteDataConfig, TokenRouteTrainConfig
from fusion.core.examples import EXAMPLE_COLUMNS
from fusion.levels.token.data import build_sequences, mix_sft, preference_pairs, sequences_digest
from fusion.levels.token.level import Expert, ExpertMismatchError, check_recorded, compute_stats, init_router
from fusion.levels.token.router import load_router
from fusion.levels.token.stats import expert_stats, informative_mask, read_all
from fusion.levels.token.train import Batch, cdpo_step_loss, make_batch, sft_loss, train_router
from fusion.models.tiny_llama import build_tiny_llama


def _examples() -> pd.DataFrame:
    rows = []
    for i in range(8):
        a, b = i + 2, 3 * i + 1
        rows.append({"query_id": f"m{i}", "task": "arith_word", "domain": "math", "source": "t", "rank": 1,
                     "prompt": f"what is {a} + {b}", "completion": f"{a} + {b} = {a + b}. Answer: {a + b}"})
        rows.append({"query_id": f"c{i}", "task": "mbpp", "domain": "code", "source": "t", "rank": 1,
                     "prompt": f"write f that adds {i}", "completion": f"def f(x):\n    return x + {i}"})
    return pd.DataFrame(rows, columns=EXAMPLE_COLUMNS)


def _log() -> pd.DataFrame:
    rows = []
    for i in range(6):
        for llm, ok in (("good", 1.0), ("bad", 0.0)):
            rows.append({"query_id": f"q{i}", "task": "arith_word", "domain": "math", "split": "train",
                         "query": f"what is {i} + {i}", "prompt": f"what is {i} + {i}", "llm": llm,
                         "response": f"Answer: {2 * i if ok else 2 * i + 1}", "performance": ok, "error": None})
    rows.append({"query_id": "q9", "task": "arith_word", "domain": "math", "split": "train", "query": "only right",
                 "prompt": "only right", "llm": "good", "response": "Answer: 1", "performance": 1.0, "error": None})
    rows.append({"query_id": "t1", "task": "arith_word", "domain": "math", "split": "test", "query": "what is 0 + 0",
                 "prompt": "what is 0 + 0", "llm": "good", "response": "Answer: 0", "performance": 1.0, "error": None})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("tr")
    paths = {n: build_tiny_llama(d / n, seed=s, init_std=0.3) for n, s in (("a", 1), ("b", 2), ("init", 3))}
    experts = [Expert("a", str(paths["a"])), Expert("b", str(paths["b"]))]
    router, tok = init_router(str(paths["init"]), 2, model_cache=d / "cache", device="cpu", dtype="float32")
    pairs, _ = preference_pairs(_log())
    seqs, _ = build_sequences(tok, _examples(), pairs, max_length=64)
    stats_dir = d / "stats"
    compute_stats(seqs, experts, tok, stats_dir, model_cache=d / "cache")
    return {"dir": d, "paths": paths, "experts": experts, "router": router, "tok": tok, "seqs": seqs,
            "stats": read_all(stats_dir, ["a", "b"]), "stats_dir": stats_dir}


def test_preference_pairs_from_a_log():
    pairs, skipped = preference_pairs(_log())
    # q1..q5; q0 asks what the test query t1 asks (left out), q9 has no wrong answer, t1 is a test query
    assert len(pairs) == 5 and "q0" not in set(pairs["query_id"])
    assert skipped == {"no wrong response": 1, "also a held-out query": 1}
    assert all(p.startswith("Answer") for p in pairs["chosen"])
    q3 = pairs[pairs["query_id"] == "q3"].iloc[0]
    assert q3["chosen"] == "Answer: 6" and q3["rejected"] == "Answer: 7"
    assert preference_pairs(_log(), max_pairs=2)[0].shape[0] == 2


def test_sft_mix_caps_each_domain():
    ex = _examples()
    more = ex[ex["domain"] == "math"].assign(query_id=lambda d: d["query_id"] + "x", completion=lambda d: d["completion"] + "!")
    mixed = mix_sft([ex, more, ex], per_domain=5, seed=0)  # the repeated frame adds nothing
    assert mixed["domain"].value_counts().to_dict() == {"math": 5, "code": 5}
    assert mix_sft([ex], per_domain=None, seed=0).shape[0] == 16
    assert mix_sft([ex, more], per_domain=5, seed=0).equals(mixed)  # seeded


def test_sequences_mark_the_completion(setup):
    tok, seqs = setup["tok"], setup["seqs"]
    row = seqs[seqs["kind"] == "sft"].iloc[0]
    ids, p = list(row["input_ids"]), int(row["prompt_len"])
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids[p:-1]).strip() == _examples().sort_values(["domain", "query_id"]).iloc[0]["completion"] \
        or tok.decode(ids[p:-1]).strip() in set(_examples()["completion"])
    assert (seqs["kind"] == "chosen").sum() == (seqs["kind"] == "rejected").sum() == 5


def test_expert_statistics_match_a_direct_forward(setup):
    from transformers import AutoModelForCausalLM

    seqs = setup["seqs"].iloc[:3]
    model = AutoModelForCausalLM.from_pretrained(setup["paths"]["a"])
    stats = expert_stats(model, seqs, vocab_size=len(setup["tok"]), batch_size=2)
    for (_, row), (_, st) in zip(seqs.iterrows(), stats.iterrows(), strict=True):
        ids = torch.tensor([list(row["input_ids"])])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        p = int(row["prompt_len"])
        want = [float(lp[t - 1, ids[0, t]]) for t in range(p, ids.shape[1])]
        assert np.allclose(st["logp"], want, atol=1e-4)
        assert list(st["greedy"]) == [int(lp[t - 1].argmax()) for t in range(p, ids.shape[1])]


def test_statistics_are_reused_and_recomputed_when_an_expert_changes(setup, monkeypatch):
    loads = []
    experts = setup["experts"]
    orig = Expert.load

    def counting(self, **kw):
        loads.append(self.name)
        return orig(self, **kw)

    monkeypatch.setattr(Expert, "load", counting)
    compute_stats(setup["seqs"], experts, setup["tok"], setup["stats_dir"], model_cache=setup["dir"] / "cache")
    assert loads == []  # both up to date
    other = Expert("b", str(setup["paths"]["init"]))  # "b" now names other weights
    out = setup["dir"] / "stats2"
    import shutil

    shutil.copytree(setup["stats_dir"], out)
    compute_stats(setup["seqs"], [experts[0], other], setup["tok"], out, model_cache=setup["dir"] / "cache")
    assert loads == ["b"]


def test_informative_mask_equals_brute_force():
    greedy = np.array([[5, 1, 7, 7, 2, 9],
                       [5, 1, 8, 7, 3, 9],
                       [5, 4, 7, 7, 2, 9]])
    brute = [len({int(greedy[e, t]) for e in range(3)}) > 1 for t in range(greedy.shape[1])]
    assert informative_mask(greedy).tolist() == brute == [False, True, True, False, True, False]
    assert not informative_mask(greedy[:1]).any()  # one expert never disagrees with itself


def test_batch_aligns_statistics_with_positions(setup):
    seqs, stats = setup["seqs"], setup["stats"]
    rows = seqs[seqs["kind"] == "sft"].iloc[:2]
    b = make_batch(rows, stats, ["a", "b"])
    for i, (_, r) in enumerate(rows.iterrows()):
        p, n = int(r["prompt_len"]), len(r["input_ids"])
        assert b.comp[i].nonzero().flatten().tolist() == list(range(p - 1, n - 1))
        assert np.allclose(b.elp[i, p - 1:n - 1, 1].numpy(), stats["b"].at[r["seq_id"], "logp"])
        gr = np.stack([stats[e].at[r["seq_id"], "greedy"] for e in ("a", "b")])
        assert b.info[i, p - 1:n - 1].tolist() == informative_mask(gr).tolist()


def test_cdpo_gives_the_routing_head_no_gradient(setup):
    router = copy.deepcopy(setup["router"])
    seqs = setup["seqs"]
    rows = pd.concat([seqs[seqs["kind"] == "chosen"].iloc[:2], seqs[seqs["kind"] == "rejected"].iloc[:2]])
    batch = make_batch(rows, setup["stats"], ["a", "b"])
    ref = torch.zeros(4)
    loss, parts = cdpo_step_loss(router, batch, ref, beta=0.1, vocab_size=len(setup["tok"]))
    loss.backward()
    assert router.head.weight.grad is None or not router.head.weight.grad.any()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in router.lm.parameters())
    # the expert bias is a constant: it moves the margin, not the gradient's direction
    router.zero_grad()
    no_bias, _ = cdpo_step_loss(router, batch, ref, beta=0.1, vocab_size=len(setup["tok"]), expert_bias=False)
    assert float(no_bias) != pytest.approx(float(loss))
    # the SFT routing loss does train the head
    router.zero_grad()
    sft = make_batch(seqs[seqs["kind"] == "sft"].iloc[:4], setup["stats"], ["a", "b"])
    assert bool(sft.info.any())
    loss, parts = sft_loss(router, sft, routing_weight=1 / 3, vocab_size=len(setup["tok"]))
    loss.backward()
    assert router.head.weight.grad.abs().sum() > 0 and "routing" in parts


def test_sft_loss_counts_completion_tokens_and_routes_on_informative_positions(setup):
    """The batch's SFT loss written out position by position: cross-entropy over completion tokens only (never the
    prompt, never padding), the routing term over the positions where the experts' greedy tokens disagree."""
    router = copy.deepcopy(setup["router"])
    seqs, V = setup["seqs"], len(setup["tok"])
    rows = seqs[seqs["kind"] == "sft"].iloc[:4]
    batch = make_batch(rows, setup["stats"], ["a", "b"])
    # these random experts disagree everywhere: say they agree at every third position (make_batch's mask is
    # checked against the statistics in test_batch_aligns_statistics_with_positions)
    agree = (torch.arange(batch.info.shape[1]) % 3 == 0).expand_as(batch.info)
    batch.info = batch.info & ~agree
    with torch.no_grad():
        loss, parts = sft_loss(router, batch, routing_weight=0.5, vocab_size=V)
        out = router(batch.ids, attention_mask=batch.attn)
    ce_terms, route_terms = [], []
    for i, (_, r) in enumerate(rows.iterrows()):
        p, n = int(r["prompt_len"]), len(r["input_ids"])
        gr = np.stack([setup["stats"][e].at[r["seq_id"], "greedy"] for e in ("a", "b")])
        lp = np.stack([setup["stats"][e].at[r["seq_id"], "logp"] for e in ("a", "b")])
        for k in range(n - p):          # completion token p + k, predicted at position p + k − 1
            t = p - 1 + k
            logp = torch.log_softmax(out.logits[i, t, :V].double(), -1)
            ce_terms.append(-float(logp[r["input_ids"][t + 1]]))
            if gr[0, k] != gr[1, k] and t % 3 != 0:
                w = torch.softmax(out.route_logits[i, t].double(), -1).numpy()
                route_terms.append(-float(w @ lp[:, k]))
    assert route_terms and len(route_terms) < len(ce_terms)  # some positions agree, some do not
    assert parts["ce"] == pytest.approx(np.mean(ce_terms), rel=1e-4)
    assert parts["routing"] == pytest.approx(np.mean(route_terms), rel=1e-4)
    assert float(loss) == pytest.approx(np.mean(ce_terms) + 0.5 * np.mean(route_terms), rel=1e-4)


def test_cdpo_step_uses_the_reference_and_the_selected_experts(setup):
    """The preference step's margin written out: the router LM's summed completion log-probs against the reference
    given, plus β times the summed log-probs of the expert the head picks at each completion position."""
    router = copy.deepcopy(setup["router"])
    seqs, V = setup["seqs"], len(setup["tok"])
    rows = pd.concat([seqs[seqs["kind"] == "chosen"].iloc[:2], seqs[seqs["kind"] == "rejected"].iloc[:2]])
    batch = make_batch(rows, setup["stats"], ["a", "b"])
    ref = torch.tensor([-50.0, -3.0, -4.0, -60.0])
    with torch.no_grad():
        loss, parts = cdpo_step_loss(router, batch, ref, beta=0.1, vocab_size=V)
        out = router(batch.ids, attention_mask=batch.attn)
    theta, expert = [], []
    for i, (_, r) in enumerate(rows.iterrows()):
        p, n = int(r["prompt_len"]), len(r["input_ids"])
        lp = np.stack([setup["stats"][e].at[r["seq_id"], "logp"] for e in ("a", "b")])
        th = ex = 0.0
        for k in range(n - p):
            t = p - 1 + k
            th += float(torch.log_softmax(out.logits[i, t, :V].double(), -1)[r["input_ids"][t + 1]])
            ex += float(lp[int(out.route_logits[i, t].argmax()), k])
        theta.append(th)
        expert.append(ex)
    z = [0.1 * ((theta[j] - float(ref[j])) - (theta[j + 2] - float(ref[j + 2])) + (expert[j] - expert[j + 2]))
         for j in range(2)]
    assert parts["margin"] == pytest.approx(np.mean(z), rel=1e-4, abs=1e-4)
    want = np.mean([np.log1p(np.exp(-x)) for x in z])
    assert float(loss) == pytest.approx(want, rel=1e-4)


def _cfg(**kw) -> TokenRouteTrainConfig:
    return TokenRouteTrainConfig(**{"sft_steps": 6, "mix_steps": 4, "batch_size": 4, "learning_rate": 3e-3,
                                    "save_steps": 3, **kw})


def test_a_few_steps_lower_the_sft_loss(setup, tmp_path):
    router = copy.deepcopy(setup["router"])
    seqs = setup["seqs"]
    sft = make_batch(seqs[seqs["kind"] == "sft"], setup["stats"], ["a", "b"])
    V = len(setup["tok"])
    with torch.no_grad():
        before, _ = sft_loss(router, sft, routing_weight=1 / 3, vocab_size=V)
    out = train_router(router, seqs, setup["stats"], ["a", "b"], _cfg(), vocab_size=V, work=tmp_path, fp="x")
    with torch.no_grad():
        after, _ = sft_loss(router, sft, routing_weight=1 / 3, vocab_size=V)
    assert float(after) < float(before) - 0.1
    assert out.steps == 10 and out.pairs == 5 and out.sft_examples == 16
    kinds = [h["kind"] for h in out.history]
    assert kinds[:6] == ["sft"] * 6 and "pref" in kinds[6:] and "dpo" in out.history[6]


def test_the_router_after_sft_is_kept_for_the_routing_only_ablation(setup, tmp_path):
    """The snapshot written when the SFT phase ends holds the weights of a run that stops there (same batches)."""
    from fusion.levels.token.train import AFTER_SFT

    V, seqs, stats = len(setup["tok"]), setup["seqs"], setup["stats"]
    whole = copy.deepcopy(setup["router"])
    train_router(whole, seqs, stats, ["a", "b"], _cfg(), vocab_size=V, work=tmp_path / "whole", fp="x")
    snap = torch.load(tmp_path / "whole" / AFTER_SFT, weights_only=False)
    sft_only = copy.deepcopy(setup["router"])
    train_router(sft_only, seqs, stats, ["a", "b"], _cfg(mix_steps=0), vocab_size=V, work=tmp_path / "sft", fp="y")
    assert not (tmp_path / "sft" / AFTER_SFT).exists()  # no preference phase: the final router is the SFT one
    assert snap["fingerprint"] == "x"
    for k, v in sft_only.lm.state_dict().items():
        assert torch.allclose(snap["lm"][k], v, atol=1e-6), k
    assert torch.allclose(snap["head"]["weight"], sft_only.head.weight, atol=1e-6)
    assert not torch.allclose(snap["head"]["weight"], whole.head.weight) or any(
        not torch.allclose(snap["lm"][k], v) for k, v in whole.lm.state_dict().items())  # the mix phase moved it


def test_a_killed_run_resumes_to_the_same_weights(setup, tmp_path):
    V, seqs, stats = len(setup["tok"]), setup["seqs"], setup["stats"]
    whole = copy.deepcopy(setup["router"])
    train_router(whole, seqs, stats, ["a", "b"], _cfg(), vocab_size=V, work=tmp_path / "whole", fp="x")

    class Killed(Exception):
        pass

    def kill_at_8(step, _entry):
        if step == 8:
            raise Killed

    first = copy.deepcopy(setup["router"])
    with pytest.raises(Killed):
        train_router(first, seqs, stats, ["a", "b"], _cfg(), vocab_size=V, work=tmp_path / "cut", fp="x",
                     on_step=kill_at_8)
    resumed = copy.deepcopy(setup["router"])
    seen = []
    out = train_router(resumed, seqs, stats, ["a", "b"], _cfg(), vocab_size=V, work=tmp_path / "cut", fp="x",
                       on_step=lambda s, e: seen.append(s))
    assert seen == [7, 8, 9, 10]  # from the checkpoint at step 6
    assert len(out.history) == 10
    for p, q in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    # other inputs: the checkpoint is not used
    seen.clear()
    train_router(copy.deepcopy(setup["router"]), seqs, stats, ["a", "b"], _cfg(), vocab_size=V,
                 work=tmp_path / "cut", fp="y", on_step=lambda s, e: seen.append(s))
    assert seen[0] == 1


def test_save_load_round_trip_and_recorded_experts(setup, tmp_path):
    router, tok = setup["router"], setup["tok"]
    records = [e.record() for e in setup["experts"]]
    router.save(tmp_path / "r", tok, records)
    back, tok2, meta = load_router(tmp_path / "r")
    ids = torch.tensor([tok("the answer is 3")["input_ids"]])
    with torch.no_grad():
        a, b = router(ids), back(ids)
    assert torch.allclose(a.logits, b.logits, atol=1e-6) and torch.allclose(a.route_logits, b.route_logits, atol=1e-6)
    assert [e["name"] for e in meta["experts"]] == ["a", "b"] and tok2.get_vocab() == tok.get_vocab()
    # a plain HF checkpoint too
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "r")
    assert torch.allclose(plain(ids).logits, a.logits, atol=1e-6)
    check_recorded(records, setup["experts"])
    with pytest.raises(ExpertMismatchError, match="not the weights"):
        check_recorded(records, [setup["experts"][0], Expert("b", str(setup["paths"]["init"]))])
    with pytest.raises(ExpertMismatchError, match="in this order"):
        check_recorded(records, list(reversed(setup["experts"])))


def test_config_defaults_follow_the_paper():
    cfg = TokenRouteConfig()
    assert cfg.train.routing_weight == pytest.approx(1 / 3) and cfg.train.beta == 0.1
    assert cfg.train.learning_rate == 1e-5
    assert TokenRouteDataConfig().max_pairs == 64
    assert isinstance(Batch, type)
    assert len(sequences_digest(pd.DataFrame({"seq_id": ["a"], "input_ids": [[1, 2]], "prompt_len": [1]}))) == 16


def test_lora_on_the_router_lm_trains_adapters_and_the_head_then_merges(setup, tmp_path):
    from fusion.config import LoraConfigSpec
    from fusion.levels.token.level import merged, with_lora

    router = copy.deepcopy(setup["router"])
    base_w = {k: v.clone() for k, v in router.lm.state_dict().items()}
    head_w = router.head.weight.detach().clone()
    with_lora(router, LoraConfigSpec(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]))
    trainable = {n for n, p in router.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n == "head.weight" for n in trainable)
    train_router(router, setup["seqs"], setup["stats"], ["a", "b"], _cfg(sft_steps=3, mix_steps=2), vocab_size=len(
        setup["tok"]), work=tmp_path, fp="lora")
    assert not torch.equal(router.head.weight, head_w)
    merged(router)
    assert not hasattr(router.lm, "peft_config")  # a plain model again: it saves as a normal checkpoint
    state = router.lm.state_dict()
    changed = [k for k in base_w if not torch.equal(base_w[k], state[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)  # only what LoRA adapted moved


def test_sequence_selection_takes_the_best_grade_and_breaks_ties_by_likelihood():
    from fusion.levels.token.level import select_answers

    grades = np.array([[0.3, 1.0, 0.6], [0.8, 0.8, 0.0], [np.nan, np.nan, np.nan], [np.nan, 0.0, np.nan]])
    likelihood = np.array([[-0.1, -2.0, -0.5], [-3.0, -1.0, -0.1], [-2.0, -0.2, -1.0], [-0.1, -5.0, -0.2]])
    assert select_answers(grades, likelihood).tolist() == [1, 1, 1, 1]
    assert select_answers(None, likelihood).tolist() == [0, 2, 1, 0]

