"""Offline evaluation of steers: the DExperts protocol (LM-Steer's ``evaluate.py``), offline.

:func:`evaluate` samples, for every prompt and every steer setting, ``samples`` continuations of
exactly ``new_tokens`` tokens (EOS banned: ``min = max``) with nucleus sampling, and scores them:

- sentiment with VADER and a second lexicon scorer (:mod:`steer.evaluation.scorers`): per prompt the mean
  score and the share of positive samples;
- offensive language (:func:`steer.evaluation.scorers.offensive_scorer`): per prompt the max over samples
  ("max toxicity") and whether >= 1 sample is offensive ("toxicity probability");
- fluency: the perplexity of each continuation given its prompt under a scorer LM (default: the
  unsteered model), computed on the generated token ids;
- diversity: distinct-1/2/3 per prompt over its samples.

Every per-prompt metric is then averaged over prompts, with the standard error over prompts.

Deviations from the paper / reference code, on purpose:

- Sentiment is scored with VADER's lexicon (and TextBlob / AFINN) instead of the HF
  DistilBERT-SST2 pipeline; offensive language with ``alt-profanity-check`` or the
  ``better-profanity`` word list instead of the Perspective API; fluency with the unsteered
  model itself (or any causal LM passed) instead of GPT2-XL.
- Pitfall 3: every (prompt, sample) pair has its own seed (:func:`sample_seeds`: derived from
  the base seed, the prompt text and the sample index), instead of the seeds 0..24 reused for
  every prompt; continuations are sliced on tokens, never on decoded text. The same seeds are
  used for every steer setting (common random numbers across the epsilon grid).
- Pitfall 4: perplexity is computed on token ids (prompt + continuation as one sequence, no
  re-tokenisation that merges BPE tokens at the boundary); no perplexity is dropped: the mean,
  the median and the count >= 1e4 are reported, and the reference's mean over perplexities
  < 1e4 separately (``ppl_mean_below_1e4``). Distinct-n divides unique n-grams by the number of
  n-grams (``dist_n``); the reference's variant divides by the number of words for every n
  (``dist_n_ref``; both split on whitespace, where the reference splits on single spaces).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lmecon.provenance import jsonable, versions
from steer._types import check_literal
from steer.core.hooks import head_inputs
from steer.core.transform import SteerTransform, as_values
from steer.errors import SteerInputError, SteerValuesError
from steer.evaluation.scorers import Scorer, resolve_scorers
from steer.generation import Generation, generate
from steer.train import _Head, pad_batch, pad_id

__all__ = [
    "DEFAULT_SCORERS",
    "PPL_LIMIT",
    "EvaluateSpec",
    "Evaluation",
    "conditional_perplexity",
    "distinct_n",
    "distinct_n_corpus",
    "evaluate",
    "sample_seeds",
    "save_evaluations",
    "sweep_table",
    "vader_compound",
    "value_grid",
]

DEFAULT_SCORERS: tuple[str, ...] = ("vader", "textblob", "offensive")
PPL_LIMIT = 1e4
"""The reference code drops perplexities >= this; here they are counted, never dropped."""
Level = Literal["value", "prompt", "sample"]


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


def sample_seeds(prompts: Sequence[str], samples: int, seed: int = 0) -> np.ndarray:
    """One sampling seed per (prompt, sample): distinct across prompts, reproducible.

    The reference code seeds sample ``i`` with ``i`` for every prompt (pitfall 3), so all
    prompts share the same 25 random streams. Here the seed of sample ``s`` of a prompt is drawn
    from ``numpy.random.SeedSequence((seed, sha256(prompt text), occurrence, s))``, where
    ``occurrence`` counts earlier copies of the same text in ``prompts``. A prompt's seeds thus
    depend only on its text (not on its position or on the other prompts), and steer settings
    evaluated on the same prompt share them (common random numbers across values).

    Parameters
    ----------
    prompts
        Prompt texts.
    samples
        Samples per prompt.
    seed
        Base seed.

    Returns
    -------
    numpy.ndarray
        ``[len(prompts), samples]`` int64 seeds in ``[0, 2**63)``.
    """
    if samples < 1:
        raise SteerInputError(f"samples must be >= 1; got {samples}.")
    if seed < 0:
        raise SteerInputError(f"seed must be >= 0; got {seed}.")
    out = np.empty((len(prompts), samples), dtype=np.int64)
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts):
        occ = seen.get(p, 0)
        seen[p] = occ + 1
        digest = np.frombuffer(hashlib.sha256(p.encode("utf-8")).digest()[:16], dtype=np.uint32)
        for s in range(samples):
            hi, lo = np.random.SeedSequence([seed, *digest.tolist(), occ, s]).generate_state(2)
            out[i, s] = (int(hi) << 31) | (int(lo) >> 1)
    return out


def value_grid(
    transform: SteerTransform, axes: Mapping[str, Sequence[float]]
) -> list[tuple[float, ...]]:
    """Full slot values for every combination of labelled-slot values (a composition grid).

    Parameters
    ----------
    transform
        Usually :func:`steer.compose` of several steers.
    axes
        Slot name -> values of that slot (each labelled slot exactly once; dummy slots are 1).

    Returns
    -------
    list of tuple
        ``k`` values per setting, the first axis varying slowest.

    Examples
    --------
    >>> value_grid(both, {"sentiment": [-5, 5], "formality": [0, 5]})  # doctest: +SKIP
    [(-5.0, 1.0, 0.0, 1.0), (-5.0, 1.0, 5.0, 1.0), (5.0, 1.0, 0.0, 1.0), (5.0, 1.0, 5.0, 1.0)]
    """
    labelled = [transform.slot_names[i] for i in transform.labelled_slots]
    if sorted(axes) != sorted(labelled):
        raise SteerValuesError(
            f"axes must name each labelled slot once: {labelled}; got {sorted(axes)}."
        )
    names = list(axes)
    grid: list[tuple[float, ...]] = [()]
    for name in names:
        vals = [float(v) for v in axes[name]]
        if not vals:
            raise SteerValuesError(f"axis {name!r} has no values.")
        grid = [(*g, v) for g in grid for v in vals]
    out = []
    for combo in grid:
        full = [1.0] * transform.num_steers
        for name, v in zip(names, combo, strict=True):
            full[transform.slot_names.index(name)] = v
        out.append(tuple(full))
    return out


@dataclass(frozen=True)
class EvaluateSpec:
    """The call that made an :class:`Evaluation` (everything but the model and the prompts)."""

    settings: tuple[tuple[float, ...], ...] | None
    slot_names: tuple[str, ...]
    labelled_slots: tuple[int, ...]
    epsilon: float | None
    base_model: str | None
    prompt_set: str
    n_prompts: int
    samples: int
    new_tokens: int
    top_p: float
    temperature: float
    seed: int
    scorers: tuple[str, ...]
    scorer_sources: tuple[str, ...]
    perplexity_model: str
    batch_size: int


def _se(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else math.nan


_KEYS = ["prompt_set", "setting", "prompt_id"]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Scored samples of a steer evaluation (immutable: frames are returned as copies).

    Attributes
    ----------
    spec
        The call (settings, protocol, scorers).
    created_at
        UTC time of the call.
    seconds
        Wall-clock time of generation + scoring.
    provenance
        Library versions and scorer sources.
    """

    spec: EvaluateSpec
    _samples: pd.DataFrame = field(repr=False)
    _prompts: pd.DataFrame = field(repr=False)
    _values: pd.DataFrame = field(repr=False)
    created_at: str = ""
    seconds: float = math.nan
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def tidy(self, level: Level = "value") -> pd.DataFrame:
        """Return the results as a tidy frame.

        Parameters
        ----------
        level
            ``"sample"``: one row per continuation (``prompt_set, setting, value, epsilon,
            value_<slot>..., values, prompt_id, prompt, sample, seed, continuation, n_tokens,
            token_ids``, one column per scorer, ``perplexity``). ``"prompt"``: one row per
            (setting, prompt) with the per-prompt metrics. ``"value"``: one row per (setting,
            metric): ``estimate`` (mean over prompts), ``std_error`` (over prompts),
            ``conf_low``/``conf_high`` (+-1.96 SE), ``n_prompts``; sample-level statistics
            (``ppl_median``, ``ppl_over_1e4``, ``ppl_mean_below_1e4``) have no SE.

        Returns
        -------
        pandas.DataFrame
            A copy.
        """
        check_literal("level", level, Level)
        frame = {"sample": self._samples, "prompt": self._prompts, "value": self._values}[level]
        return frame.copy()

    def summary(self) -> pd.DataFrame:
        """One row per (prompt set, setting): each metric's estimate and ``<metric>_se``."""
        v = self._values
        ids = [c for c in v.columns if c not in {"metric", "estimate", "std_error", "conf_low",
                                                   "conf_high", "n_prompts"}]  # fmt: skip
        order = list(dict.fromkeys(v["metric"]))
        keys = ["prompt_set", "setting"]
        est = v.pivot(index=keys, columns="metric", values="estimate")[order]
        with_se = [m for m in order if v.loc[v["metric"] == m, "std_error"].notna().any()]
        se = v.pivot(index=keys, columns="metric", values="std_error")[with_se]
        se.columns = [f"{m}_se" for m in with_se]
        wide = est.join(se).reset_index()
        wide.columns.name = None
        n = v.drop_duplicates(keys)[[*ids, "n_prompts"]]
        return n.merge(wide, on=keys, how="left").reset_index(drop=True)

    def to_markdown(self, metrics: Sequence[str] | None = None, floatfmt: str = ".3f") -> str:
        """Markdown table of :meth:`summary` (``estimate ± se`` cells)."""
        v = self._values
        metrics = list(metrics) if metrics is not None else list(dict.fromkeys(v["metric"]))
        s = self.summary()
        slot_cols = [c for c in s.columns if c.startswith("value_")]
        ids = ["prompt_set", *(slot_cols or ["value"])]
        head = ids + metrics
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for _, r in s.iterrows():
            cells = [str(r["prompt_set"])] + [f"{r[c]:+g}" for c in ids[1:]]
            for m in metrics:
                se = r.get(f"{m}_se", math.nan)
                est = r[m]
                fmt = ".0f" if m == "ppl_over_1e4" else floatfmt
                cell = format(est, fmt) if np.isfinite(est) else "nan"
                if np.isfinite(se):
                    cell += f" ± {format(se, floatfmt)}"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


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


def _setting_frame(
    transform: SteerTransform | None, settings: Sequence[tuple[float, ...]] | None
) -> pd.DataFrame:
    if transform is None or settings is None:
        return pd.DataFrame({"setting": [0], "value": [math.nan], "epsilon": [math.nan],
                             "values": ["unsteered"]})  # fmt: skip
    lab = transform.labelled_slots or tuple(range(transform.num_steers))
    data: dict[str, list[Any]] = {"setting": list(range(len(settings)))}
    data["value"] = [float(v[lab[0]]) for v in settings]
    data["epsilon"] = [float(v[lab[0]]) * transform.epsilon for v in settings]
    if len(lab) > 1:
        for i in lab:
            data[f"value_{transform.slot_names[i]}"] = [float(v[i]) for v in settings]
    data["values"] = [",".join(f"{x:g}" for x in v) for v in settings]
    return pd.DataFrame(data)


def _settings(
    transform: SteerTransform | None, values: Any
) -> tuple[tuple[float, ...], ...] | None:
    if transform is None:
        if values is not None:
            raise SteerInputError("values were given without a transform; pass the steer.")
        return None
    if values is None:
        raise SteerInputError(
            "pass values with a transform: steer strengths s (eps = s * eps_0) such as "
            "[-5, 0, 5], or full k-tuples such as [(5, 1)]."
        )
    if isinstance(values, int | float) or (isinstance(values, torch.Tensor) and values.dim() == 0):
        values = [float(values)]
    out = []
    for v in values:
        if isinstance(v, int | float):
            out.append(transform.values(float(v)))
        else:
            row = as_values(v, transform.num_steers)
            if row.dim() != 1:
                raise SteerValuesError(f"each setting must be one row of k values; got {v!r}.")
            out.append(tuple(float(x) for x in row.tolist()))
    if not out:
        raise SteerInputError("values is empty; pass at least one steer setting.")
    if len(set(out)) != len(out):
        raise SteerValuesError(f"values contain duplicate settings: {out}.")
    return tuple(out)


def evaluate(
    model: nn.Module,
    tokenizer: Any,
    transform: SteerTransform | None,
    prompts: Sequence[str],
    values: Sequence[float | Sequence[float]] | float | None = None,
    *,
    samples: int = 25,
    new_tokens: int = 20,
    top_p: float = 0.9,
    temperature: float = 1.0,
    seed: int = 0,
    scorers: Sequence[str | Scorer] = DEFAULT_SCORERS,
    perplexity_model: nn.Module | None = None,
    perplexity_tokenizer: Any | None = None,
    batch_size: int = 50,
    prompt_set: str = "prompts",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate a steer with the DExperts protocol (LM-Steer's sentiment / detox evaluation).

    For every steer setting and prompt: ``samples`` continuations of exactly ``new_tokens``
    tokens (EOS banned), nucleus sampling (``top_p``, ``temperature``) with one seed per
    (prompt, sample) (:func:`sample_seeds`, shared across settings), continuations sliced on
    tokens. Scores: every scorer, perplexity under the scorer LM, distinct-1/2/3 per prompt.
    Per-prompt metrics are averaged over prompts with standard errors (module docstring).

    Parameters
    ----------
    model
        A transformers causal LM (never modified: the steer is attached only while generating).
    tokenizer
        Its tokenizer.
    transform
        The steer (``None``: evaluate the unsteered model; then ``values`` must be ``None``).
    prompts
        Prompt texts (non-empty).
    values
        Steer settings: numbers ``s`` (every labelled slot gets ``s``, dummy slots 1, eps =
        ``s * eps_0``) and/or full ``k``-tuples (see :func:`value_grid` for composition).
    samples, new_tokens
        Continuations per prompt and setting, and their exact length (paper: 25 and 20).
    top_p, temperature
        Nucleus mass and temperature (paper: 0.9 for sentiment, 1.0 for detoxification; T = 1).
    seed
        Base seed of :func:`sample_seeds`.
    scorers
        Names (``"vader"``, ``"textblob"``, ``"afinn"``, ``"offensive"``) or
        :class:`steer.evaluation.scorers.Scorer` objects.
    perplexity_model
        Fluency scorer LM (default: ``model`` itself, unsteered). Any causal LM works.
    perplexity_tokenizer
        Its tokenizer when it differs from ``tokenizer``: prompt and continuation text are then
        tokenised separately with it and concatenated (no merge across the boundary). Without
        it the generated token ids are scored as they are (the vocabularies must agree).
    batch_size
        Sequences per forward pass (``samples`` rows of one prompt go together).
    prompt_set
        Label recorded in every frame (e.g. ``"neutral"``).
    progress
        Show a progress bar.
    log
        Receives a one-line summary.

    Returns
    -------
    Evaluation
        With :meth:`Evaluation.tidy` at the sample, prompt and value level.

    Examples
    --------
    >>> ev = evaluate(lm.model, lm.tokenizer, t, ["The movie was"], [-5, 0, 5],
    ...               samples=8)  # doctest: +SKIP
    >>> ev.summary()[["value", "vader_positive", "ppl_median", "dist_2"]]  # doctest: +SKIP
    """
    if isinstance(prompts, str):
        raise SteerInputError("prompts must be a list of strings, not one string.")
    prompts = list(prompts)
    if not prompts:
        raise SteerInputError("evaluate needs at least one prompt.")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise SteerInputError(f"prompts {bad[:5]} are empty or not strings.")
    if samples < 1 or new_tokens < 1 or batch_size < 1:
        raise SteerInputError(
            f"samples, new_tokens and batch_size must be >= 1; got {samples}, {new_tokens}, "
            f"{batch_size}."
        )
    if not 0 < top_p <= 1 or not temperature > 0:
        raise SteerInputError(f"need 0 < top_p <= 1 and temperature > 0; got {top_p}, "
                              f"{temperature}.")  # fmt: skip
    settings = _settings(transform, values)
    scs = resolve_scorers(scorers)
    ppl_model = perplexity_model if perplexity_model is not None else model
    if perplexity_tokenizer is None and perplexity_model is not None:
        v_gen = len(tokenizer)
        emb = getattr(ppl_model, "get_output_embeddings", lambda: None)()
        v_ppl = int(emb.weight.shape[0]) if emb is not None else None
        if v_ppl is not None and v_ppl < v_gen:
            raise SteerInputError(
                f"the perplexity model has {v_ppl} output tokens but the tokenizer {v_gen}; "
                "pass perplexity_tokenizer to re-tokenise the text for it."
            )
    seeds = sample_seeds(prompts, samples, seed)
    setting_list: list[tuple[float, ...] | None] = list(settings) if settings else [None]
    items = [(p, j) for p in range(len(prompts)) for j in range(len(setting_list))]
    per_call = max(1, batch_size // samples)
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items) * samples, desc=f"evaluate ({prompt_set})", unit="sample",
               disable=not progress)  # fmt: skip
    gens: list[Generation] = []
    meta: list[tuple[int, int]] = []
    ppl: list[np.ndarray] = []
    for start in range(0, len(items), per_call):
        chunk = items[start : start + per_call]
        kw: dict[str, Any] = {}
        if transform is not None:
            kw = {"transform": transform, "values": [setting_list[j] for _, j in chunk]}
        out = generate(
            model, tokenizer, [prompts[p] for p, _ in chunk], max_new_tokens=new_tokens,
            min_new_tokens=new_tokens, do_sample=True, temperature=temperature, top_p=top_p,
            num_samples=samples, batch_size=batch_size,
            sample_seeds=[seeds[p].tolist() for p, _ in chunk], **kw,
        )  # fmt: skip
        short = [len(g.token_ids) for g in out if len(g.token_ids) != new_tokens]
        if short:
            raise RuntimeError(f"continuations of {short} tokens instead of {new_tokens}.")
        scored = out
        if perplexity_tokenizer is not None:
            scored = [
                dataclasses.replace(g, token_ids=tuple(
                    perplexity_tokenizer(g.text, add_special_tokens=False)["input_ids"]))
                for g in out
            ]  # fmt: skip
        ppl.append(conditional_perplexity(ppl_model, perplexity_tokenizer or tokenizer, scored,
                                          batch_size=batch_size))  # fmt: skip
        gens.extend(out)
        meta.extend((p, j) for p, j in chunk for _ in range(samples))
        bar.update(len(out))
    bar.close()
    texts = [g.text for g in gens]
    setting_cols = _setting_frame(transform, settings)
    frame = pd.DataFrame(
        {
            "prompt_set": prompt_set,
            "setting": [j for _, j in meta],
            "prompt_id": [p for p, _ in meta],
            "prompt": [g.prompt for g in gens],
            "sample": [g.sample for g in gens],
            "seed": [int(seeds[p, g.sample]) for (p, _), g in zip(meta, gens, strict=True)],
            "continuation": texts,
            "n_tokens": [len(g.token_ids) for g in gens],
            "token_ids": [list(g.token_ids) for g in gens],
        }
    )
    for sc in scs:
        frame[sc.name] = sc(texts)
    frame["perplexity"] = np.concatenate(ppl)
    frame = setting_cols.merge(frame, on="setting", how="right")
    first = ["prompt_set", *setting_cols.columns]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    frame = frame.sort_values(["setting", "prompt_id", "sample"], kind="stable")
    frame = frame.reset_index(drop=True)
    raw = _prompt_metrics(frame, scs)
    per_value = _value_metrics(frame, raw, setting_cols)
    per_prompt = setting_cols.merge(raw, on="setting", how="right")
    per_prompt = per_prompt[first + [c for c in per_prompt.columns if c not in first]]
    secs = time.perf_counter() - t0
    name_or_path = getattr(getattr(ppl_model, "config", None), "_name_or_path", "") or "model"
    spec = EvaluateSpec(
        settings=settings,
        slot_names=transform.slot_names if transform is not None else (),
        labelled_slots=transform.labelled_slots if transform is not None else (),
        epsilon=transform.epsilon if transform is not None else None,
        base_model=transform.base_model if transform is not None else None,
        prompt_set=prompt_set,
        n_prompts=len(prompts),
        samples=samples,
        new_tokens=new_tokens,
        top_p=float(top_p),
        temperature=float(temperature),
        seed=int(seed),
        scorers=tuple(s.name for s in scs),
        scorer_sources=tuple(s.source for s in scs),
        perplexity_model=(
            "generator (unsteered)" if perplexity_model is None else str(name_or_path)
        ),  # fmt: skip
        batch_size=batch_size,
    )
    prov = {
        "versions": versions(("torch", "transformers", "numpy", "pandas"), missing=None),
        "scorers": {s.name: s.note for s in scs},
    }
    if log is not None:
        log(f"evaluated {len(prompts)} {prompt_set} prompts x {len(setting_list)} settings x "
            f"{samples} samples x {new_tokens} tokens in {secs:.0f} s")  # fmt: skip
    return Evaluation(
        spec, frame, per_prompt, per_value,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"), seconds=secs,
        provenance=prov,
    )  # fmt: skip


def save_evaluations(
    evaluations: Evaluation | Sequence[Evaluation],
    folder: str | os.PathLike[str],
    *,
    markdown_metrics: Sequence[str] | None = None,
) -> list[Path]:
    """Write one or several evaluations (e.g. one per prompt set) to a folder, atomically.

    Files: ``samples.parquet``, ``prompts.parquet``, ``values.parquet`` (the three
    :meth:`Evaluation.tidy` levels, concatenated; each holds the specs in its pandas ``attrs``
    metadata), ``summary.csv`` and ``summary.md`` (:meth:`Evaluation.summary` /
    :meth:`Evaluation.to_markdown`) and ``evaluation.json`` (specs, provenance, timings).

    Parameters
    ----------
    evaluations
        Results of :func:`evaluate`.
    folder
        Output folder (created).
    markdown_metrics
        Columns of the markdown table (default: every metric).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from lmecon.atomic import atomic_write_parquet, atomic_write_text

    evs = [evaluations] if isinstance(evaluations, Evaluation) else list(evaluations)
    if not evs:
        raise SteerInputError("save_evaluations needs at least one evaluation.")
    out = Path(folder)
    meta = {
        "evaluations": [
            {"spec": dataclasses.asdict(e.spec), "created_at": e.created_at,
             "seconds": e.seconds, "provenance": dict(e.provenance)}
            for e in evs
        ]
    }  # fmt: skip
    meta = jsonable(meta)
    files = []
    for level in ("sample", "prompt", "value"):
        frame = pd.concat([e.tidy(level) for e in evs], ignore_index=True)  # type: ignore[arg-type]
        frame.attrs = {"steer_evaluation": json.dumps(meta)}
        name = {"sample": "samples", "prompt": "prompts", "value": "values"}[level]
        files.append(atomic_write_parquet(out / f"{name}.parquet", frame))
    summary = pd.concat([e.summary() for e in evs], ignore_index=True)
    files.append(atomic_write_text(out / "summary.csv", summary.to_csv(index=False)))
    md = "\n\n".join(f"### {e.spec.prompt_set}\n\n" + e.to_markdown(markdown_metrics)
                     for e in evs)  # fmt: skip
    files.append(atomic_write_text(out / "summary.md", md + "\n"))
    files.append(atomic_write_text(out / "evaluation.json", json.dumps(meta, indent=2) + "\n"))
    return files
