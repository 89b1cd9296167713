"""A byte-level BPE tokenizer for the lab, trained with ``tokenizers`` (GPT-NeoX style).

Byte-level pre-tokenisation (every string is encodable, no unknown token), BPE merges learnt
from the corpus, one special token ``<|endoftext|>`` (id 0, as in GPT-NeoX-20B). Training is
deterministic for a given corpus order and vocabulary size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "EOS_TOKEN",
    "as_transformers",
    "encode_documents",
    "load_tokenizer",
    "save_tokenizer",
    "train_bpe",
]

EOS_TOKEN = "<|endoftext|>"


def train_bpe(
    texts: Iterable[str],
    vocab_size: int = 2048,
    *,
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a byte-level BPE tokenizer.

    Parameters
    ----------
    texts
        Training documents.
    vocab_size
        Target vocabulary size, including the 256 byte symbols and ``<|endoftext|>``.
    min_frequency
        Minimum pair frequency for a merge.

    Returns
    -------
    tokenizers.Tokenizer

    Examples
    --------
    >>> tok = train_bpe(["the cat sat on the mat"] * 20, vocab_size=300)
    >>> tok.decode(tok.encode("the cat").ids)
    'the cat'
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 258:
        raise ValueError(f"vocab_size must be >= 258 (256 bytes + specials); got {vocab_size}.")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def encode_documents(
    tokenizer: Tokenizer, documents: Sequence[str], *, dtype: npt.DTypeLike = np.int64
) -> list[npt.NDArray[Any]]:
    """Encode documents to token-id arrays (no special tokens added).

    Parameters
    ----------
    tokenizer
        A ``tokenizers.Tokenizer``.
    documents
        Texts.
    dtype
        Output dtype.

    Returns
    -------
    list of numpy.ndarray
    """
    encs = tokenizer.encode_batch(list(documents), add_special_tokens=False)
    return [np.asarray(e.ids, dtype=dtype) for e in encs]


def save_tokenizer(tokenizer: Tokenizer, directory: str | os.PathLike[str]) -> Path:
    """Save as a transformers tokenizer folder (``tokenizer.json`` + config), atomically.

    The folder loads with ``transformers.AutoTokenizer.from_pretrained(directory)``.

    Returns
    -------
    pathlib.Path
        ``directory``.
    """
    import shutil
    import tempfile

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    fast = as_transformers(tokenizer)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fast.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def as_transformers(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers.Tokenizer`` as a ``PreTrainedTokenizerFast`` (EOS = BOS)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.__class__.from_str(tokenizer.to_str()),
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
    )


def load_tokenizer(directory: str | os.PathLike[str]) -> Tokenizer:
    """Load the ``tokenizer.json`` written by :func:`save_tokenizer`."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(directory) / "tokenizer.json"))
