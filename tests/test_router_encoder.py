"""The encoder ("BERT") router, on a tiny random BERT with a local WordPiece tokenizer (fast on a CPU)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from fusion.levels.query import build_routing_data, load_router, make_router
from fusion.levels.query.evaluation import evaluate_router
from fusion.log.schema import coerce_log

ARITH = ["add {a} and {b}", "what is {a} plus {b}", "compute the sum of {a} and {b}", "subtract {b} from {a}",
         "multiply {a} by {b} and give the number", "how much is {a} times {b}"]
POEM = ["write a poem about the {w}", "compose a short verse on the {w}", "a sonnet about the {w} please",
        "write lyrics that rhyme about the {w}", "a haiku on the {w}", "poem in the style of a ballad about the {w}"]
WORDS = ["sea", "moon", "night", "rain", "forest", "river", "love", "winter"]


def text_log(n_per_cluster=32, seed=0, prefix=""):
    """Two clusters told apart by the query *text* only (embeddings are noise): arithmetic queries are solved by
    A, poem requests by B (10x dearer). One task, so task-best = best-single = 0.5 and only the text helps."""
    rng = np.random.default_rng(seed)
    rows, emb = [], []
    for cluster in (0, 1):
        for i in range(n_per_cluster):
            qid = f"t-{cluster}-{i:03d}"
            if cluster == 0:
                text = ARITH[i % len(ARITH)].format(a=int(rng.integers(2, 99)), b=int(rng.integers(2, 99)))
            else:
                text = POEM[i % len(POEM)].format(w=WORDS[int(rng.integers(len(WORDS)))])
            emb.append((qid, rng.normal(size=8).astype(np.float32)))
            split = "test" if i % 4 == 0 else "train"
            for cand, good, cost in (("A", 0, 0.001), ("B", 1, 0.01)):
                rows.append(dict(query_id=qid, task="t", split=split, query=prefix + text, llm=cand, mode="direct",
                                 candidate=f"{cand}:direct", backend="test", cost_usd=cost,
                                 performance=1.0 if cluster == good else 0.0))
    log = coerce_log(pd.DataFrame(rows))
    embeddings = pd.DataFrame({"query_id": [q for q, _ in emb], "embedding": [v for _, v in emb]})
    return build_routing_data(log, embeddings, 1.0, 0.0)


def _corpus() -> list[str]:
    lines = [t.format(a=a, b=b, w=w) for t in ARITH + POEM for a, b, w in zip(range(2, 99, 7), range(5, 99, 9),
                                                                                  WORDS * 3, strict=False)]
    return lines + ["the quick brown fox jumps over the lazy dog", "answer the question below"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide random BERT and a WordPiece tokenizer over the test vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("models") / "tiny-bert"
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # a fixed word-level vocabulary (sorted): the same ids in every process, unlike a trained one with ties
    pre = pre_tokenizers.BertPreTokenizer()
    words = sorted({w.lower() for line in _corpus() for w, _ in pre.pre_tokenize_str(line)})
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(special + words)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls),
                                                                                                ("[SEP]", sep)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(fast), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=fast.pad_token_id)
    BertModel(cfg).save_pretrained(out)
    fast.save_pretrained(out)
    return str(out)


FAST = dict(epochs=8, batch_size=8, lr=2e-3, head_lr=1e-2, max_length=32, patience=None, progress=False, num_threads=2)


@pytest.fixture(scope="module")
def fitted(tiny_bert):
    import torch

    torch.set_num_threads(2)
    data = text_log()
    train, test = data.split("train"), data.split("test")
    router = make_router("encoder", seed=0, model=tiny_bert, **FAST).fit(train)
    return router, train, test


def test_module_import_is_light():
    code = "import sys, fusion.levels.query.encoder; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_fit_predict_shapes_and_learns_text_clusters(fitted):
    router, train, test = fitted
    assert router.uses_texts and router.name == "encoder"
    u = router.predict_utility(test.X, test.tasks, test.texts)
    assert u.shape == (len(test), 2) and np.isfinite(u).all()
    assert router.predict_utility(None, None, test.texts[:3]).shape == (3, 2)  # texts alone are enough
    m = evaluate_router(router, train, test)
    assert m["overall"]["best-single"]["performance"] == pytest.approx(0.5)
    assert m["overall"]["router"]["performance"] == pytest.approx(1.0)  # each cluster to its right candidate
    sel = router.meta["selected"]
    assert sel["step"] > 0 and sel["val_value"] == pytest.approx(1.0)  # selected on validation, not the start
    assert router.meta["history"][0]["step"] == 0


def test_needs_texts(fitted):
    router, _, test = fitted
    with pytest.raises(ValueError, match="texts"):
        router.predict_utility(test.X, test.tasks)
    with pytest.raises(ValueError, match="texts"):
        router.route(test.X)
    with pytest.raises(ValueError, match="2 texts for 3"):
        router.predict_utility(test.X[:3], None, test.texts[:2])


def test_save_load_round_trip(fitted, tmp_path):
    router, _, test = fitted
    u = router.predict_utility(test.X, test.tasks, test.texts)
    folder = router.save(tmp_path / "r")
    assert (folder / "encoder" / "config.json").is_file() and (folder / "head.pt").is_file()
    reloaded = load_router(folder)
    assert reloaded.name == "encoder" and reloaded.candidates == ["A:direct", "B:direct"]
    np.testing.assert_array_equal(reloaded.predict_utility(test.X, test.tasks, test.texts), u)
    np.testing.assert_array_equal(reloaded.predict_data(test), u)


def test_deterministic_and_residual_start(tiny_bert):
    data = text_log(n_per_cluster=12)
    train, test = data.split("train"), data.split("test")
    kw = dict(FAST, epochs=1, eval_every=2)
    a = make_router("encoder", seed=3, model=tiny_bert, **kw).fit(train)
    b = make_router("encoder", seed=3, model=tiny_bert, **kw).fit(train)
    np.testing.assert_array_equal(a.predict_data(test), b.predict_data(test))
    assert a.meta["history"] == b.meta["history"]
    # with no training steps the router is the task prior (residual) or the mean reward (not residual)
    y = train.rewards_filled()
    for residual in (True, False):
        r = make_router("encoder", seed=0, model=tiny_bert, residual=residual, epochs=0, progress=False).fit(train)
        np.testing.assert_allclose(r.predict_data(test), np.tile(y.mean(0), (len(test), 1)), atol=1e-6)


def test_freeze_layers_and_max_train(tiny_bert):
    data = text_log(n_per_cluster=12)
    train = data.split("train")
    r = make_router("encoder", model=tiny_bert, freeze_layers=1, max_train=10, **dict(FAST, epochs=1)).fit(train)
    enc = r._net.encoder
    assert not any(p.requires_grad for p in enc.embeddings.parameters())
    assert not any(p.requires_grad for p in enc.encoder.layer[0].parameters())
    assert all(p.requires_grad for p in enc.encoder.layer[1].parameters())
    assert r.meta["n_train"] == len(train) and r.meta["selected"]["n_fit"] == 10
    # head only: every encoder layer frozen
    h = make_router("encoder", model=tiny_bert, freeze_layers=99, **dict(FAST, epochs=1)).fit(train)
    assert not any(p.requires_grad for p in h._net.encoder.parameters())


def test_frozen_cache_matches_plain_training(tiny_bert):
    """Caching the frozen bottom's output is a speed-up only: without dropout it trains the same weights."""
    data = text_log(n_per_cluster=12)
    train, test = data.split("train"), data.split("test")
    kw = dict(FAST, epochs=2, dropout=0.0, freeze_layers=1)
    cached = make_router("encoder", model=tiny_bert, **kw).fit(train)
    plain = make_router("encoder", model=tiny_bert, cache_frozen=False, **kw).fit(train)
    assert cached.meta["selected"]["step"] == plain.meta["selected"]["step"] > 0
    np.testing.assert_allclose(cached.predict_data(test), plain.predict_data(test), atol=1e-4)
    # the encoder's layers are put back after the cached passes
    assert len(cached._net.encoder.encoder.layer) == 2 and type(cached._net.encoder.embeddings).__name__ == \
        "BertEmbeddings"


def test_shared_prefix_is_stripped(tiny_bert):
    shot = "Example: add 1 and 2. Answer: 3\n" * 10  # a few-shot block every query starts with (> 200 chars)
    data = text_log(n_per_cluster=12, prefix=shot)
    r = make_router("encoder", model=tiny_bert, **dict(FAST, epochs=1)).fit(data.split("train"))
    assert r._prefixes == [shot]
    assert r._texts([shot + "write a poem"]) == ["write a poem"]


def test_bad_params_and_missing_model(tmp_path):
    with pytest.raises(ValueError, match="unknown parameter"):
        make_router("encoder", epoch=3)
    data = text_log(n_per_cluster=6)
    with pytest.raises(FileNotFoundError, match="not a local folder"):
        make_router("encoder", model=str(tmp_path / "nope"), progress=False).fit(data.split("train"))


@pytest.mark.parametrize("patience", [0, 2])
def test_encoder_stops_by_the_one_rule(tiny_bert, patience):
    """The encoder trains in the torch routers' loop: replaying its recorded validation evaluations through the one
    early-stopping rule stops exactly where its training stopped (learning rates so small that, once routing is
    right, nothing improves any more: training must stop before its 6 epochs)."""
    from fusion.levels.query.torch_fit import EarlyStopping

    data = text_log(n_per_cluster=12)
    kw = dict(FAST, epochs=6, eval_every=1, lr=1e-12, head_lr=1e-12, patience=patience)
    r = make_router("encoder", seed=0, model=tiny_bert, **kw).fit(data.split("train"))
    hist = r.meta["history"]
    replay = EarlyStopping(patience)
    stops = [replay.update(h["step"], h["epoch"], h["val_value"], -h["val_mse"], lambda: None) for h in hist]
    assert stops.index(True) == len(hist) - 1, hist  # stopped at the first evaluation the rule says to stop at
    assert hist[-1]["epoch"] < 6
    assert r.meta["selected"]["step"] == replay.best_step
