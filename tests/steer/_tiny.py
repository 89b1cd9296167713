"""Tiny random-init causal LMs of several architectures and a word-level tokenizer (no download)."""

from __future__ import annotations

from typing import Any

import torch
import transformers as tf
from tokenizers import Tokenizer, models, pre_tokenizers

D = 32
VOCAB = 100
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
POSITIVE = ["good", "great", "love", "happy", "nice", "wonderful", "superb", "joy", "fine", "best"]
NEGATIVE = ["bad", "awful", "hate", "sad", "poor", "terrible", "worst", "ugly", "dull", "grim"]
NEUTRAL = [
    "the",
    "a",
    "film",
    "movie",
    "was",
    "is",
    "it",
    "and",
    "of",
    "to",
    "this",
    "that",
    "story",
    "plot",
    "actor",
    "scene",
    "music",
    "day",
    "time",
    "very",
    "quite",
    "so",
    "really",
    "end",
]
WORDS = NEUTRAL + POSITIVE + NEGATIVE
FILLER = [f"w{i}" for i in range(VOCAB - len(SPECIALS) - len(WORDS))]


def tokenizer() -> Any:
    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS + FILLER)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=tk,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
    )


_COMMON = {"vocab_size": VOCAB, "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def config(arch: str) -> Any:
    if arch == "gpt2":
        return tf.GPT2Config(n_embd=D, n_layer=2, n_head=2, n_positions=64, **_COMMON)
    if arch == "gpt_neox":  # Pythia: untied embed_out
        return tf.GPTNeoXConfig(
            hidden_size=D,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            **_COMMON,
        )
    if arch == "llama":  # SmolLM2: tied
        return tf.LlamaConfig(
            hidden_size=D,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=64,
            tie_word_embeddings=True,
            **_COMMON,
        )
    if arch == "qwen2":
        return tf.Qwen2Config(
            hidden_size=D,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            **_COMMON,
        )
    if arch == "gemma3":
        return tf.Gemma3TextConfig(
            hidden_size=D,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            intermediate_size=64,
            max_position_embeddings=64,
            sliding_window=4,
            **_COMMON,
        )
    if arch == "gemma2":  # final-logit soft-capping after the head
        return tf.Gemma2Config(
            hidden_size=D,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            intermediate_size=64,
            max_position_embeddings=64,
            final_logit_softcapping=5.0,
            **_COMMON,
        )
    raise ValueError(arch)


ARCHS = ("gpt2", "gpt_neox", "llama", "qwen2", "gemma3", "gemma2")
_CACHE: dict[str, Any] = {}


def build(cfg: Any, seed: int = 0) -> Any:
    """A tiny eval-mode model whose matrices are drawn from an explicit generator (std 0.1)."""
    m = tf.AutoModelForCausalLM.from_config(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def model(arch: str, seed: int = 0) -> Any:
    """A cached tiny model of one architecture (tests must not modify it)."""
    key = f"{arch}-{seed}"
    if key not in _CACHE:
        _CACHE[key] = build(config(arch), seed)
    return _CACHE[key]
