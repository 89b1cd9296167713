"""Ground truth by counterfactual retraining: paired tiny lab runs A/B and the true τ(g, c)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from causalmem.errors import GroundTruthError  # noqa: E402
from causalmem.lab.config import LabConfig  # noqa: E402
from causalmem.lab.ground_truth import (  # noqa: E402
    GroundTruth,
    event_path_truth,
    ground_truth,
    swap_instances,
    truth_from_scores,
)
from causalmem.lab.train import LabData  # noqa: E402
from causalmem.scoring.checkpoints import Checkpoint, load_causal_lm, weights_hash  # noqa: E402
from tests.causalmem.builders import synthetic_text  # noqa: E402

# The module itself (``causalmem.lab.ground_truth`` is the exported function).
gt_mod = importlib.import_module("causalmem.lab.ground_truth")

# 20 steps × 4 sequences, checkpoints 0, 1, 2, 4, 5, 10, 15, 20; cohorts 5, 10, 15, 20 of
# k × m = 2 × 2 sampled instances; 16 never-trained chunks. Each run trains in well under 1 s.
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
}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> LabConfig:
    text = tmp_path_factory.mktemp("corpus") / "text.txt"
    text.write_text(synthetic_text(400))
    return LabConfig(corpus=str(text), **TINY)


@pytest.fixture(scope="module")
def partial(cfg: LabConfig, tmp_path_factory: pytest.TempPathFactory) -> GroundTruth:
    """Swap only cohorts 10 and 15: checkpoints 0 … 5 must be identical."""
    return ground_truth(tmp_path_factory.mktemp("gt") / "partial", cfg, swap_cohorts=[10, 15])


def _ckpt(root: Path, step: int) -> Any:
    return load_causal_lm(Checkpoint(str(root / "checkpoints" / f"step{step}"), None, step))


def test_truth_is_the_mean_difference_of_scored_outcomes(partial: GroundTruth) -> None:
    a = partial.panel.frame.set_index(["unit", "step"]).sort_index()
    b = partial.counterfactual.frame.set_index(["unit", "step"]).sort_index()
    assert a.index.equals(b.index)
    diff = (a["logprob"] - b["logprob"]).rename("d").reset_index()
    diff["cohort"] = a["cohort"].to_numpy()
    treated = diff[diff["cohort"].notna()]
    truth = partial.tidy()
    assert len(truth) == 4 * len(partial.analysis_steps)  # 4 cohorts × 5 checkpoints
    for r in truth.itertuples(index=False):
        d = treated[(treated["cohort"] == r.group) & (treated["step"] == r.time)]["d"]
        assert r.n == len(d) == 4
        assert r.estimate == pytest.approx(d.mean(), abs=1e-12)
        assert r.std_error == pytest.approx(d.std(ddof=1) / 2.0, abs=1e-12)
    # surprisal is the other sign: memorisation = -(Y^A - Y^B) of sup_seq
    sup = partial.tidy("sup_seq")
    s = (-(a["sup_seq"] - b["sup_seq"])).reset_index()
    s["cohort"] = a["cohort"].to_numpy()
    hand = s[s["cohort"] == 10].groupby("step")["sup_seq"].mean()
    np.testing.assert_allclose(sup[sup["group"] == 10]["estimate"], hand.to_numpy(), atol=1e-12)
    # never-trained instances give the control shift; the adjusted truth subtracts it
    ctrl = diff[diff["cohort"].isna()].groupby("step")["d"].mean()
    cs = partial.control_shift.query("outcome == 'logprob'").set_index("time")["estimate"]
    np.testing.assert_allclose(cs.to_numpy(), ctrl.to_numpy(), atol=1e-12)
    np.testing.assert_allclose(
        truth["estimate_adjusted"], truth["estimate"] - truth["time"].map(ctrl), atol=1e-12
    )


def test_runs_identical_before_first_swap_and_different_after(partial: GroundTruth) -> None:
    sw = partial.swapped
    assert set(sw["cohort"]) == {10, 15} and len(sw) == 8
    first = partial.first_swap_step
    assert first == int(sw["step"].min()) and 6 <= first <= 10  # cohort 10 = steps 6..10
    run_a = Path(partial.provenance["run_dir_a"])
    run_b = Path(partial.provenance["run_dir_b"])
    # independent re-check of the recorded hashes, on the saved checkpoints
    for s in (0, 1, 2, 4, 5, 10, 15, 20):
        same = weights_hash(_ckpt(run_a, s)) == weights_hash(_ckpt(run_b, s))
        assert same == (s < first), s
    checks = partial.checks.set_index("step")
    assert checks["identical"].tolist() == [s < first for s in checks.index]
    assert (checks["identical"] == checks["expected_identical"]).all()
    hist_a = json.loads((run_a / "run.json").read_text())["history"]
    hist_b = json.loads((run_b / "run.json").read_text())["history"]
    la = [h["loss"] for h in hist_a]
    lb = [h["loss"] for h in hist_b]
    assert la[: first - 1] == lb[: first - 1] and la[first - 1] != lb[first - 1]
    # identical models score identically: the truth is exactly 0 before the first swap
    truth = partial.tidy()
    early = truth[truth["time"] < first]
    assert len(early) and (early["estimate"] == 0).all() and (early["std_error"] == 0).all()
    # run B really trained the reserve chunks at the swapped positions
    from causalmem.instances import MMapIndexedDataset

    order_b = MMapIndexedDataset(run_b / "data" / "train")
    order_a = MMapIndexedDataset(run_a / "data" / "train")
    reserve = np.load(run_a / "data" / "reserve.npy")
    for r in sw.itertuples(index=False):
        np.testing.assert_array_equal(order_b[r.seq_idx], reserve[r.reserve_row])
        assert not np.array_equal(order_a[r.seq_idx], order_b[r.seq_idx])
    untouched = np.setdiff1d(np.arange(len(order_a)), sw["seq_idx"])
    assert all(np.array_equal(order_a[i], order_b[i]) for i in untouched[:40])
    # instantaneous memorisation of the swapped cohorts is positive on average
    inst = truth[(truth["time"] == truth["group"]) & truth["swapped"]]
    assert set(inst["group"]) == {10, 15}
    assert partial.glance()["checks_passed"].item()
    assert partial.provenance["data_fingerprint_a"] != partial.provenance["data_fingerprint_b"]
    assert partial.provenance["model_seed"] == 3 and partial.provenance["data_seed"] == 5


def test_swap_nothing_gives_identical_runs_and_zero_truth(cfg: LabConfig, tmp_path: Path) -> None:
    gt = ground_truth(tmp_path / "none", cfg, swap_cohorts=())
    assert gt.first_swap_step is None and gt.swapped.empty
    assert gt.checks["identical"].all()
    t = gt.tidy()
    assert (t["estimate"] == 0).all() and (t["std_error"] == 0).all() and not t["swapped"].any()
    assert (gt.control_shift["estimate"] == 0).all()
    pd.testing.assert_frame_equal(gt.panel.frame, gt.counterfactual.frame)


def test_rerun_reuses_runs_and_reproduces_truth(
    partial: GroundTruth, cfg: LabConfig, tmp_path: Path
) -> None:
    out = Path(partial.provenance["out_dir"])
    mtime = (out / "A" / "run.json").stat().st_mtime_ns
    again = ground_truth(out, cfg, swap_cohorts=[10, 15])
    assert (out / "A" / "run.json").stat().st_mtime_ns == mtime  # not retrained
    pd.testing.assert_frame_equal(again.tidy(), partial.tidy())
    meta = json.loads((out / "ground_truth.json").read_text())
    assert meta["first_swap_step"] == partial.first_swap_step
    assert meta["swapped"]["seq_idx"] == partial.swapped["seq_idx"].tolist()


def test_non_identical_runs_raise(
    partial: GroundTruth, cfg: LabConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = gt_mod._hashes
    calls = {"n": 0}

    def tampered(run: Any) -> dict[int, str]:
        calls["n"] += 1
        h = real(run)
        return {**h, 0: "x"} if calls["n"] == 2 else h  # run B's step 0 "differs"

    monkeypatch.setattr(gt_mod, "_hashes", tampered)
    with pytest.raises(GroundTruthError, match="differ at checkpoints \\[0\\]"):
        ground_truth(Path(partial.provenance["out_dir"]), cfg, swap_cohorts=[10, 15])


def test_swap_instances_is_pure_and_checks_the_reserve() -> None:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 50, size=(10, 4))
    data = LabData(validation=np.zeros((2, 4), np.int64), train=train, reserve=train[:3] + 100)
    before = data.train.copy()
    b, rows = swap_instances(data, [7, 2])
    np.testing.assert_array_equal(data.train, before)
    np.testing.assert_array_equal(rows, [0, 1])
    np.testing.assert_array_equal(b.train[7], data.reserve[0])
    np.testing.assert_array_equal(b.train[2], data.reserve[1])
    np.testing.assert_array_equal(np.delete(b.train, [2, 7], 0), np.delete(before, [2, 7], 0))
    np.testing.assert_array_equal(b.reserve, data.reserve[2:])
    with pytest.raises(ValueError, match="reserve"):
        swap_instances(data, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="distinct"):
        swap_instances(data, [1, 1])


def test_truth_from_scores_by_hand() -> None:
    # cohort 1: units 0, 1; never: unit -1; steps 0 and 1
    a = pd.DataFrame(
        {
            "unit": [0, 0, 1, 1, -1, -1],
            "step": [0, 1, 0, 1, 0, 1],
            "cohort": pd.array([1, 1, 1, 1, None, None], "Int64"),
            "y": [1.0, 5.0, 2.0, 8.0, 0.0, 1.0],
        }
    )
    b = a.assign(y=[1.0, 2.0, 2.0, 4.0, 0.0, 0.5])
    truth, ctrl = truth_from_scores(a, b, ["y"], [-1], [0, 1], [1])
    t = truth.set_index("time")
    assert t.loc[0, "estimate"] == 0.0
    assert t.loc[1, "estimate"] == pytest.approx(-(3.0 + 4.0) / 2)
    assert t.loc[1, "std_error"] == pytest.approx(np.std([-3.0, -4.0], ddof=1) / np.sqrt(2))
    assert t.loc[1, "event_period"] == 0 and t.loc[0, "event_period"] == -1
    assert ctrl.set_index("time").loc[1, "estimate"] == pytest.approx(-0.5)
    assert t.loc[1, "estimate_adjusted"] == pytest.approx(-3.5 + 0.5)
    path = event_path_truth(truth)
    assert path.set_index("event_period").loc[0, "estimate"] == pytest.approx(-3.5)
    with pytest.raises(ValueError, match="different"):
        truth_from_scores(a, b.assign(step=[0, 2, 0, 1, 0, 1]), ["y"], [1], [0, 1], [1])


def test_shared_pipeline_steps_match_the_lab_layout(partial: GroundTruth, cfg: LabConfig) -> None:
    """The steps shared with the lab demo: tokenizer reuse by fingerprint, grid, instances."""
    from causalmem.lab import _pipeline

    out = Path(partial.provenance["out_dir"])
    corpus, sha = _pipeline.load_documents(cfg, None)
    assert _pipeline.corpus_provenance(corpus, sha) == partial.provenance["corpus"]
    meta = out / "tokenizer" / "causalmem.json"
    assert json.loads(meta.read_text()) == {"corpus_sha256": sha, "vocab_size": cfg.vocab_size}
    mtime = meta.stat().st_mtime_ns
    tokenizer, reused = _pipeline.fit_tokenizer(corpus, sha, cfg.vocab_size, out / "tokenizer")
    assert reused and meta.stat().st_mtime_ns == mtime
    data = _pipeline.split_data(tokenizer, corpus, cfg, cfg.train_config())
    assert data.fingerprint() == partial.provenance["data_fingerprint_a"]
    assert partial.analysis_steps == (0, 5, 10, 15, 20)  # the regular grid, not 1, 2, 4
    _, refit = _pipeline.fit_tokenizer(corpus, "other", cfg.vocab_size, out / "tok_other")
    assert not refit and (out / "tok_other" / "causalmem.json").exists()
