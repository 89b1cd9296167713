"""The shared vocabulary of two tokenizers: tokens both spell identically, as bytes.

Each tokenizer's whitespace convention is mapped to bytes (byte-level BPE ``Ġ``/``Ċ`` through
GPT-2's byte alphabet; SentencePiece ``▁`` as a space and ``<0xNN>`` byte tokens; other
vocabularies as UTF-8); special tokens are left out. Used by :mod:`steer.crossmodel.transfer`
to fit the map between the models' output embeddings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from typing import Any

import pandas as pd

from steer._types import MarkerStyle
from steer.errors import SteerInputError

__all__ = ["MarkerStyle", "canonical_vocabulary", "marker_style", "shared_vocabulary"]


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` (printable stand-ins for the 256 bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_HEX_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _vocab(tokenizer: Any) -> dict[str, int]:
    getter = getattr(tokenizer, "get_vocab", None)
    if not callable(getter):
        raise SteerInputError(
            f"{type(tokenizer).__name__} has no get_vocab(); pass a transformers tokenizer."
        )
    return dict(getter())


def marker_style(tokenizer: Any) -> MarkerStyle:
    """Guess how a tokenizer marks word-initial spaces.

    ``"byte_level"`` when at least 5 % of the vocabulary starts with ``Ġ`` (GPT-2, Llama-3,
    SmolLM, Qwen), ``"metaspace"`` when at least 5 % starts with ``▁`` (SentencePiece: Llama-2,
    Gemma, T5), else ``"raw"``.
    """
    toks = list(_vocab(tokenizer))
    n = max(len(toks), 1)
    if sum(t.startswith("Ġ") for t in toks) >= 0.05 * n:
        return "byte_level"
    if sum(t.startswith("▁") for t in toks) >= 0.05 * n:
        return "metaspace"
    return "raw"


def _canonical(token: str, style: MarkerStyle) -> bytes:
    if style == "byte_level":
        dec = _byte_decoder()
        if all(c in dec for c in token):
            return bytes(dec[c] for c in token)
        return token.encode("utf-8")
    if style == "metaspace":
        m = _HEX_BYTE.match(token)
        if m:
            return bytes([int(m.group(1), 16)])
        return token.replace("▁", " ").encode("utf-8")
    return token.encode("utf-8")


def canonical_vocabulary(tokenizer: Any, style: MarkerStyle | None = None) -> dict[bytes, int]:
    """Map each non-special token to the bytes it stands for.

    Parameters
    ----------
    tokenizer
        A transformers tokenizer.
    style
        Marker convention (default :func:`marker_style`).

    Returns
    -------
    dict
        ``{bytes: token id}``; when two tokens map to the same bytes, the lower id is kept.
    """
    style = style or marker_style(tokenizer)
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    out: dict[bytes, int] = {}
    for tok, i in sorted(_vocab(tokenizer).items(), key=lambda kv: kv[1]):
        if tok in special:
            continue
        key = _canonical(tok, style)
        if key and key not in out:
            out[key] = int(i)
    return out


def shared_vocabulary(
    source_tokenizer: Any,
    target_tokenizer: Any,
    *,
    restrict_to: Collection[bytes] | None = None,
    source_size: int | None = None,
    target_size: int | None = None,
) -> pd.DataFrame:
    """Tokens that both vocabularies spell identically (after the marker mapping).

    Parameters
    ----------
    source_tokenizer, target_tokenizer
        The two tokenizers.
    restrict_to
        Optional set of canonical byte strings to keep (for example the tokens a small target
        model actually saw in training).
    source_size, target_size
        Rows of each output-embedding matrix; ids at or beyond them are dropped (tokenizers
        may list more tokens than the head has, or fewer).

    Returns
    -------
    pandas.DataFrame
        ``key`` (bytes), ``text`` (readable), ``source_id``, ``target_id``, ordered by source id.

    Raises
    ------
    SteerInputError
        If no token is shared.
    """
    src_style, tgt_style = marker_style(source_tokenizer), marker_style(target_tokenizer)
    src = canonical_vocabulary(source_tokenizer, src_style)
    tgt = canonical_vocabulary(target_tokenizer, tgt_style)
    keys = set(src) & set(tgt)
    if restrict_to is not None:
        keys &= set(restrict_to)
    rows = [
        (k, k.decode("utf-8", "backslashreplace"), src[k], tgt[k])
        for k in keys
        if (source_size is None or src[k] < source_size)
        and (target_size is None or tgt[k] < target_size)
    ]
    if not rows:
        raise SteerInputError(
            f"the two tokenizers share no token (source: {len(src)} tokens, {src_style}; target: "
            f"{len(tgt)} tokens, {tgt_style}"
            + ("; after restrict_to" if restrict_to is not None else "")
            + "); a linear map needs at least as many shared tokens as the target's hidden size."
        )
    frame = pd.DataFrame(rows, columns=["key", "text", "source_id", "target_id"])
    frame = frame.sort_values("source_id", kind="stable").reset_index(drop=True)
    frame.attrs.update(source_style=src_style, target_style=tgt_style)
    return frame


def _ends(tokenizer: Any, text: str, max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of ``text`` (at most ``max_tokens``) and the character each token ends at.

    Tokens that cover no character (special tokens) end at ``-1``.
    """
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = list(enc["input_ids"])[:max_tokens]
    ends = [int(e) if e > s else -1 for s, e in enc["offset_mapping"][:max_tokens]]
    return ids, ends


def _aligned_pairs(ends: list[int], other_ends: list[int]) -> list[tuple[int, int]]:
    """Positions ``(i, j)`` at which two tokenisations of one text end at the same character."""
    at = {e: j for j, e in enumerate(other_ends) if e >= 0}
    return [(i, at[e]) for i, e in enumerate(ends) if e >= 0 and e in at]
