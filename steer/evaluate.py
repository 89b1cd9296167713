"""Offline metrics for steered generations: VADER sentiment, distinct-n, conditional perplexity.

Deviation from the paper: sentiment is scored with VADER's lexicon (``vaderSentiment``, offline)
instead of the HF DistilBERT-SST2 pipeline, and fluency with the unsteered model itself instead
of GPT2-XL. Perplexity is computed on the generated token ids (prompt + continuation as one
sequence), so no re-tokenisation merges tokens at the boundary (pitfall 4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from steer.errors import SteerInputError
from steer.generate import Generation
from steer.hooks import head_inputs
from steer.train import _Head, pad_batch, pad_id

__all__ = ["conditional_perplexity", "distinct_n", "sweep_table", "vader_compound"]


def vader_compound(texts: Sequence[str]) -> np.ndarray:
    """VADER compound sentiment in [-1, 1] of each text.

    Parameters
    ----------
    texts
        Texts to score.

    Returns
    -------
    numpy.ndarray
        One compound score per text (0 for an empty text).
    """
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as exc:  # pragma: no cover - dependency declared in the project
        raise ImportError("VADER scoring needs `pip install vaderSentiment==3.3.2`.") from exc
    analyzer = SentimentIntensityAnalyzer()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)


def distinct_n(text: str, n: int) -> float:
    """Share of distinct word n-grams among the n-grams of one text (NaN if it has none).

    Parameters
    ----------
    text
        A continuation (split on whitespace).
    n
        n-gram order.

    Returns
    -------
    float
        ``#unique n-grams / #n-grams`` (the paper's dist-n divides by #words for every n,
        pitfall 4; we divide by the number of n-grams).
    """
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


@torch.no_grad()
def conditional_perplexity(
    model: nn.Module, tokenizer: Any, generations: Sequence[Generation], batch_size: int = 16
) -> np.ndarray:
    """Perplexity of each continuation given its prompt under ``model`` (usually unsteered).

    Parameters
    ----------
    model
        The scoring LM (hooks attached to it apply; score outside any ``steering`` block).
    tokenizer
        Its tokenizer (prompts are tokenised as in :func:`steer.generate`).
    generations
        Output of :func:`steer.generate`.
    batch_size
        Sequences per forward pass.

    Returns
    -------
    numpy.ndarray
        ``exp(mean NLL of the continuation tokens)``; NaN for an empty continuation.
    """
    if not generations:
        raise SteerInputError("no generations to score.")
    prompts = sorted({g.prompt for g in generations})
    enc = dict(zip(prompts, tokenizer(prompts)["input_ids"], strict=True))
    pad = pad_id(tokenizer)
    dev = next(model.parameters()).device
    head = _Head(model)
    out = np.full(len(generations), np.nan)
    for start in range(0, len(generations), batch_size):
        chunk = list(range(start, min(start + batch_size, len(generations))))
        seqs = [list(enc[generations[i].prompt]) + list(generations[i].token_ids) for i in chunk]
        ids, mask = pad_batch(seqs, pad)
        ids, mask = ids.to(dev), mask.to(dev)
        h = head_inputs(model, ids, mask)  # the head runs below, on continuation positions only
        for row, i in enumerate(chunk):
            p, c = len(enc[generations[i].prompt]), len(generations[i].token_ids)
            if c:
                z = head(h[row, p - 1 : p - 1 + c])
                nll = F.cross_entropy(z.float(), ids[row, p : p + c])
                out[i] = math.exp(float(nll))
    return out


def _standard_error(x: pd.Series) -> float:
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else math.nan


def sweep_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Summarise a sweep by steer value.

    Parameters
    ----------
    frame
        One row per generation with columns ``value``, ``epsilon``, ``vader`` and optionally
        ``dist_2``, ``perplexity``.

    Returns
    -------
    pandas.DataFrame
        Per value: ``n``, ``vader_mean``, ``vader_se``, ``positive_share`` (compound >= 0.05),
        ``negative_share`` (<= -0.05) and the means of the optional columns.
    """
    g = frame.groupby(["value", "epsilon"], sort=True)
    out = g.agg(
        n=("vader", "size"),
        vader_mean=("vader", "mean"),
        vader_se=("vader", _standard_error),
        positive_share=("vader", lambda x: float(np.mean(np.asarray(x) >= 0.05))),
        negative_share=("vader", lambda x: float(np.mean(np.asarray(x) <= -0.05))),
    )
    if "dist_2" in frame:
        out["dist_2"] = g["dist_2"].mean()
    if "perplexity" in frame:
        out["perplexity_median"] = g["perplexity"].median()
    return out.reset_index()
