"""Two-exposure mapping of Pythia-deduped.

Reference numbers come from the EleutherAI/pythia README (recorded in
``PYTHIA_EPOCH_PROVENANCE``): 299,892,736,000 tokens in 143 000 steps (2,097,152 per step) and
207B tokens per deduped epoch; expected steps are computed by hand below.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causalmem.panel.pythia_epochs import (
    PYTHIA_EPOCH_PROVENANCE,
    PYTHIA_TOKENS_PER_STEP,
    PYTHIA_TOTAL_TOKENS,
    deduped_epoch_sequences,
    deduped_epoch_steps,
    second_exposure,
    two_exposure_panel,
    verify_repeat,
)


def test_readme_token_arithmetic() -> None:
    assert PYTHIA_TOKENS_PER_STEP == 2_097_152  # README: checkpoints every 2,097,152,000 tokens
    assert PYTHIA_TOTAL_TOKENS == 143_000 * PYTHIA_TOKENS_PER_STEP  # README: 299,892,736,000
    assert deduped_epoch_sequences() == 207_000_000_000 // 2048 == 101_074_218
    assert deduped_epoch_steps() == pytest.approx(98_705.29, abs=0.01)  # 207e9 / 2,097,152
    assert "#144" in PYTHIA_EPOCH_PROVENANCE["second_pass_order"]


def test_second_exposure_by_hand() -> None:
    n = deduped_epoch_sequences()
    pos = np.array([0, 1023, 1024, 45_357_781, 45_357_782, n - 1, n, n + 5])
    m = second_exposure(pos)
    total = 143_000 * 1024  # 146,432,000 sequences; repeated first-pass positions < total - n
    assert (total - n) == 45_357_782
    assert m["pos1"].tolist() == [0, 1023, 1024, 45_357_781, 45_357_782, n - 1, 0, 5]
    assert m["step1"].tolist()[:3] == [1, 1, 2]
    assert m["cohort"].tolist()[:3] == [1000, 1000, 1000]
    # position 0 repeats at n = 101,074,218 -> batch 98,705 -> step 98,706 -> cohort 99,000
    assert m.loc[0, "pos2"] == n and m.loc[0, "step2"] == 98_706 and m.loc[0, "cohort2"] == 99_000
    # the last repeated first-pass position is total - n - 1, trained again at the last step
    assert m.loc[3, "step2"] == 143_000 and m.loc[3, "cohort2"] == 143_000
    missing = m["cohort2"].isna()
    assert m.loc[4, "pos2"] == -1 and missing.iloc[4]
    assert missing.iloc[5]
    # a second-pass position maps back to its first pass
    assert m.loc[6, "pos2"] == n and m.loc[7, "step2"] == 98_706


def test_two_exposure_panel_is_estimator_ready() -> None:
    n = 100_000_000  # 1.46 passes; values by hand below
    frame = pd.DataFrame(
        {"unit": [1, 2, 3], "step": [1000, 1000, 1000], "seq_idx": [0, 130_000_000, -101]}
    )
    out = two_exposure_panel(frame, n_epoch_sequences=n)
    assert "cohort" not in frame.columns  # not modified
    # 0: step 1 (cohort 1000), again at 100,000,000 -> batch 97,656 -> step 97,657 -> 98,000
    # 130,000,000 is the repeat of 30,000,000: batch 29,296 -> step 29,297 -> cohort 30,000;
    # its second exposure: batch 126,953 -> step 126,954 -> cohort 127,000
    assert out["cohort"].tolist()[:2] == [1000.0, 30_000.0]
    assert out["cohort2"].tolist()[:2] == [98_000.0, 127_000.0]
    assert np.isnan(out["cohort"].iloc[2]) and np.isnan(out["cohort2"].iloc[2])
    with pytest.raises(ValueError, match="already has"):
        two_exposure_panel(out, n_epoch_sequences=n)
    with pytest.raises(KeyError):
        two_exposure_panel(frame.drop(columns="seq_idx"))
    with pytest.raises(ValueError, match="two passes"):
        second_exposure([130_000_000], n_epoch_sequences=1_000_000)


def test_bad_positions_are_refused() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        second_exposure([-1])
    with pytest.raises(ValueError, match="integer"):
        second_exposure([np.nan])
    with pytest.raises(ValueError, match="beyond"):
        second_exposure([143_000 * 1024])


def test_verify_repeat_on_a_toy_index() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 100, size=(10, 4))
    order = np.concatenate([first, first[:5]])  # 1.5 epochs, same order
    res = verify_repeat(order, [0, 3, 4], n_epoch_sequences=10)
    assert res["same"].all()
    shuffled = np.concatenate([first, first[[1, 0, 2, 3, 4]]])
    assert not verify_repeat(shuffled, [0, 1], n_epoch_sequences=10)["same"].any()
