"""The two-exposure mapping of Pythia-deduped: first and second training step of a sequence.

Pythia-deduped trains 143 000 steps × 1 024 sequences on the deduplicated Pile, which is shorter
than the run, so part of it is trained twice (≈ 1.5 epochs). This module maps a training position
to both exposures and builds the two-exposure panel that
:func:`causalmem.estimators.reexposure.reexposure_att` estimates on.

Facts and their provenance (:data:`PYTHIA_EPOCH_PROVENANCE`):

* EleutherAI/pythia ``README.md`` (section "Models"): every model "saw 299,892,736,000 ~= 299.9B
  tokens during training", checkpoints every "2,097,152,000 ~= 2B tokens" (1 000 steps), i.e.
  :data:`PYTHIA_TOKENS_PER_STEP` = 2 097 152 = 1 024 sequences × 2 048 predicted tokens, "~= 1.5
  epochs on the deduped Pile (which contains 207B tokens in 1 epoch)".
* One epoch is therefore ≈ 207e9 / 2 048 ≈ 101.07M sequences, and the first repeat happens at
  step 98 706 (207e9 / 2 097 152 ≈ 98 705.3 steps per epoch, :func:`deduped_epoch_steps`).
  ``207B`` is rounded in the README (± 0.5B tokens ⇒ ± ≈ 240 steps); with the tokenised data
  (``EleutherAI/pythia_deduped_pile_idxmaps``) pass the exact sequence count as
  ``n_epoch_sequences``. The README's own token counts use 2 048 per sequence (consecutive
  2 049-token samples share one token), as does
  :func:`causalmem.panel.pythia.deduped_epoch_boundary`.
* Order of the second pass: EleutherAI/pythia#144 (a user's answer, not a maintainer
  statement): "about the first half of the data (same order) is seen twice"; the paper and
  the reference repo cut their analysis at step 95 000. This module assumes the same order
  (position ``i + N`` trains the sequence of position ``i``); check it on the real data with
  :func:`verify_repeat` before relying on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.panel.pythia import (
    PYTHIA_BATCH_SIZE,
    PYTHIA_MACRO_BATCH,
    PYTHIA_TOTAL_STEPS,
    batch_to_step,
    sequence_to_batch,
    step_to_cohort,
)

__all__ = [
    "DEDUPED_PILE_TOKENS",
    "PYTHIA_EPOCH_PROVENANCE",
    "PYTHIA_TOKENS_PER_SEQUENCE",
    "PYTHIA_TOKENS_PER_STEP",
    "PYTHIA_TOTAL_TOKENS",
    "deduped_epoch_sequences",
    "deduped_epoch_steps",
    "second_exposure",
    "two_exposure_panel",
    "verify_repeat",
]

PYTHIA_TOKENS_PER_SEQUENCE = 2048
"""Predicted tokens per training sequence (2 049-token samples overlapping by one token)."""
PYTHIA_TOKENS_PER_STEP = PYTHIA_BATCH_SIZE * PYTHIA_TOKENS_PER_SEQUENCE
"""2 097 152 tokens per optimizer step (README: checkpoints every 2,097,152,000 tokens)."""
PYTHIA_TOTAL_TOKENS = 299_892_736_000
"""Tokens seen by every Pythia model (README) = 143 000 × 2 097 152."""
DEDUPED_PILE_TOKENS = 207e9
"""Tokens of one epoch of the deduplicated Pile (README: "207B tokens in 1 epoch"; rounded)."""

PYTHIA_EPOCH_PROVENANCE: dict[str, str] = {
    "tokens_total": "EleutherAI/pythia README.md, section Models: 'Each model saw "
    "299,892,736,000 ~= 299.9B tokens during training'",
    "tokens_per_step": "EleutherAI/pythia README.md: checkpoints 'saved every 2,097,152,000 ~= 2B "
    "tokens' (1 000 steps) and 'trained for the equivalent of 143000 steps at a batch size of "
    "2,097,152 tokens'",
    "deduped_tokens": "EleutherAI/pythia README.md: '~= 1.5 epochs on the deduped Pile (which "
    "contains 207B tokens in 1 epoch)'",
    "second_pass_order": "EleutherAI/pythia issue #144 (2024-01-11, answer by a user, not a "
    "maintainer): 'about the first half of the data (same order) is seen twice'; uses step98000 "
    "as the last single-pass checkpoint",
    "paper_cutoff": "Lesci et al. (2024) and their repository analyse steps <= 95 000",
}


def deduped_epoch_sequences(
    tokens: float = DEDUPED_PILE_TOKENS, tokens_per_sequence: int = PYTHIA_TOKENS_PER_SEQUENCE
) -> int:
    """Sequences in one epoch of the deduplicated Pile (default ≈ 101 074 218).

    Examples
    --------
    >>> deduped_epoch_sequences()
    101074218
    """
    if tokens <= 0 or tokens_per_sequence <= 0:
        raise ValueError("tokens and tokens_per_sequence must be positive.")
    return int(tokens // tokens_per_sequence)


def deduped_epoch_steps(n_epoch_sequences: int | None = None) -> float:
    """Optimizer steps (fractional) that consume the first epoch (default ≈ 98 705.3).

    The first repeated sequence is trained at step ``floor(N / 1024) + 1`` (98 706 by default).

    Examples
    --------
    >>> round(deduped_epoch_steps(), 1)
    98705.3
    """
    n = deduped_epoch_sequences() if n_epoch_sequences is None else int(n_epoch_sequences)
    return n / PYTHIA_BATCH_SIZE


def _positions(seq_idx: npt.ArrayLike) -> npt.NDArray[np.int64]:
    arr = np.asarray(seq_idx)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError("seq_idx must hold integer training positions (no NaN).")
    out = arr.astype(np.int64).reshape(-1)
    if (out < 0).any():
        raise ValueError(
            "seq_idx must be non-negative training positions; give never-trained (validation) "
            "instances no position (see two_exposure_panel)."
        )
    return out


def second_exposure(
    seq_idx: npt.ArrayLike,
    *,
    n_epoch_sequences: int | None = None,
    total_steps: int = PYTHIA_TOTAL_STEPS,
    batch_size: int = PYTHIA_BATCH_SIZE,
    macro_batch: int = PYTHIA_MACRO_BATCH,
) -> pd.DataFrame:
    """Both exposures of training positions, assuming the second pass repeats the first in order.

    Parameters
    ----------
    seq_idx
        Positions in the training order (either pass: a position ``p >= N`` is the repeat of
        ``p − N``).
    n_epoch_sequences
        Sequences in one epoch ``N`` (default :func:`deduped_epoch_sequences`).
    total_steps, batch_size, macro_batch
        Run length, sequences per step and steps per checkpoint of the grid.

    Returns
    -------
    pandas.DataFrame
        ``seq_idx`` (as given), ``pos1`` (first-pass position), ``step1``, ``cohort`` (first
        exposure on the checkpoint grid), ``pos2`` (−1 when not repeated), ``step2`` (−1),
        ``cohort2`` (``Int64``, ``<NA>`` when trained once).

    Examples
    --------
    >>> m = second_exposure([0, 60_000_000], n_epoch_sequences=100_000_000)
    >>> m["cohort"].tolist(), m["cohort2"].tolist()
    ([1000, 59000], [98000, <NA>])
    """
    pos = _positions(seq_idx)
    n = deduped_epoch_sequences() if n_epoch_sequences is None else int(n_epoch_sequences)
    total = int(total_steps) * int(batch_size)
    if n <= 0 or n > total:
        raise ValueError(f"n_epoch_sequences={n} must lie in (0, {total}] (the run's sequences).")
    if (pos >= total).any():
        raise ValueError(f"seq_idx beyond the run's {total:,} sequences.")
    pos1 = np.where(pos >= n, pos - n, pos)
    if (pos1 >= n).any():
        raise ValueError("a position maps beyond two passes; check n_epoch_sequences.")
    pos2 = pos1 + n
    repeated = pos2 < total
    step1 = batch_to_step(sequence_to_batch(pos1, batch_size))
    step2 = np.where(
        repeated, batch_to_step(sequence_to_batch(np.where(repeated, pos2, 0), batch_size)), -1
    )
    cohort2 = pd.array(
        np.where(repeated, step_to_cohort(np.maximum(step2, 1), macro_batch), 0), dtype="Int64"
    )
    cohort2[~repeated] = pd.NA
    return pd.DataFrame(
        {
            "seq_idx": pos,
            "pos1": pos1,
            "step1": step1,
            "cohort": step_to_cohort(step1, macro_batch),
            "pos2": np.where(repeated, pos2, -1),
            "step2": step2,
            "cohort2": cohort2,
        }
    )


def two_exposure_panel(
    frame: pd.DataFrame,
    *,
    seq_col: str = "seq_idx",
    n_epoch_sequences: int | None = None,
    total_steps: int = PYTHIA_TOTAL_STEPS,
    batch_size: int = PYTHIA_BATCH_SIZE,
    macro_batch: int = PYTHIA_MACRO_BATCH,
) -> pd.DataFrame:
    """Add ``cohort`` (first exposure) and ``cohort2`` (second) to a long Pythia-deduped panel.

    Parameters
    ----------
    frame
        Long scores with a training-position column ``seq_col`` (missing or negative for
        never-trained validation instances, e.g. the reference repo's ``-100 - i``).
        Not modified.
    seq_col
        Training-position column.
    n_epoch_sequences, total_steps, batch_size, macro_batch
        See :func:`second_exposure`.

    Returns
    -------
    pandas.DataFrame
        A copy with ``cohort`` and ``cohort2`` as float (NaN: never trained / trained once),
        ready for :func:`causalmem.estimators.reexposure.reexposure_att`; an existing ``cohort``
        or ``cohort2`` column is an error.
    """
    if seq_col not in frame.columns:
        raise KeyError(f"column {seq_col!r} is not in the frame; have {list(frame.columns)}.")
    clash = [c for c in ("cohort", "cohort2") if c in frame.columns]
    if clash:
        raise ValueError(f"the frame already has {clash}; drop or rename them first.")
    raw = pd.to_numeric(frame[seq_col], errors="coerce").to_numpy(np.float64)
    trained = np.isfinite(raw) & (raw >= 0)
    out = frame.copy()
    g1 = np.full(len(frame), np.nan)
    g2 = np.full(len(frame), np.nan)
    if trained.any():
        m = second_exposure(
            raw[trained],
            n_epoch_sequences=n_epoch_sequences,
            total_steps=total_steps,
            batch_size=batch_size,
            macro_batch=macro_batch,
        )
        g1[trained] = m["cohort"].to_numpy(np.float64)
        g2[trained] = m["cohort2"].astype("Float64").to_numpy(np.float64, na_value=np.nan)
    out["cohort"] = g1
    out["cohort2"] = g2
    return out


def verify_repeat(
    index: Any, positions: npt.ArrayLike, *, n_epoch_sequences: int | None = None
) -> pd.DataFrame:
    """Check on the real token index that position ``i + N`` holds the tokens of position ``i``.

    Parameters
    ----------
    index
        A token index of the full training order (``index[i]`` → tokens), e.g.
        :class:`causalmem.instances.MMapIndexedDataset` over the unsharded Pythia-deduped
        idxmaps (which must cover both passes: the dataloader's order, not the bare corpus).
    positions
        First-pass positions to check.
    n_epoch_sequences
        ``N`` (default :func:`deduped_epoch_sequences`).

    Returns
    -------
    pandas.DataFrame
        ``pos1``, ``pos2``, ``same`` (token-for-token equality).
    """
    p = _positions(positions)
    n = deduped_epoch_sequences() if n_epoch_sequences is None else int(n_epoch_sequences)
    same = np.array(
        [np.array_equal(np.asarray(index[int(i)]), np.asarray(index[int(i + n)])) for i in p],
        dtype=bool,
    )
    return pd.DataFrame({"pos1": p, "pos2": p + n, "same": same})
