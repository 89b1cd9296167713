"""Multi-epoch lab runs (recorded repeat order) and the re-exposure ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from causalmem.estimators.reexposure import reexposure_att  # noqa: E402
from causalmem.lab.config import LabConfig  # noqa: E402
from causalmem.lab.ground_truth import (  # noqa: E402
    ReexposureTruth,
    reexposure_ground_truth,
    swap_instances,
)
from causalmem.lab.train import TrainConfig, exposures, prepare_data  # noqa: E402
from lmecon.result import check_result  # noqa: E402
from tests.causalmem.builders import synthetic_text  # noqa: E402

# 20 steps x 4 sequences over 2 epochs: 40 unique chunks, epoch 1 = steps 1-10, epoch 2 =
# steps 11-20; analysed grid 0, 5, 10, 15, 20: first cohorts 5, 10; second cohorts 15, 20.
TINY: dict[str, Any] = {
    "vocab_size": 300,
    "n_layer": 1,
    "d_model": 32,
    "n_head": 2,
    "seq_len": 16,
    "batch_size": 4,
    "steps": 20,
    "lr": 1e-2,
    "checkpoint_every": 5,
    "log_spaced_until": 4,
    "n_heldout": 16,
    "n_validation": 16,
    "k": 2,
    "m": 2,
    "scoring_batch_size": 16,
    "seed": 5,
    "model_seed": 3,
    "epochs": 2.0,
}


def _docs(n: int = 3000, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 5000, size=int(rng.integers(20, 80))) for _ in range(n // 10)]


def test_one_epoch_split_is_unchanged_by_the_new_arguments() -> None:
    cfg = TrainConfig(steps=10, batch_size=4, seq_len=8)
    a = prepare_data(_docs(), cfg, n_validation=5, seed=1)
    b = prepare_data(_docs(), cfg, n_validation=5, seed=1, epochs=1, epoch_seed=99)
    assert a.fingerprint() == b.fingerprint()
    assert a.sequence_id is None and b.sequence_id is None


@pytest.mark.parametrize("epochs", [2.0, 1.5])
def test_multi_epoch_order_repeats_each_chunk_in_a_seeded_reshuffle(epochs: float) -> None:
    cfg = TrainConfig(steps=12, batch_size=4, seq_len=8)
    d = prepare_data(_docs(), cfg, n_validation=5, seed=1, epochs=epochs)
    n_unique = int(round(48 / epochs))
    ids = d.sequence_id
    assert ids is not None and ids.size == 48 and d.train.shape[0] == 48
    np.testing.assert_array_equal(ids[:n_unique], np.arange(n_unique))
    # the order trains the chunk its id names; the repeats are a permutation (no repeat twice)
    np.testing.assert_array_equal(d.train, d.train[:n_unique][ids])
    rest = ids[n_unique:]
    assert np.unique(rest).size == rest.size == 48 - n_unique
    assert not np.array_equal(rest, np.arange(rest.size))
    again = prepare_data(_docs(), cfg, n_validation=5, seed=1, epochs=epochs)
    np.testing.assert_array_equal(again.sequence_id, ids)  # seeded
    other = prepare_data(_docs(), cfg, n_validation=5, seed=1, epochs=epochs, epoch_seed=7)
    assert other.sequence_id is not None
    assert not np.array_equal(other.sequence_id, ids)
    np.testing.assert_array_equal(other.train[:n_unique], d.train[:n_unique])
    ex = exposures(ids, 4)
    assert len(ex) == n_unique
    assert (ex["n_exposures"] == 2).sum() == 48 - n_unique
    twice = ex[ex["n_exposures"] == 2]
    np.testing.assert_array_equal(ids[twice["pos2"].to_numpy()], twice["sequence_id"].to_numpy())
    assert (twice["step2"] == twice["pos2"] // 4 + 1).all()
    assert (ex.loc[ex["n_exposures"] == 1, "pos2"] == -1).all()
    # swapping the second occurrences marks them as fillers
    b, _ = swap_instances(d, twice["pos2"].to_numpy()[:3])
    assert b.sequence_id is not None and (b.sequence_id[twice["pos2"].to_numpy()[:3]] == -1).all()
    assert exposures(b.sequence_id, 4)["n_exposures"].eq(2).sum() == 48 - n_unique - 3


def test_epochs_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="epochs"):
        LabConfig(epochs=0.5)
    with pytest.raises(ValueError, match="epochs"):
        prepare_data(_docs(), TrainConfig(steps=4, batch_size=2), n_validation=2, epochs=0.9)


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> ReexposureTruth:
    text = tmp_path_factory.mktemp("corpus") / "text.txt"
    text.write_text(synthetic_text(600))
    cfg = LabConfig(corpus=str(text), **TINY)
    return reexposure_ground_truth(tmp_path_factory.mktemp("gt") / "re", cfg)


def test_reexposure_truth_design_and_checks(truth: ReexposureTruth) -> None:
    check_result(truth)
    s = truth.sample
    assert sorted(s["cohort"].unique().tolist()) == [5, 10]  # first-epoch macro-batches
    assert np.isfinite(s["cohort2"]).all()  # two full epochs: every instance is repeated
    assert set(s["cohort2"].unique()) <= {15.0, 20.0}
    assert (s["step2"] > 10).all() and (s["pos2"] >= 40).all()
    # runs A and B identical up to the first swapped (second-epoch) batch, different after
    first = truth.first_swap_step
    assert first is not None and first > 10
    c = truth.checks
    assert c.loc[c["step"] < first, "identical"].all()
    assert not c.loc[c["step"] >= first, "identical"].any()
    # the truth is the mean difference of the scores; zero before the second exposure
    t = truth.tidy()
    a = truth.frame.set_index(["unit", "step"]).sort_index()
    b = truth.counterfactual.set_index(["unit", "step"]).sort_index()
    d = (a["logprob"] - b["logprob"]).rename("d").reset_index()
    d = d.merge(truth.sample[["seq_idx", "cohort", "cohort2"]], left_on="unit", right_on="seq_idx")
    ref = d.groupby(["cohort", "cohort2", "step"])["d"].mean()
    got = t.set_index(["g1", "g2", "time"])["estimate"]
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-12)
    assert np.allclose(t.loc[t["time"] < first, "estimate"], 0.0)
    inst = t[t["event_period"] == 0]
    assert inst["estimate"].mean() > 0  # re-memorisation raises log p(x) on average
    assert "Re-exposure ground truth" in truth.summary()


def test_estimator_runs_on_the_lab_panel(truth: ReexposureTruth) -> None:
    res = reexposure_att(truth.frame, "logprob", bstrap=False)
    m = res.tidy().merge(truth.tidy(), on=["g1", "g2", "time"], suffixes=("", "_true"))
    assert len(m) == len(res.tidy())
    assert pd.Series(m["phase"] == m["phase_true"]).all()
    assert np.isfinite(m.loc[m["phase"] == "post", "estimate"]).any()


def test_validation_workflow_scores_estimates_against_the_truth(truth: ReexposureTruth) -> None:
    from causalmem.workflows.reexposure_validation import compare_replicate, reexposure_metrics

    comp = compare_replicate(truth, estimators=["notyet"], replicate=5)
    cells = comp[comp["level"] == "cell"]
    t = truth.tidy().set_index(["g1", "g2", "time"])["estimate"]
    key = pd.MultiIndex.from_frame(cells[["g1", "g2", "time"]])
    np.testing.assert_allclose(cells["truth"].to_numpy(), t.reindex(key).to_numpy())
    half = (cells["conf_high"] - cells["conf_low"]) / 2
    np.testing.assert_allclose(half / cells["std_error"], 1.959964, rtol=1e-5)
    m = reexposure_metrics(comp)
    post = m[(m["level"] == "cell") & (m["period"] == "post")].iloc[0]
    err = (
        cells.loc[cells["phase"] == "post", "estimate"]
        - cells.loc[cells["phase"] == "post", "truth"]
    )
    assert post["bias"] == pytest.approx(float(err.mean()))
    assert 0 <= post["coverage"] <= 1


def test_removing_both_exposures_gives_the_combined_truth(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    text = tmp_path_factory.mktemp("corpus_both") / "text.txt"
    text.write_text(synthetic_text(600))
    cfg = LabConfig(corpus=str(text), **{**TINY, "epochs": 1.5})
    both = reexposure_ground_truth(tmp_path_factory.mktemp("gt") / "both", cfg, remove="both")
    s = both.sample
    assert np.isnan(s["cohort2"]).any() and np.isfinite(s["cohort2"]).any()  # 1.5 epochs
    # the first swapped batch is a first-epoch one: the first sampled position's step
    assert both.first_swap_step == int(s["seq_idx"].min() // cfg.batch_size + 1)
    t = both.tidy()
    assert t["g2"].isna().any()  # once-trained groups carry the first-exposure truth
    once = t[t["g2"].isna() & (t["time"] >= t["g1"])]
    assert once["estimate"].mean() > 0
    with pytest.raises(ValueError, match="remove="):
        reexposure_ground_truth(tmp_path_factory.mktemp("gt") / "bad", cfg, remove="first")
    with pytest.raises(ValueError, match="reexposure_ground_truth"):
        from causalmem.lab.ground_truth import ground_truth

        ground_truth(tmp_path_factory.mktemp("gt") / "first", cfg)
    with pytest.raises(ValueError, match="multi-epoch"):
        reexposure_ground_truth(
            tmp_path_factory.mktemp("gt") / "one",
            LabConfig(corpus=str(text), **{**TINY, "epochs": 1}),
        )
