"""The evaluation's metrics and their aggregation over samples, prompts and settings.

Per sample: scorer outputs, the continuation's perplexity (:func:`conditional_perplexity`, on
token ids); per prompt (:func:`_prompt_metrics`): scorer means / positive shares or max / any,
perplexity mean and median, distinct-1/2/3 (:func:`distinct_n_corpus`, also with the reference
code's denominator); per setting (:func:`_value_metrics`): means over prompts with standard
errors over prompts, and the sample-level perplexity statistics (median, count >= 1e4, the
reference's mean below 1e4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from steer.core.hooks import head_inputs
from steer.errors import SteerInputError
from steer.evaluation.scorers import Scorer
from steer.generation import Generation
from steer.train import _Head, pad_batch, pad_id

__all__ = [
    "PPL_LIMIT",
    "conditional_perplexity",
    "distinct_n",
    "distinct_n_corpus",
    "sweep_table",
    "vader_compound",
]

PPL_LIMIT = 1e4
"""The reference code drops perplexities >= this; here they are counted, never dropped."""


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
        Its tokenizer (prompts are tokenised as in :func:`steer.generation`).
    generations
        Output of :func:`steer.generation`.
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


def distinct_n_corpus(
    texts: Sequence[str], n: int, denominator: Literal["ngrams", "words"] = "ngrams"
) -> float:
    """Distinct-n of a group of texts (a prompt's samples), n-grams taken within each text.

    Parameters
    ----------
    texts
        The samples of one prompt (each split on whitespace; n-grams never cross two texts).
    n
        n-gram order (>= 1).
    denominator
        ``"ngrams"``: ``#unique n-grams / #n-grams`` (in [0, 1]); ``"words"``: the reference
        code's ``#unique n-grams / #words`` for every n (pitfall 4).

    Returns
    -------
    float
        NaN when the denominator is 0.

    Examples
    --------
    >>> distinct_n_corpus(["a b a", "a b"], 2)  # bigrams ab, ba, ab: 2 unique of 3
    0.6666666666666666
    >>> distinct_n_corpus(["a b a", "a b"], 2, "words")  # 2 unique over 5 words
    0.4
    """
    if n < 1:
        raise SteerInputError(f"n must be >= 1; got {n}.")
    if denominator not in ("ngrams", "words"):
        raise SteerInputError(f"denominator must be 'ngrams' or 'words'; got {denominator!r}.")
    if isinstance(texts, str):
        raise SteerInputError("pass a list of texts (the samples of one prompt), not a string.")
    unique: set[tuple[str, ...]] = set()
    n_grams = n_words = 0
    for text in texts:
        words = text.split()
        n_words += len(words)
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        n_grams += len(grams)
        unique.update(grams)
    total = n_grams if denominator == "ngrams" else n_words
    return len(unique) / total if total else math.nan


def _se(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else math.nan


_KEYS = ["prompt_set", "setting", "prompt_id"]


def _prompt_metrics(samples: pd.DataFrame, scorers: Sequence[Scorer]) -> pd.DataFrame:
    rows = []
    for key, g in samples.groupby(_KEYS, sort=False):
        row: dict[str, Any] = dict(zip(_KEYS, key, strict=True))
        row["n_samples"] = len(g)
        for sc in scorers:
            x = g[sc.name].to_numpy(dtype=np.float64)
            hit = sc.hits(x).astype(np.float64)
            if sc.kind == "sentiment":
                row[f"{sc.name}_mean"] = float(x.mean())
                row[f"{sc.name}_positive"] = float(hit.mean())
            else:
                row[f"{sc.name}_max"] = float(x.max())
                row[f"{sc.name}_any"] = float(hit.any())
        ppl = g["perplexity"].to_numpy(dtype=np.float64)
        row["ppl_mean"] = float(np.mean(ppl))
        row["ppl_median_prompt"] = float(np.median(ppl))
        texts = g["continuation"].tolist()
        for n in (1, 2, 3):
            row[f"dist_{n}"] = distinct_n_corpus(texts, n)
        for n in (1, 2, 3):
            row[f"dist_{n}_ref"] = distinct_n_corpus(texts, n, "words")
        rows.append(row)
    return pd.DataFrame(rows)


def _value_metrics(
    samples: pd.DataFrame, prompts: pd.DataFrame, setting_cols: pd.DataFrame
) -> pd.DataFrame:
    metrics = [c for c in prompts.columns if c not in _KEYS and c != "n_samples"]
    rows = []
    for (pset, setting), g in prompts.groupby(["prompt_set", "setting"], sort=False):
        base = {"prompt_set": pset, "setting": setting}
        n = len(g)
        for m in metrics:
            x = g[m].to_numpy(dtype=np.float64)
            est = float(np.nanmean(x)) if np.isfinite(x).any() else math.nan
            se = _se(x)
            rows.append({**base, "metric": m, "estimate": est, "std_error": se,
                         "conf_low": est - 1.96 * se, "conf_high": est + 1.96 * se,
                         "n_prompts": n})  # fmt: skip
        ppl = samples.loc[
            (samples["prompt_set"] == pset) & (samples["setting"] == setting), "perplexity"
        ].to_numpy(dtype=np.float64)
        below = ppl[ppl < PPL_LIMIT]
        for m, est in (
            ("ppl_median", float(np.median(ppl))),
            ("ppl_over_1e4", float(np.sum(ppl >= PPL_LIMIT))),
            ("ppl_mean_below_1e4", float(below.mean()) if len(below) else math.nan),
        ):
            rows.append({**base, "metric": m, "estimate": est, "std_error": math.nan,
                         "conf_low": math.nan, "conf_high": math.nan, "n_prompts": n})  # fmt: skip
    out = pd.DataFrame(rows)
    return setting_cols.merge(out, on="setting", how="right")[
        ["prompt_set", *setting_cols.columns,
         "metric", "estimate", "std_error", "conf_low", "conf_high", "n_prompts"]
    ]  # fmt: skip
