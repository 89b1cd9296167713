from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from causalmem.panel import pythia
from causalmem.panel.pythia import (
    PAPER_EPOCH_CUTOFF,
    PYTHIA_BATCH_SIZE,
    PYTHIA_MACRO_BATCH,
    PYTHIA_TOTAL_STEPS,
    batch_to_step,
    deduped_epoch_boundary,
    pythia_checkpoint_steps,
    sequence_to_batch,
    sequence_to_cohort,
    step_to_cohort,
)

# Hand-computed chain seq_idx -> batch (seq // 1024) -> step (batch + 1)
# -> cohort (ceil(step / 1000) * 1000).
CASES = [
    # seq_idx,       batch, step, cohort
    (0, 0, 1, 1000),
    (1023, 0, 1, 1000),
    (1024, 1, 2, 1000),
    (1024 * 999, 999, 1000, 1000),
    (1024 * 999 + 1023, 999, 1000, 1000),
    (1024 * 1000, 1000, 1001, 2000),
    (1024 * 94_999, 94_999, 95_000, 95_000),
]

# The reference repo (scripts/compute_attgt.py) computes batch = ceil(seq_idx / 1024) and
# cohort = ceil(batch / 1000) * 1000, and codes seq_idx <= 0 as never-treated. For the same
# inputs it gives:
#   seq 0            -> batch 0    -> "validation" (never treated)       [we: cohort 1000]
#   seq 1023         -> batch 1    -> cohort 1000   (batch off by one)    [we: batch 0]
#   seq 1024         -> batch 1    -> cohort 1000                         [agrees]
#   seq 1024*999     -> batch 999  -> cohort 1000                         [agrees]
#   seq 1024*1000    -> batch 1000 -> cohort 1000   (previous cohort!)    [we: 2000]
#   seq 1024*1000+1  -> batch 1001 -> cohort 2000                         [we: batch 1000]
REFERENCE_REPO = {
    0: None,
    1023: 1000,
    1024: 1000,
    1024 * 999: 1000,
    1024 * 1000: 1000,
    1024 * 1000 + 1: 2000,
}


def reference_repo_cohort(seq_idx: int) -> int | None:
    if seq_idx <= 0:
        return None
    batch = math.ceil(seq_idx / 1024)
    return math.ceil(batch / 1000) * 1000


def test_constants() -> None:
    assert PYTHIA_BATCH_SIZE == 1024
    assert PYTHIA_MACRO_BATCH == 1000
    assert PYTHIA_TOTAL_STEPS == 143_000
    assert PAPER_EPOCH_CUTOFF == 95_000


@pytest.mark.parametrize(("seq", "batch", "step", "cohort"), CASES)
def test_hand_computed_chain(seq: int, batch: int, step: int, cohort: int) -> None:
    assert sequence_to_batch(seq) == batch
    assert batch_to_step(batch) == step
    assert step_to_cohort(step) == cohort
    assert sequence_to_cohort(seq) == cohort
    assert isinstance(sequence_to_cohort(seq), int)


def test_vectorised_matches_scalar() -> None:
    seqs = np.array([c[0] for c in CASES])
    out = sequence_to_cohort(seqs)
    assert out.dtype == np.int64
    assert out.tolist() == [c[3] for c in CASES]
    assert sequence_to_batch(seqs).tolist() == [c[1] for c in CASES]
    assert batch_to_step(sequence_to_batch(seqs)).tolist() == [c[2] for c in CASES]
    assert sequence_to_cohort(pd.Series(seqs)).tolist() == [c[3] for c in CASES]


def test_reference_repo_disagrees_where_documented() -> None:
    for seq, ref in REFERENCE_REPO.items():
        assert reference_repo_cohort(seq) == ref
    assert sequence_to_cohort(0) == 1000  # a training sequence, not validation
    assert sequence_to_cohort(1024 * 1000) == 2000  # first sequence of the 2nd macro-batch
    assert sequence_to_batch(1023) == 0  # repo: ceil(1023/1024) = 1


def test_cohort_matches_the_samplers_macro_batch() -> None:
    # The repo's sampler draws batches per macro-batch with 0-indexed batch // 1000.
    rng = np.random.default_rng(0)
    seqs = rng.integers(0, 1024 * PAPER_EPOCH_CUTOFF, size=10_000)
    batch = seqs // 1024
    assert (sequence_to_cohort(seqs) == (batch // 1000 + 1) * 1000).all()


@pytest.mark.parametrize(
    "bad",
    [-1, -100, [0, -5], 2.5, [1.0, np.nan], True, "12", pd.Series([1, None], dtype="Int64")],
    ids=["neg", "validation", "neg-in-array", "frac", "nan", "bool", "str", "na"],
)
def test_sequence_to_batch_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        sequence_to_batch(bad)


def test_negative_index_message_mentions_validation() -> None:
    with pytest.raises(ValueError, match="never-treated"):
        sequence_to_cohort(np.array([-100, -101]))


def test_integer_valued_floats_are_accepted() -> None:
    assert sequence_to_batch(np.array([2048.0])).tolist() == [2]


def test_step_to_cohort_rejects_step_zero_and_bad_macro_batch() -> None:
    with pytest.raises(ValueError, match="step must be >= 1"):
        step_to_cohort(0)
    with pytest.raises(ValueError, match="macro_batch"):
        step_to_cohort(5, macro_batch=0)
    assert step_to_cohort([1, 10, 11], macro_batch=10).tolist() == [10, 10, 20]


def test_epoch_cutoff_raise_and_na() -> None:
    last_in = 1024 * 95_000 - 1  # batch 94_999, step 95_000
    first_out = 1024 * 95_000  # batch 95_000, step 95_001
    assert sequence_to_cohort(last_in) == 95_000
    with pytest.raises(ValueError, match="epoch_cutoff=95000"):
        sequence_to_cohort([last_in, first_out])
    out = sequence_to_cohort([0, last_in, first_out], beyond="na")
    assert isinstance(out, pd.arrays.IntegerArray)
    assert out.dtype == "Int64"
    assert out.tolist() == [1000, 95_000, pd.NA]
    assert sequence_to_cohort(first_out, beyond="na") is pd.NA
    # "na" returns Int64 even when nothing is beyond the cut-off (type depends on the flag only)
    assert sequence_to_cohort([0], beyond="na").dtype == "Int64"


def test_epoch_cutoff_disabled_or_moved() -> None:
    first_out = 1024 * 95_000
    assert sequence_to_cohort(first_out, epoch_cutoff=None) == 96_000
    assert sequence_to_cohort(first_out, epoch_cutoff=98_000) == 96_000
    last = 1024 * PYTHIA_TOTAL_STEPS - 1
    assert sequence_to_cohort(last, epoch_cutoff=None) == 143_000


def test_beyond_must_be_known() -> None:
    with pytest.raises(ValueError, match="beyond='drop'"):
        sequence_to_cohort([0], beyond="drop")  # type: ignore[arg-type]


def test_checkpoint_steps() -> None:
    full = pythia_checkpoint_steps()
    grid = pythia_checkpoint_steps(include_log_spaced=False)
    assert full.size == 154
    assert grid.size == 144
    assert full.dtype == grid.dtype == np.int64
    assert full[:12].tolist() == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert full[-1] == grid[-1] == 143_000
    assert grid.tolist() == list(range(0, 143_001, 1000))
    assert (np.diff(full) > 0).all()
    assert set(grid) <= set(full)


def test_deduped_epoch_boundary() -> None:
    b = deduped_epoch_boundary()
    # README: 299,892,736,000 tokens = 143,000 steps x 2,097,152 (1,024 x 2,048 new tokens)
    assert b == pytest.approx(207e9 / (2048 * 1024))
    assert 98_700 < b < 98_710
    assert b > PAPER_EPOCH_CUTOFF
    assert deduped_epoch_boundary(tokens=2048 * 1024 * 10) == pytest.approx(10.0)


def test_module_is_a_submodule_not_reexported() -> None:
    import causalmem.panel as panel

    assert panel.pythia is pythia
    assert "pythia" not in panel.__all__
