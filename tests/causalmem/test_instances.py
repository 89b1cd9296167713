"""Instance sampling, validation packing and token indexes (Pythia's .bin/.idx, numpy)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causalmem.instances import (
    Instances,
    MMapIndexedDataset,
    NumpyTokenIndex,
    macro_batches,
    open_token_index,
    pack_documents,
    sample_macro_batches,
    training_instances,
    validation_instances,
    write_indexed_dataset,
)
from causalmem.panel.pythia import sequence_to_cohort


def test_pack_documents_without_eos_drops_remainder() -> None:
    docs = [np.array([1, 2, 3]), np.array([4, 5]), np.array([6, 7, 8, 9, 10])]
    out = pack_documents(docs, seq_len=3)
    assert out.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]  # 10 dropped, no separator
    with_eos = pack_documents(docs, seq_len=4, eos_id=0)
    assert with_eos.tolist() == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 10]]
    assert pack_documents([], seq_len=4).shape == (0, 4)
    with pytest.raises(ValueError):
        pack_documents(docs, seq_len=1)


def test_indexed_dataset_round_trip_and_byte_layout(tmp_path: Path) -> None:
    seqs = [np.array([5, 6, 7]), np.array([65535, 0]), np.array([1, 2, 3, 4])]
    prefix = write_indexed_dataset(tmp_path / "document", seqs, dtype=np.uint16)
    ds = MMapIndexedDataset(prefix)
    assert len(ds) == 3 and ds.dtype == np.uint16
    assert [ds[i].tolist() for i in range(3)] == [s.tolist() for s in seqs]
    assert ds[-1].tolist() == [1, 2, 3, 4] and ds.get(2, 1, 2).tolist() == [2, 3]
    with pytest.raises(IndexError):
        ds[3]
    # the header as GPT-NeoX / Megatron write it
    raw = (tmp_path / "document.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    assert struct.unpack("<Q", raw[9:17]) == (1,)
    assert raw[17] == 8  # dtype code of uint16
    assert struct.unpack("<QQ", raw[18:34]) == (3, 4)
    sizes = np.frombuffer(raw, np.int32, 3, 34)
    pointers = np.frombuffer(raw, np.int64, 3, 34 + 12)
    assert sizes.tolist() == [3, 2, 4] and pointers.tolist() == [0, 6, 10]
    assert (tmp_path / "document.bin").stat().st_size == 2 * 9
    # .bin / .idx suffixes are accepted; no temporary files remain
    assert len(MMapIndexedDataset(tmp_path / "document.bin")) == 3
    assert len(open_token_index(tmp_path / "document.idx")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["document.bin", "document.idx"]
    with pytest.raises(ValueError, match="fit"):
        write_indexed_dataset(tmp_path / "bad", [np.array([70000])], dtype=np.uint16)


def test_bad_index_magic(tmp_path: Path) -> None:
    (tmp_path / "x.idx").write_bytes(b"TNTIDX\x00\x00" + b"\x00" * 40)
    (tmp_path / "x.bin").write_bytes(b"\x00" * 4)
    with pytest.raises(ValueError, match="not a Megatron"):
        MMapIndexedDataset(tmp_path / "x")


def test_numpy_token_index(tmp_path: Path) -> None:
    flat = np.arange(23, dtype=np.int32)
    np.save(tmp_path / "tokens.npy", flat)
    idx = open_token_index(tmp_path / "tokens.npy", seq_len=5)
    assert len(idx) == 4 and idx[3].tolist() == [15, 16, 17, 18, 19]
    two_d = NumpyTokenIndex(np.arange(12).reshape(3, 4))
    assert two_d[2].tolist() == [8, 9, 10, 11]
    with pytest.raises(ValueError):
        NumpyTokenIndex(np.arange(10))
    with pytest.raises(ValueError):
        NumpyTokenIndex(np.zeros((2, 3), dtype=float))


def test_macro_batches_convention() -> None:
    mb = macro_batches([0, 1, 2, 4, 50, 100])
    assert mb["cohort"].tolist() == [1, 2, 4, 50, 100]
    assert mb["base"].tolist() == [0, 1, 2, 4, 50]
    assert mb["first_batch"].tolist() == [0, 1, 2, 4, 50]
    assert mb["last_batch"].tolist() == [0, 1, 3, 49, 99]


def test_sample_macro_batches_pythia_style() -> None:
    steps = [0, 1, 2, 4, 8, 10, 20, 30]
    s = sample_macro_batches(steps, batch_size=8, k=3, m=2, seed=1994)
    sizes = s.groupby("cohort").size().to_dict()
    # fewer batches than k in the early macro-batches: all of them; m sequences each
    assert sizes == {1: 2, 2: 2, 4: 4, 8: 6, 10: 4, 20: 6, 30: 6}
    assert s["seq_idx"].is_unique and s["seq_idx"].is_monotonic_increasing
    # each sequence's cohort is the first checkpoint at or after the step that consumed it
    assert (s["batch"] == s["seq_idx"] // 8).all() and (s["step"] == s["batch"] + 1).all()
    grid = np.array(sorted(set(steps)))
    expected = grid[np.searchsorted(grid, s["step"].to_numpy(), side="left")]
    np.testing.assert_array_equal(s["cohort"], expected)
    assert ((s["step"] > s["base"]) & (s["step"] <= s["cohort"])).all()
    # k distinct batches per macro-batch, m distinct sequences per batch
    per = s[s["cohort"] == 30].groupby("batch").size()
    assert len(per) == 3 and (per == 2).all()
    # deterministic, and a cohort's draw does not depend on the other cohorts
    again = sample_macro_batches(steps, batch_size=8, k=3, m=2, seed=1994)
    pd.testing.assert_frame_equal(s, again)
    only = sample_macro_batches(steps, batch_size=8, k=3, m=2, seed=1994, cohorts=[20])
    pd.testing.assert_frame_equal(
        only.reset_index(drop=True), s[s["cohort"] == 20].reset_index(drop=True)
    )
    assert not sample_macro_batches(steps, 8, k=3, m=2, seed=1).equals(s)


def test_sampling_agrees_with_the_pythia_mapping_on_a_regular_grid() -> None:
    s = sample_macro_batches(np.arange(0, 5001, 1000), batch_size=1024, k=10, m=10, seed=1994)
    assert len(s) == 5 * 100
    coh = sequence_to_cohort(s["seq_idx"].to_numpy(), epoch_cutoff=None)
    np.testing.assert_array_equal(coh, s["cohort"])


def test_sampling_errors() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        sample_macro_batches([0, 10], batch_size=4, m=5)
    with pytest.raises(ValueError, match="not checkpoint"):
        sample_macro_batches([0, 10], batch_size=4, m=2, cohorts=[5])


def test_training_and_validation_instances(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    order = rng.integers(0, 500, size=(40 * 4, 6))
    prefix = write_indexed_dataset(tmp_path / "train", order, dtype=np.uint16)
    s = sample_macro_batches([0, 10, 20, 40], batch_size=4, k=2, m=2, seed=3)
    tr = training_instances(MMapIndexedDataset(prefix), s)
    np.testing.assert_array_equal(tr.tokens, order[s["seq_idx"].to_numpy()])
    np.testing.assert_array_equal(tr.unit, s["seq_idx"])
    assert tr.cohort.tolist() == s["cohort"].tolist()
    assert set(tr.info["split"]) == {"train"}
    held = rng.integers(0, 500, size=(30, 6))
    va = validation_instances(held, 10, seed=1234)
    assert va.n == 10 and va.never.all()
    np.testing.assert_array_equal(va.tokens, held[va.info["chunk"].to_numpy()])
    assert (va.unit < 0).all()
    both = Instances.concat([tr, va])
    assert both.n == tr.n + 10 and both.never.sum() == 10
    frame = both.to_frame()
    assert list(frame.columns[:3]) == ["unit", "cohort", "length"]
    assert both.fingerprint() == Instances.concat([tr, va]).fingerprint()
    assert both.fingerprint() != Instances.concat([va, tr]).fingerprint()
    with pytest.raises(ValueError, match="overlap"):
        Instances.concat([tr, tr])


def test_instances_are_immutable_copies() -> None:
    tok = np.arange(12).reshape(3, 4)
    ins = Instances.from_arrays(tok, [1, 2, 3], [4, None, 8])
    tok[0, 0] = 99
    assert ins.tokens[0, 0] == 0  # copied
    with pytest.raises(ValueError):
        ins.tokens[0, 0] = 5  # read-only
    sub = ins.take(np.array([True, False, True]))
    assert sub.unit.tolist() == [1, 3] and sub.cohort.tolist() == [4, 8]
    ragged = Instances.from_arrays([[1, 2, 3], [4, 5]], [0, 1], [None, None], pad_id=7)
    assert ragged.lengths.tolist() == [3, 2] and ragged.tokens[1].tolist() == [4, 5, 7]
    with pytest.raises(ValueError, match="distinct"):
        Instances.from_arrays(tok, [1, 1, 2], [None] * 3)
    with pytest.raises(ValueError, match="at least 2"):
        Instances.from_arrays([[1], [2, 3]], [0, 1], [None, None])
    with pytest.raises(ValueError, match="non-negative"):
        Instances.from_arrays(tok, [1, 2, 3], [-1, None, None])
