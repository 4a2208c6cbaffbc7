"""The shared-vocabulary check: token-level fusion adds log-probabilities token by token, so every model must map
the same token to the same id. Checked at load time: the token→id map, the special tokens and the chat template of
every tokenizer; each model's output layer must cover the shared vocabulary (an expert that pads its embedding
matrix, e.g. to a multiple of 64, is sliced to the shared ``V`` columns)."""

from __future__ import annotations

from collections.abc import Mapping


class VocabularyMismatchError(ValueError):
    """The models do not share one vocabulary; the message says where they differ."""


def _specials(tok) -> dict:
    return {"bos": tok.bos_token, "eos": tok.eos_token, "pad": tok.pad_token, "unk": tok.unk_token,
            "all": sorted(tok.all_special_tokens)}


def output_size(model) -> int:
    """Rows of the model's output layer (its logits' last dimension)."""
    return int(model.get_output_embeddings().weight.shape[0])


def shared_vocab_size(tokenizers: Mapping[str, object], models: Mapping[str, object] | None = None) -> int:
    """``V``, the size of the vocabulary all ``tokenizers`` share, after checking that they do and that each of
    ``models`` has at least ``V`` output logits; raises :class:`VocabularyMismatchError` naming the first
    difference."""
    if not tokenizers:
        raise VocabularyMismatchError("no tokenizers to check")
    names = list(tokenizers)
    ref_name = names[0]
    ref = tokenizers[ref_name]
    ref_vocab = ref.get_vocab()
    for name in names[1:]:
        tok = tokenizers[name]
        vocab = tok.get_vocab()
        if vocab != ref_vocab:
            only_a = sorted(set(ref_vocab) - set(vocab))[:5]
            only_b = sorted(set(vocab) - set(ref_vocab))[:5]
            moved = sorted(t for t in set(ref_vocab) & set(vocab) if ref_vocab[t] != vocab[t])[:5]
            raise VocabularyMismatchError(
                f"{name!r} and {ref_name!r} have different vocabularies ({len(vocab)} vs {len(ref_vocab)} tokens"
                + (f"; only in {ref_name!r}: {only_a}" if only_a else "")
                + (f"; only in {name!r}: {only_b}" if only_b else "")
                + (f"; other ids for {moved}" if moved else "")
                + "): token-level fusion needs experts that share one tokenizer")
        if _specials(tok) != _specials(ref):
            raise VocabularyMismatchError(f"{name!r} and {ref_name!r} have different special tokens: "
                                          f"{_specials(tok)} vs {_specials(ref)}")
        if (tok.chat_template or None) != (ref.chat_template or None):
            raise VocabularyMismatchError(f"{name!r} and {ref_name!r} have different chat templates: prompts "
                                          "would be rendered differently for the router and the experts")
    size = len(ref)
    for name, model in (models or {}).items():
        n = output_size(model)
        if n < size:
            raise VocabularyMismatchError(f"{name!r} has {n} output logits, fewer than the shared vocabulary's "
                                          f"{size} tokens")
    return size
