"""Generation with steer values, using the model's KV cache.

A small decoding loop (greedy or temperature / top-p sampling from an explicit
``torch.Generator``) over left-padded batches, so that each row can carry its own steer values
(an epsilon sweep runs as one batch). Continuations are sliced on tokens, never on decoded
strings (pitfall 3).
"""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn

from steer.core.compat import check_base_model, check_sequences
from steer.core.hooks import steering
from steer.core.transform import SteerTransform, ValuesLike, as_values
from steer.errors import SteerInputError
from steer.train import pad_batch, pad_id

__all__ = ["DecodeOutput", "Generation", "decode", "generate", "generations_frame"]


@dataclass(frozen=True, eq=False)
class DecodeOutput:
    """New tokens of a batch.

    Attributes
    ----------
    tokens
        ``[B, n]`` new token ids (``n <= max_new_tokens``); positions after a row's EOS hold the
        pad id.
    lengths
        ``[B]`` number of new tokens of each row up to and including its EOS.
    seconds
        Wall-clock time of the prefill and all decoding steps.
    forward_calls
        Model calls (1 prefill + ``n - 1`` steps with the KV cache).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    seconds: float
    forward_calls: int


@dataclass(frozen=True)
class Generation:
    """One continuation of a prompt.

    Attributes
    ----------
    prompt
        The prompt text.
    values
        The steer values used (``None`` for the unsteered model).
    text
        The decoded continuation (special tokens skipped).
    token_ids
        The continuation's tokens (up to and including EOS).
    sample
        Index of the sample for this prompt and values.
    """

    prompt: str
    values: tuple[float, ...] | None
    text: str
    token_ids: tuple[int, ...]
    sample: int = 0


def _eos_ids(model: nn.Module, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        v = getattr(src, "eos_token_id", None)
        if isinstance(v, int):
            ids.add(v)
        elif isinstance(v, list | tuple):
            ids.update(int(x) for x in v)
    return sorted(ids)


def _accepts(model: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _cache_kwarg(model: nn.Module) -> str:
    """Name under which ``model.forward`` takes the KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and goes away
    in 5.40); 5.0 to 5.23, and remote-code models written for them, only know
    ``past_key_values``. The model's own signature decides, so both work without a warning.
    """
    return "cache" if _accepts(model, "cache") else "past_key_values"


def _returned_cache(out: Any) -> Any:
    """Return the KV cache a forward pass gave back (``out.cache``; ``past_key_values`` before)."""
    if hasattr(out, "cache"):
        return out.cache
    return getattr(out, "past_key_values", None)


def _choose(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_p: float,
    generator: torch.Generator | Sequence[torch.Generator] | None,
) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        sp, si = probs.sort(dim=-1, descending=True)
        drop = sp.cumsum(-1) - sp > top_p  # keep the smallest prefix whose mass reaches top_p
        sp = sp.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, si, sp)
    dev = probs.device
    if isinstance(generator, Sequence):  # one stream per row: draws do not depend on the batch
        rows = [
            torch.multinomial(probs[i].to(g.device), 1, generator=g).to(dev)
            for i, g in enumerate(generator)
        ]
        return torch.cat(rows)
    if generator is not None and generator.device != dev:
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(-1).to(dev)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _check_lengths(max_new_tokens: int, min_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise SteerInputError(f"max_new_tokens must be >= 1; got {max_new_tokens}.")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise SteerInputError(
            f"min_new_tokens must lie in 0..max_new_tokens ({max_new_tokens}); got "
            f"{min_new_tokens}. Raise max_new_tokens or lower min_new_tokens."
        )


@torch.no_grad()
def decode(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int = 20,
    min_new_tokens: int = 0,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    eos_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
) -> DecodeOutput:
    """Decode new tokens for a left-padded batch with the KV cache.

    Parameters
    ----------
    model
        A transformers causal LM (any hooks attached to it, such as a steer, apply).
    input_ids, attention_mask
        ``[B, T]`` left-padded prompts.
    max_new_tokens
        Upper bound on new tokens.
    min_new_tokens
        EOS is forbidden before this many new tokens (``min = max`` forces exactly
        ``max_new_tokens``, the paper's protocol).
    do_sample
        Sample (``True``) or take the argmax.
    temperature, top_p
        Sampling temperature and nucleus mass.
    generator
        Source of randomness for sampling: one generator for the batch, or one per row (then
        each row's draws depend only on its own generator, not on the batch it is in).
    eos_token_ids
        Tokens that end a row.
    pad_token_id
        Filler after a row's EOS.

    Returns
    -------
    DecodeOutput
        The new tokens, their lengths and timings.
    """
    _check_lengths(max_new_tokens, min_new_tokens)
    if temperature <= 0 or not 0 < top_p <= 1:
        raise SteerInputError(
            f"need temperature > 0 and 0 < top_p <= 1; got {temperature}, {top_p}."
        )
    dev = input_ids.device
    b = input_ids.shape[0]
    if isinstance(generator, Sequence) and len(generator) != b:
        raise SteerInputError(f"got {len(generator)} generators for a batch of {b} rows.")
    eos = torch.tensor(list(eos_token_ids), dtype=torch.long, device=dev)
    mask = attention_mask.clone()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    t0 = time.perf_counter()
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=pos, use_cache=True, **extra)
    calls = 1
    cache_kwarg = _cache_kwarg(model)
    cache = _returned_cache(out)
    logits = out.logits[:, -1].float()
    next_pos = pos[:, -1:] + 1
    finished = torch.zeros(b, dtype=torch.bool, device=dev)
    lengths = torch.zeros(b, dtype=torch.long, device=dev)
    new: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        if step < min_new_tokens and eos.numel():
            logits[:, eos] = float("-inf")
        tok = _choose(logits, do_sample, temperature, top_p, generator)
        tok = torch.where(finished, torch.full_like(tok, pad_token_id), tok)
        lengths += (~finished).long()
        if eos.numel():
            finished |= torch.isin(tok, eos)
        new.append(tok)
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=dev)], dim=1)
        out = model(
            input_ids=tok[:, None],
            attention_mask=mask,
            position_ids=next_pos,
            use_cache=True,
            **{cache_kwarg: cache},
        )
        calls += 1
        cache = _returned_cache(out)
        logits = out.logits[:, -1].float()
        next_pos = next_pos + 1
    seconds = time.perf_counter() - t0
    return DecodeOutput(torch.stack(new, dim=1), lengths, seconds, calls)


def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    transform: SteerTransform | None = None,
    values: ValuesLike | None = None,
    max_new_tokens: int = 20,
    min_new_tokens: int = 0,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
    batch_size: int = 32,
    sample_seeds: Sequence[Sequence[int]] | None = None,
    allow_other_model: bool = False,
) -> list[Generation]:
    """Generate continuations of prompts, optionally steered, with the KV cache.

    Parameters
    ----------
    model
        A transformers causal LM (not modified; a steer is attached only during the call).
    tokenizer
        Its tokenizer.
    prompts
        Prompt texts.
    transform
        The steer (``None``: the unsteered model).
    values
        ``k`` values for every prompt, or ``[len(prompts), k]`` (one row per prompt, so an
        epsilon sweep is one call). Required with ``transform``.
    max_new_tokens, min_new_tokens
        Length bounds of the continuation (``min = max``: exactly that many tokens).
    do_sample, temperature, top_p
        Greedy decoding by default.
    num_samples
        Continuations per prompt (sampling only makes them differ).
    seed
        Seed of the sampling generator (one stream for the whole call).
    batch_size
        Rows per forward pass.
    sample_seeds
        ``[len(prompts)][num_samples]`` seeds, one per continuation (sampling only; replaces
        ``seed``): each continuation then draws from its own generator, so it does not depend
        on the batch size or on the other prompts (see
        :func:`steer.evaluation.settings.sample_seeds`).
    allow_other_model
        Steer even if the steer's recorded base model or tokenizer is not ``model``/``tokenizer``
        (see :func:`steer.core.compat.check_base_model`). Default False.

    Returns
    -------
    list of Generation
        In prompt order, ``num_samples`` per prompt.

    Raises
    ------
    SteerInputError
        If an option is out of range (``min_new_tokens > max_new_tokens``, ``num_samples < 1``,
        ``batch_size < 1``), a prompt is empty, has token ids outside the model's vocabulary or
        does not fit the context with ``max_new_tokens``.
    BaseModelMismatchError
        If the steer records another base model or tokenizer and ``allow_other_model`` is False.

    Examples
    --------
    >>> gens = generate(model, tok, ["The movie was"], transform=t,
    ...                 values=t.values(5.0), max_new_tokens=20)  # doctest: +SKIP
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise SteerInputError("generate needs at least one prompt.")
    _check_lengths(max_new_tokens, min_new_tokens)
    for name, n in (("num_samples", num_samples), ("batch_size", batch_size)):
        if int(n) < 1:
            raise SteerInputError(f"{name} must be >= 1; got {n}.")
    rows_values: torch.Tensor | None = None
    if transform is not None:
        check_base_model(model, transform, tokenizer, allow_other_model=allow_other_model)
        if values is None:
            raise SteerInputError("pass values with transform (e.g. transform.values(3.0)).")
        v = as_values(values, transform.num_steers)
        if v.dim() == 2 and v.shape[0] != len(prompts):
            raise SteerInputError(
                f"values has {v.shape[0]} rows for {len(prompts)} prompts; pass one row per "
                "prompt or a single row of k values."
            )
        rows_values = v.expand(len(prompts), -1) if v.dim() == 1 else v
    elif values is not None:
        raise SteerInputError("values were given without a transform.")
    enc = tokenizer(prompts)["input_ids"]
    if any(len(e) == 0 for e in enc):
        raise SteerInputError("a prompt tokenised to no tokens; prompts must be non-empty.")
    check_sequences(
        model, enc, what="prompt", new_tokens=max_new_tokens,
        fix="shorten the prompt or lower max_new_tokens",
    )  # fmt: skip
    rows = [(p, s) for p in range(len(prompts)) for s in range(num_samples)]
    order = sorted(range(len(rows)), key=lambda i: len(enc[rows[i][0]]))
    pad = pad_id(tokenizer)
    eos = _eos_ids(model, tokenizer)
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed)) if do_sample else None
    row_seeds: list[int] | None = None
    if sample_seeds is not None:
        grid = [list(s) for s in sample_seeds]
        if len(grid) != len(prompts) or any(len(s) != num_samples for s in grid):
            raise SteerInputError(
                f"sample_seeds must have {len(prompts)} rows of {num_samples} seeds "
                f"(prompts x num_samples); got {[len(s) for s in grid]}."
            )
        row_seeds = [int(grid[p][s]) for p, s in rows]
    results: list[Generation | None] = [None] * len(rows)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = pad_batch([enc[rows[i][0]] for i in chunk], pad, side="left")
        ctx: Any = contextlib.nullcontext()
        if transform is not None and rows_values is not None:
            chunk_values = rows_values[[rows[i][0] for i in chunk]]
            ctx = steering(model, transform, chunk_values, allow_other_model=allow_other_model)
        chunk_gen: torch.Generator | list[torch.Generator] | None = gen
        if do_sample and row_seeds is not None:
            chunk_gen = [torch.Generator().manual_seed(row_seeds[i]) for i in chunk]
        with ctx:
            out = decode(
                model,
                ids.to(dev),
                mask.to(dev),
                max_new_tokens=max_new_tokens,
                min_new_tokens=min_new_tokens,
                do_sample=do_sample,
                temperature=temperature,
                top_p=top_p,
                generator=chunk_gen,
                eos_token_ids=eos,
                pad_token_id=pad,
            )
        for j, i in enumerate(chunk):
            p, s = rows[i]
            toks = out.tokens[j, : int(out.lengths[j])].tolist()
            vals = None if rows_values is None else tuple(rows_values[p].tolist())
            text = tokenizer.decode(toks, skip_special_tokens=True)
            results[i] = Generation(prompts[p], vals, text, tuple(toks), s)
    return [g for g in results if g is not None]


def generations_frame(generations: Sequence[Generation]) -> pd.DataFrame:
    """Return generations as a tidy frame: ``prompt, sample, values, continuation, n_tokens``."""
    return pd.DataFrame(
        {
            "prompt": [g.prompt for g in generations],
            "sample": [g.sample for g in generations],
            "values": [None if g.values is None else list(g.values) for g in generations],
            "continuation": [g.text for g in generations],
            "n_tokens": [len(g.token_ids) for g in generations],
        }
    )
