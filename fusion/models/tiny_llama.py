"""Tiny random Llama models built from a config, with a tokenizer trained locally: for tests and dry runs.

They generate fast on a CPU and need no download. Their answers are noise, which is what a test of the plumbing
needs (and what makes their performance scores low but valid).
"""

from __future__ import annotations

from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    words = ("the answer is step by step think reason question choose option code python def return "
             "number add subtract multiply divide total each apples books cost dollars first second "
             "which largest smallest true false yes no because therefore so").split()
    lines = [" ".join(words[i:] + words[:i]) for i in range(len(words))]
    lines += [f"{a} + {b} = {a + b}. {a} * {b} = {a * b}." for a in range(20) for b in range(0, 20, 3)]
    lines += ["```python\ndef f(x):\n    return x + 1\n```", "Answer: A", "Answer: B", "Answer: C", "Answer: D"]
    return lines


def build_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_llama(out: str | Path, *, seed: int = 0, hidden_size: int = 32, layers: int = 2,
                     init_std: float = 0.02, vocab_multiple: int | None = None, tie: bool = True) -> Path:
    """A random Llama in ``out``. ``init_std``: a larger spread gives peakier, more varied next-token choices
    (tests of decoding need tokens that differ); ``vocab_multiple``: pad the embedding matrix to a multiple of it
    (as some released models do); ``tie``: tie the output layer to the input embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out)
    tok = build_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=tie, initializer_range=init_std,
    )
    model = LlamaForCausalLM(cfg)
    if vocab_multiple:
        model.resize_token_embeddings(len(tok), pad_to_multiple_of=vocab_multiple, mean_resizing=False)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
