"""A steer as a detector: score a text by how much more likely the steer makes it.

For a text ``x_1..x_T`` and a steer with slot values ``s`` (e.g. the toxicity slot at ``+1``),

    shift(x) = sum_{t >= 2} [ log P_{s}(x_t | x_<t) - log P_{s0}(x_t | x_<t) ]

where ``s0`` is the baseline (``"zero"``: labelled slots at 0, dummy slots at 1, i.e. the
steered model's neutral point; ``"negated"``: labelled slots at ``-s``). A toxicity steer
trained with ``+1`` = toxic assigns toxic texts a positive shift; ``reduce="mean"`` divides by
the number of scored tokens (length-neutral). Because the steer acts only on the hidden state
entering the LM head, the frozen model runs **once** per text and the head twice
(:func:`steer.core.hooks.head_inputs`).

:func:`steer_detector` wraps this as a :class:`~steer.evaluation.scorers.Scorer` (threshold 0),
so it goes on the scorer card (:func:`steer.evaluation.scorer_card.scorer_card`) beside the
classifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from steer.core.hooks import head_inputs
from steer.core.transform import SteerTransform, apply_steer, as_values
from steer.errors import SteerInputError
from steer.evaluation.scorers import Scorer
from steer.train import _Head, pad_batch, pad_id

__all__ = ["logprob_shift", "steer_detector"]

Reduce = Literal["sum", "mean"]
DetectorBaseline = Literal["zero", "negated"]


def _baseline(transform: SteerTransform, values: torch.Tensor, baseline: str) -> torch.Tensor:
    out = values.clone()
    for i in transform.labelled_slots:
        out[i] = 0.0 if baseline == "zero" else -values[i]
    return out


@torch.no_grad()
def logprob_shift(
    model: nn.Module,
    tokenizer: Any,
    transform: SteerTransform,
    texts: Sequence[str],
    *,
    value: float = 1.0,
    baseline: DetectorBaseline = "zero",
    reduce: Reduce = "sum",
    max_length: int = 128,
    batch_size: int = 16,
) -> np.ndarray:
    """Return the summed (or mean) per-token log-probability shift of each text under the steer.

    Parameters
    ----------
    model, tokenizer
        The steer's base model (frozen; never modified) and its tokenizer.
    transform
        The steer.
    texts
        Texts to score (each needs >= 2 tokens after truncation; shorter ones score 0).
    value
        Strength ``s`` of the labelled slots (dummy slots 1).
    baseline
        ``"zero"`` (labelled slots at 0) or ``"negated"`` (at ``-value``).
    reduce
        ``"sum"`` over tokens or ``"mean"`` per token.
    max_length
        Tokens kept per text.
    batch_size
        Texts per forward pass.

    Returns
    -------
    numpy.ndarray
        One float64 per text (positive: the steer's direction makes the text more likely).
    """
    if isinstance(texts, str):
        raise SteerInputError("pass a list of texts, not one string.")
    if reduce not in ("sum", "mean"):
        raise SteerInputError(f"reduce must be 'sum' or 'mean'; got {reduce!r}.")
    if baseline not in ("zero", "negated"):
        raise SteerInputError(f"baseline must be 'zero' or 'negated'; got {baseline!r}.")
    if max_length < 2 or batch_size < 1:
        raise SteerInputError(f"need max_length >= 2 and batch_size >= 1; got {max_length}, "
                              f"{batch_size}.")  # fmt: skip
    texts = [str(t) for t in texts]
    dev = next(model.parameters()).device
    head = _Head(model)
    v = as_values(transform.values(value), transform.num_steers)
    rows = torch.stack([v, _baseline(transform, v, baseline)]).to(dev)
    p1 = transform.p1.to(device=dev, dtype=head.weight.dtype)
    p2 = transform.p2.to(device=dev, dtype=head.weight.dtype)
    enc = [ids[:max_length] for ids in tokenizer(texts)["input_ids"]]
    pad = pad_id(tokenizer)
    out = np.zeros(len(texts), dtype=np.float64)
    order = sorted(range(len(texts)), key=lambda i: len(enc[i]))
    for start in range(0, len(order), batch_size):
        chunk = [i for i in order[start : start + batch_size] if len(enc[i]) >= 2]
        if not chunk:
            continue
        ids, mask = pad_batch([enc[i] for i in chunk], pad)
        ids, mask = ids.to(dev), mask.to(dev)
        h = head_inputs(model, ids, mask)[:, :-1]  # [B, T-1, d]
        target = ids[:, 1:]
        keep = mask[:, 1:].to(torch.float64)
        lp = []
        for r in rows:
            z = head(apply_steer(h, p1, p2, transform.epsilon, r))
            logp = torch.log_softmax(z.float(), dim=-1)
            lp.append(logp.gather(-1, target[..., None]).squeeze(-1).double())
        diff = ((lp[0] - lp[1]) * keep).sum(-1)
        if reduce == "mean":
            diff = diff / keep.sum(-1)
        out[chunk] = diff.cpu().numpy()
    return out


def steer_detector(
    model: nn.Module,
    tokenizer: Any,
    transform: SteerTransform,
    *,
    value: float = 1.0,
    baseline: DetectorBaseline = "zero",
    reduce: Reduce = "mean",
    max_length: int = 128,
    batch_size: int = 16,
    name: str = "steer_detector",
) -> Scorer:
    """Wrap :func:`logprob_shift` as a scorer (``kind="offensive"``, hit when the shift > 0).

    Parameters
    ----------
    model, tokenizer, transform, value, baseline, reduce, max_length, batch_size
        As :func:`logprob_shift`.
    name
        The scorer's name.

    Returns
    -------
    Scorer
        Higher = more in the steer's direction (for a toxicity steer: more toxic).
    """

    def fn(texts: Sequence[str]) -> np.ndarray:
        return logprob_shift(
            model,
            tokenizer,
            transform,
            texts,
            value=value,
            baseline=baseline,
            reduce=reduce,
            max_length=max_length,
            batch_size=batch_size,
        )

    return Scorer(
        name, "offensive", fn, 0.0, False, f"steer {transform.base_model} (eps_0 "
        f"{transform.epsilon:g}, value {value:g})",
        f"{reduce} log-prob shift of the text under the steer at s = {value:g} against "
        f"{baseline} (hit: > 0).",
    )  # fmt: skip
