"""Pythia's data order: sequence index → batch → optimizer step → macro-batch cohort.

Pythia (deduped) trains on 2 049-token sequences in a fixed order, :data:`PYTHIA_BATCH_SIZE`
= 1 024 sequences per optimizer step, for :data:`PYTHIA_TOTAL_STEPS` = 143 000 steps, and
publishes checkpoints every :data:`PYTHIA_MACRO_BATCH` = 1 000 steps (plus log-spaced early
ones). The treatment step of a training sequence is the first checkpoint at which it has been
trained on.

Conventions (all indices 0-based unless stated):

* ``batch = seq_idx // batch_size``: sequence ``i`` of the training order sits in batch
  ``i // 1024`` (:func:`sequence_to_batch`).
* ``step = batch + 1``: batch ``b`` is consumed by optimizer step ``b + 1``; checkpoint
  ``step0`` is the initialisation, checkpoint ``stepN`` has taken ``N`` steps, i.e. consumed
  batches ``0 … N-1`` (:func:`batch_to_step`).
* ``cohort = ceil(step / 1000) * 1000``: the first 1k-grid checkpoint at or after that step
  (:func:`step_to_cohort`). This equals ``(batch // 1000 + 1) * 1000``, the macro-batch the
  reference repo's *sampler* uses (``batch // 1000``).

This fixes the reference repo's off-by-one (memorisation.md pitfall 1).
``scripts/compute_attgt.py`` uses ``batch = ceil(seq_idx / 1024)`` and
``cohort = ceil(batch / 1000) * 1000`` and codes ``seq_idx <= 0`` as never-treated, so
sequence 0 (a training sequence) becomes a "validation" unit, batches are shifted by one for
every sequence that is not a multiple of 1 024, and the first sequence of every macro-batch
(multiples of 1 024 · 1 000) falls into the previous cohort. Validation sequences (negative
indices ``-100 - i`` in the reference repo) are not training sequences: give them an explicit
never-treated cohort (``<NA>``) instead of passing them here.

Epoch boundary (pitfall 9): the deduplicated Pile (≈ 207e9 tokens) is seen ≈ 1.5 times.
The paper and repo cut at step :data:`PAPER_EPOCH_CUTOFF` = 95 000; token arithmetic
(:func:`deduped_epoch_boundary`, ≈ 98.7k) and EleutherAI/pythia#144 (the second pass repeats
the first half in the same order) place the repeat at ≈ 98–99k. After it the treatment is not
absorbing (data with ``G <= ~48k`` is seen again), so cohorts beyond the cut-off must be
excluded; the cut-off is a parameter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem._types import BeyondCutoff, check_literal

__all__ = [
    "PAPER_EPOCH_CUTOFF",
    "PAPER_SAMPLING",
    "PYTHIA_SHAPES",
    "PYTHIA_VOCAB_SIZE",
    "PYTHIA_BATCH_SIZE",
    "PYTHIA_MACRO_BATCH",
    "PYTHIA_MAX_LR",
    "PYTHIA_SEQ_LEN",
    "PYTHIA_TOTAL_STEPS",
    "BeyondCutoff",
    "batch_to_step",
    "deduped_epoch_boundary",
    "pythia_checkpoint_steps",
    "pythia_lr_schedule",
    "pythia_max_lr",
    "pythia_shape",
    "sequence_to_batch",
    "sequence_to_cohort",
    "step_to_cohort",
]

PYTHIA_BATCH_SIZE = 1024
"""Sequences per optimizer step."""
PYTHIA_MACRO_BATCH = 1000
"""Optimizer steps between two checkpoints of the 1k grid (one treatment cohort)."""
PYTHIA_TOTAL_STEPS = 143_000
"""Optimizer steps of a full Pythia run."""
PYTHIA_SEQ_LEN = 2049
"""Tokens per training sequence (2 048 predicted tokens + 1)."""
PAPER_EPOCH_CUTOFF = 95_000
"""Last step of the first epoch as used by the paper and the reference repo (``--remove_dups``)."""


def _nonneg_int(values: Any, name: str) -> tuple[npt.NDArray[np.int64], bool]:
    """Return ``values`` as int64 (and whether it was a scalar); ValueError unless ints >= 0."""
    if isinstance(values, pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
        if bool(pd.isna(values).any()):
            raise ValueError(f"{name} has missing values; they must be non-negative integers.")
        values = values.to_numpy()
    arr = np.asarray(values)
    if arr.dtype == bool:
        raise ValueError(f"{name} must be non-negative integers; got booleans.")
    if arr.dtype.kind in "iu":
        ints = arr.astype(np.int64)
    elif arr.dtype.kind in "fO":
        try:
            floats = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be non-negative integers; got {arr.dtype}.") from exc
        bad = ~np.isfinite(floats) | (floats != np.floor(floats))
        if bad.any():
            raise ValueError(
                f"{name} must be non-negative integers; got {floats[bad][:5].tolist()} "
                f"({int(bad.sum())} bad values)."
            )
        ints = floats.astype(np.int64)
    else:
        raise ValueError(f"{name} must be non-negative integers; got dtype {arr.dtype}.")
    negative = ints < 0
    if negative.any():
        raise ValueError(
            f"{name} must be non-negative; got {ints[negative][:5].tolist()} "
            f"({int(negative.sum())} negative values). Negative indices are the reference "
            "repo's validation sequences: they are never trained on, so give them a "
            "never-treated cohort (<NA>) explicitly instead of mapping them."
        )
    return ints, arr.ndim == 0


def _positive(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}.")
    return int(value)


def _out(ints: npt.NDArray[np.int64], scalar: bool) -> Any:
    return int(ints) if scalar else ints


@overload
def sequence_to_batch(seq_idx: int, batch_size: int = ...) -> int: ...
@overload
def sequence_to_batch(seq_idx: npt.ArrayLike, batch_size: int = ...) -> npt.NDArray[np.int64]: ...
def sequence_to_batch(seq_idx: Any, batch_size: int = PYTHIA_BATCH_SIZE) -> Any:
    """Map a 0-indexed position in Pythia's training order to its 0-indexed batch.

    Parameters
    ----------
    seq_idx
        Sequence index (scalar or array-like of non-negative integers).
    batch_size
        Sequences per batch, 1 024 for Pythia.

    Returns
    -------
    int or numpy.ndarray
        ``seq_idx // batch_size`` (``int`` for a scalar, ``int64`` array otherwise).

    Raises
    ------
    ValueError
        If an index is negative (e.g. the reference repo's validation indices), missing or not
        an integer.

    Examples
    --------
    >>> sequence_to_batch(0), sequence_to_batch(1023), sequence_to_batch(1024)
    (0, 0, 1)
    """
    ints, scalar = _nonneg_int(seq_idx, "seq_idx")
    return _out(ints // _positive(batch_size, "batch_size"), scalar)


@overload
def batch_to_step(batch: int) -> int: ...
@overload
def batch_to_step(batch: npt.ArrayLike) -> npt.NDArray[np.int64]: ...
def batch_to_step(batch: Any) -> Any:
    """Return the optimizer step that consumes a 0-indexed batch: ``batch + 1``.

    Checkpoint ``step0`` is the initialisation and checkpoint ``stepN`` has consumed batches
    ``0 … N-1``. The reference repo's ``ceil(seq_idx / 1024)`` conflates the two indexings
    (see the module docstring).

    Parameters
    ----------
    batch
        0-indexed batch (scalar or array-like of non-negative integers).

    Returns
    -------
    int or numpy.ndarray
        ``batch + 1``.

    Examples
    --------
    >>> batch_to_step(0), batch_to_step(999)
    (1, 1000)
    """
    ints, scalar = _nonneg_int(batch, "batch")
    return _out(ints + 1, scalar)


@overload
def step_to_cohort(step: int, macro_batch: int = ...) -> int: ...
@overload
def step_to_cohort(step: npt.ArrayLike, macro_batch: int = ...) -> npt.NDArray[np.int64]: ...
def step_to_cohort(step: Any, macro_batch: int = PYTHIA_MACRO_BATCH) -> Any:
    """Return the first checkpoint of the ``macro_batch`` grid at or after ``step``.

    The cohort is the checkpoint at which an instance consumed at ``step`` is first observed
    as trained: ``ceil(step / macro_batch) * macro_batch``.

    Parameters
    ----------
    step
        Optimizer step(s) ``>= 1`` (step 0 consumes no batch).
    macro_batch
        Steps between checkpoints of the grid, 1 000 for Pythia.

    Returns
    -------
    int or numpy.ndarray
        The cohort(s).

    Examples
    --------
    >>> step_to_cohort(1), step_to_cohort(1000), step_to_cohort(1001)
    (1000, 1000, 2000)
    """
    ints, scalar = _nonneg_int(step, "step")
    if (ints < 1).any():
        raise ValueError("step must be >= 1: step 0 is the initial checkpoint, no batch is used.")
    mb = _positive(macro_batch, "macro_batch")
    return _out(-(-ints // mb) * mb, scalar)


def sequence_to_cohort(
    seq_idx: Any,
    *,
    batch_size: int = PYTHIA_BATCH_SIZE,
    macro_batch: int = PYTHIA_MACRO_BATCH,
    epoch_cutoff: int | None = PAPER_EPOCH_CUTOFF,
    beyond: BeyondCutoff = "raise",
) -> Any:
    """Map training-sequence indices to treatment cohorts on the checkpoint grid.

    ``cohort = step_to_cohort(batch_to_step(sequence_to_batch(seq_idx)))``.

    Parameters
    ----------
    seq_idx
        0-indexed positions in the training order (non-negative integers). Validation
        (never-trained) sequences must not be passed; give them ``<NA>`` yourself.
    batch_size
        Sequences per optimizer step.
    macro_batch
        Steps between checkpoints of the grid.
    epoch_cutoff
        Last step of the analysed epoch (default 95 000, the paper's); instances consumed at a
        later step are *beyond* it. ``None`` disables the cut-off. See
        :func:`deduped_epoch_boundary` for the ≈ 98.7k alternative.
    beyond
        What to do with instances beyond the cut-off: ``"raise"`` (default) raises
        ``ValueError``; ``"na"`` maps them to ``<NA>`` and returns a pandas ``Int64`` array.
        Such NAs mean *excluded* (seen again in the second epoch), not never-treated: drop
        those rows before building a panel, or they would join the control group.

    Returns
    -------
    int, numpy.ndarray, pandas.arrays.IntegerArray or pandas.NA
        With ``beyond="raise"``: an ``int64`` array (``int`` for a scalar). With
        ``beyond="na"``: an ``Int64`` array (``int`` or ``pd.NA`` for a scalar).

    Examples
    --------
    >>> sequence_to_cohort([0, 1023, 1024, 1024 * 999, 1024 * 1000]).tolist()
    [1000, 1000, 1000, 1000, 2000]
    >>> sequence_to_cohort([0, 1024 * 95_000], beyond="na").tolist()
    [1000, <NA>]
    """
    check_literal("beyond", beyond, BeyondCutoff)
    ints, scalar = _nonneg_int(seq_idx, "seq_idx")
    step = ints // _positive(batch_size, "batch_size") + 1
    mb = _positive(macro_batch, "macro_batch")
    cohort = -(-step // mb) * mb
    if epoch_cutoff is None:
        late = np.zeros(step.shape, dtype=bool)
    else:
        late = step > _positive(epoch_cutoff, "epoch_cutoff")
    if beyond == "raise":
        if late.any():
            raise ValueError(
                f"{int(late.sum())} sequences are consumed after epoch_cutoff={epoch_cutoff} "
                f"(e.g. seq_idx {ints[late][:5].tolist()} at steps {step[late][:5].tolist()}). "
                "Drop them, pass beyond='na' to mark them <NA> (then drop them: they are not "
                "never-treated), or raise/disable the cut-off with epoch_cutoff=None."
            )
        return _out(cohort, scalar)
    if scalar:
        return pd.NA if bool(late) else int(cohort)
    return pd.arrays.IntegerArray(
        np.where(late, 0, cohort).astype(np.int64).reshape(-1), late.reshape(-1).copy()
    )


def pythia_checkpoint_steps(include_log_spaced: bool = True) -> npt.NDArray[np.int64]:
    """Return the steps of Pythia's published checkpoints.

    Parameters
    ----------
    include_log_spaced
        If True (default), the 154 published checkpoints: 0, 1, 2, 4, …, 512 and
        1 000, 2 000, …, 143 000. If False, the 144 on the 1k grid (0, 1 000, …, 143 000) that
        the paper's analysis uses.

    Returns
    -------
    numpy.ndarray
        Sorted ``int64`` steps.

    Examples
    --------
    >>> pythia_checkpoint_steps().size, pythia_checkpoint_steps(False).size
    (154, 144)
    >>> pythia_checkpoint_steps()[:12].tolist()
    [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    """
    grid = np.arange(0, PYTHIA_TOTAL_STEPS + 1, PYTHIA_MACRO_BATCH, dtype=np.int64)
    if not include_log_spaced:
        return grid
    log_spaced = 2 ** np.arange(10, dtype=np.int64)  # 1 … 512
    return np.sort(np.concatenate([grid, log_spaced]))


def deduped_epoch_boundary(
    tokens: float = 207e9, seq_len: int = PYTHIA_SEQ_LEN - 1, batch_size: int = PYTHIA_BATCH_SIZE
) -> float:
    """Return the optimizer step at which the deduplicated Pile is exhausted.

    ``tokens / (seq_len * batch_size)`` = 207e9 / (2 048 · 1 024) = 207e9 / 2 097 152 ≈
    98 705 steps: consecutive 2 049-token samples share one token, so each consumes 2 048 new
    tokens, as the Pythia README's own counts say (299,892,736,000 tokens = 143 000 steps ×
    2 097 152; see :mod:`causalmem.panel.pythia_epochs` for the provenance and the two-exposure
    mapping). ``207B`` is rounded (± ≈ 240 steps). EleutherAI/pythia#144 reports that the
    second pass (≈ 1.5 epochs in total) repeats the first half in the same order, so data is
    re-seen from ≈ 98.7k on; the paper and repo instead cut at :data:`PAPER_EPOCH_CUTOFF` =
    95 000.

    Parameters
    ----------
    tokens
        Tokens in one epoch of the deduplicated Pile (≈ 207e9).
    seq_len
        New tokens per training sequence (2 048: samples of 2 049 overlap by one token).
    batch_size
        Sequences per optimizer step (1 024).

    Returns
    -------
    float
        The (fractional) step at the end of the first epoch.

    Examples
    --------
    >>> round(deduped_epoch_boundary())
    98705
    """
    if tokens <= 0 or seq_len <= 0 or batch_size <= 0:
        raise ValueError("tokens, seq_len and batch_size must be positive.")
    return float(tokens) / (seq_len * batch_size)


#: Pythia's peak learning rates by model size (pythia README; memorisation.md 1A.2).
PYTHIA_MAX_LR: Mapping[str, float] = {
    "70m": 1e-3,
    "160m": 6e-4,
    "410m": 3e-4,
    "1b": 3e-4,
    "1.4b": 2e-4,
    "2.8b": 1.6e-4,
    "6.9b": 1.2e-4,
    "12b": 1.2e-4,
}


def pythia_max_lr(name: str) -> float | None:
    """Peak learning rate of the Pythia size named in ``name`` (``None`` if no size matches).

    Examples
    --------
    >>> pythia_max_lr("EleutherAI/pythia-1.4b-deduped"), pythia_max_lr("my-model")
    (0.0002, None)
    """
    low = name.lower()
    for size in sorted(PYTHIA_MAX_LR, key=len, reverse=True):
        if size in low:
            return PYTHIA_MAX_LR[size]
    return None


def pythia_lr_schedule(
    max_lr: float,
    total_steps: int = PYTHIA_TOTAL_STEPS,
    warmup_frac: float = 0.01,
    min_lr_ratio: float = 0.1,
    *,
    every: int | None = None,
) -> pd.DataFrame:
    """Pythia's learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_ratio``.

    Parameters
    ----------
    max_lr
        Peak learning rate of the model (e.g. :data:`PYTHIA_MAX_LR`).
    total_steps, warmup_frac, min_lr_ratio
        Pythia: 143,000 steps, 1% warm-up, floor at 0.1 x max (pitfall 13: the reference repo's
        overlay used 1e-3 for every size).
    every
        Step spacing of the returned grid (the last step is always included); default about
        1,430 points (every 100 steps for Pythia).

    Returns
    -------
    pandas.DataFrame
        ``step``, ``lr``.

    Examples
    --------
    >>> s = pythia_lr_schedule(1e-3, total_steps=1000, every=10)
    >>> float(s.lr.max()), round(float(s.lr.iloc[-1]), 6)
    (0.001, 0.0001)
    """
    if max_lr <= 0 or total_steps < 1:
        raise ValueError("need max_lr > 0 and total_steps >= 1.")
    every = max(total_steps // 1430, 1) if every is None else int(every)
    steps = np.unique(np.append(np.arange(every, total_steps + 1, every), total_steps))
    w = max(int(round(warmup_frac * total_steps)), 1)
    prog = np.clip((steps - w) / max(total_steps - w, 1), 0.0, 1.0)
    cos = max_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + np.cos(np.pi * prog)))
    lr = np.where(steps < w, max_lr * steps / w, cos)
    return pd.DataFrame({"step": steps.astype(np.int64), "lr": lr})


PYTHIA_VOCAB_SIZE = 50_304
"""Rows of Pythia's embedding and output head (the tokenizer's 50 277 padded to 128s)."""

#: Pythia's shapes by size: (layers, d_model, heads); d_ff = 4 d_model, untied head, rotary on
#: 25% of each head, parallel residual (the pythia README's table, the configs on the hub).
PYTHIA_SHAPES: Mapping[str, tuple[int, int, int]] = {
    "14m": (6, 128, 4),
    "70m": (6, 512, 8),
    "160m": (12, 768, 12),
    "410m": (24, 1024, 16),
    "1b": (16, 2048, 8),
    "1.4b": (24, 2048, 16),
    "2.8b": (32, 2560, 32),
    "6.9b": (32, 4096, 32),
    "12b": (36, 5120, 40),
}

#: The paper's sampling (reference repo ``scripts/sample_pile.py`` and
#: ``scripts/process_pile_validation.py``): ``k`` batches × ``m`` sequences per 1 000-step
#: macro-batch with seed 1994, and 2 000 validation chunks of 2 049 tokens with seed 1234.
PAPER_SAMPLING: Mapping[str, int] = {
    "k": 10,
    "m": 10,
    "seed": 1994,
    "n_validation": 2000,
    "validation_seed": 1234,
}


def pythia_shape(name: str) -> tuple[int, int, int] | None:
    """(layers, d_model, heads) of the Pythia size named in ``name`` (None if none matches).

    Examples
    --------
    >>> pythia_shape("EleutherAI/pythia-410m-deduped"), pythia_shape("EleutherAI/pythia-1b")
    ((24, 1024, 16), (16, 2048, 8))
    """
    low = name.lower()
    for size in sorted(PYTHIA_SHAPES, key=len, reverse=True):
        if re.search(rf"(?<![0-9.]){re.escape(size)}(?![0-9])", low):
            return PYTHIA_SHAPES[size]
    return None
