"""Offline evaluation of steers: the DExperts protocol (LM-Steer's ``evaluate.py``), offline.

:func:`evaluate` samples, for every prompt and every steer setting, ``samples`` continuations of
exactly ``new_tokens`` tokens (EOS banned: ``min = max``) with nucleus sampling, and scores them:

- sentiment with VADER and a second lexicon scorer (:mod:`steer.evaluation.scorers`): per
  prompt the mean score and the share of positive samples;
- offensive language (:func:`steer.evaluation.scorers.offensive_scorer`): per prompt the max
  over samples ("max toxicity") and whether >= 1 sample is offensive ("toxicity probability");
- fluency: the perplexity of each continuation given its prompt under a scorer LM (default:
  the unsteered model), computed on the generated token ids;
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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from lmecon.provenance import versions
from steer.core.transform import SteerTransform
from steer.errors import SteerInputError
from steer.evaluation.metrics import _prompt_metrics, _value_metrics, conditional_perplexity
from steer.evaluation.result import EvaluateSpec, Evaluation
from steer.evaluation.scorers import Scorer, resolve_scorers
from steer.evaluation.settings import _setting_frame, _settings, sample_seeds
from steer.generation import Generation, generate

__all__ = ["DEFAULT_SCORERS", "evaluate"]

DEFAULT_SCORERS: tuple[str, ...] = ("vader", "textblob", "offensive")


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
    >>> ev.summary_frame()[["value", "vader_positive", "ppl_median", "dist_2"]]  # doctest: +SKIP
    """
    if isinstance(prompts, str):
        raise SteerInputError("prompts must be a list of strings, not one string.")
    prompts = _check_prompts(prompts)
    _check_protocol(samples, new_tokens, batch_size, top_p, temperature)
    settings = _settings(transform, values)
    scs = resolve_scorers(scorers)
    ppl_model = perplexity_model if perplexity_model is not None else model
    if perplexity_tokenizer is None and perplexity_model is not None:
        _check_perplexity_vocab(tokenizer, ppl_model)
    seeds = sample_seeds(prompts, samples, seed)
    setting_list: list[tuple[float, ...] | None] = list(settings) if settings else [None]
    t0 = time.perf_counter()
    gens, meta, ppl = _sample(
        model, tokenizer, transform, prompts, setting_list, seeds,
        _Sampling(samples, new_tokens, top_p, temperature, batch_size),
        (ppl_model, perplexity_tokenizer), prompt_set, progress,
    )  # fmt: skip
    setting_cols = _setting_frame(transform, settings)
    frame = _sample_frame(gens, meta, seeds, ppl, scs, setting_cols, prompt_set)
    raw = _prompt_metrics(frame, scs)
    per_value = _value_metrics(frame, raw, setting_cols)
    per_prompt = setting_cols.merge(raw, on="setting", how="right")
    first = ["prompt_set", *setting_cols.columns]
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


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise SteerInputError("prompts must be a list of strings, not one string.")
    prompts = list(prompts)
    if not prompts:
        raise SteerInputError("evaluate needs at least one prompt.")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise SteerInputError(f"prompts {bad[:5]} are empty or not strings.")
    return prompts


def _check_protocol(
    samples: int, new_tokens: int, batch_size: int, top_p: float, temperature: float
) -> None:
    if samples < 1 or new_tokens < 1 or batch_size < 1:
        raise SteerInputError(
            f"samples, new_tokens and batch_size must be >= 1; got {samples}, {new_tokens}, "
            f"{batch_size}."
        )
    if not 0 < top_p <= 1 or not temperature > 0:
        raise SteerInputError(f"need 0 < top_p <= 1 and temperature > 0; got {top_p}, "
                              f"{temperature}.")  # fmt: skip


def _check_perplexity_vocab(tokenizer: Any, ppl_model: nn.Module) -> None:
    """Check that the perplexity model knows every id the generator can produce."""
    v_gen = len(tokenizer)
    emb = getattr(ppl_model, "get_output_embeddings", lambda: None)()
    v_ppl = int(emb.weight.shape[0]) if emb is not None else None
    if v_ppl is not None and v_ppl < v_gen:
        raise SteerInputError(
            f"the perplexity model has {v_ppl} output tokens but the tokenizer {v_gen}; "
            "pass perplexity_tokenizer to re-tokenise the text for it."
        )


@dataclass(frozen=True)
class _Sampling:
    """The sampling protocol of one evaluation."""

    samples: int
    new_tokens: int
    top_p: float
    temperature: float
    batch_size: int


def _sample(
    model: nn.Module,
    tokenizer: Any,
    transform: SteerTransform | None,
    prompts: list[str],
    setting_list: list[tuple[float, ...] | None],
    seeds: np.ndarray,
    sp: _Sampling,
    scorer_lm: tuple[nn.Module, Any | None],
    prompt_set: str,
    progress: bool,
) -> tuple[list[Generation], list[tuple[int, int]], list[np.ndarray]]:
    """Generate every (prompt, setting)'s samples and score their perplexity, chunk by chunk.

    Returns the generations, their ``(prompt index, setting index)`` and the perplexities of
    each chunk.
    """
    from tqdm.auto import tqdm

    ppl_model, ppl_tokenizer = scorer_lm
    items = [(p, j) for p in range(len(prompts)) for j in range(len(setting_list))]
    per_call = max(1, sp.batch_size // sp.samples)
    bar = tqdm(total=len(items) * sp.samples, desc=f"evaluate ({prompt_set})", unit="sample",
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
            model, tokenizer, [prompts[p] for p, _ in chunk], max_new_tokens=sp.new_tokens,
            min_new_tokens=sp.new_tokens, do_sample=True, temperature=sp.temperature,
            top_p=sp.top_p, num_samples=sp.samples, batch_size=sp.batch_size,
            sample_seeds=[seeds[p].tolist() for p, _ in chunk], **kw,
        )  # fmt: skip
        short = [len(g.token_ids) for g in out if len(g.token_ids) != sp.new_tokens]
        if short:
            raise RuntimeError(f"continuations of {short} tokens instead of {sp.new_tokens}.")
        scored = out
        if ppl_tokenizer is not None:
            scored = [
                dataclasses.replace(g, token_ids=tuple(
                    ppl_tokenizer(g.text, add_special_tokens=False)["input_ids"]))
                for g in out
            ]  # fmt: skip
        ppl.append(conditional_perplexity(ppl_model, ppl_tokenizer or tokenizer, scored,
                                          batch_size=sp.batch_size))  # fmt: skip
        gens.extend(out)
        meta.extend((p, j) for p, j in chunk for _ in range(sp.samples))
        bar.update(len(out))
    bar.close()
    return gens, meta, ppl


def _sample_frame(
    gens: list[Generation],
    meta: list[tuple[int, int]],
    seeds: np.ndarray,
    ppl: list[np.ndarray],
    scorers: Sequence[Scorer],
    setting_cols: pd.DataFrame,
    prompt_set: str,
) -> pd.DataFrame:
    """One row per continuation with its setting's columns first, scored by every scorer."""
    texts = [g.text for g in gens]
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
    for sc in scorers:
        frame[sc.name] = sc(texts)
    frame["perplexity"] = np.concatenate(ppl)
    frame = setting_cols.merge(frame, on="setting", how="right")
    first = ["prompt_set", *setting_cols.columns]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    frame = frame.sort_values(["setting", "prompt_id", "sample"], kind="stable")
    return frame.reset_index(drop=True)
