"""Training orders (numpy, Megatron index, Pythia's byte pieces, lab runs) and instance tables.

Expected values are derived by hand from the conventions of :mod:`causalmem.panel.pythia`
(position ``i`` is trained by step ``i // batch + 1``; cohort = first checkpoint at or after).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from causalmem.instances import (
    Instances,
    MMapIndexedDataset,
    TokenIndex,
    write_indexed_dataset,
)
from causalmem.scoring.sampling import (
    ShardedIndexedDataset,
    file_provenance,
    open_order,
    read_instance_table,
    sample_training,
    sample_validation,
    write_instance_table,
)


def _pieces(root: Path, seqs: np.ndarray, cuts: list[int]) -> Path:
    """Write a .bin/.idx, then split the .bin into byte pieces as EleutherAI publishes it."""
    (root / "full").mkdir()
    write_indexed_dataset(root / "full" / "document", seqs, dtype=np.uint16)
    raw = (root / "full" / "document.bin").read_bytes()
    bounds = [0, *cuts, len(raw)]
    d = root / "pieces"
    d.mkdir()
    last = len(bounds) - 2
    for i in range(len(bounds) - 1):
        (d / f"document-{i:05d}-of-{last:05d}.bin").write_bytes(raw[bounds[i] : bounds[i + 1]])
    shutil.copy(root / "full" / "document.idx", d / "document.idx")
    return d / "document-00000-of-00003.bin"


def test_pythia_byte_pieces_read_like_the_merged_file(tmp_path: Path) -> None:
    seqs = np.random.default_rng(0).integers(0, 50_000, (40, 7))
    first = _pieces(tmp_path, seqs, [100, 101, 333])  # sequences straddle every boundary
    ds = open_order(first)
    assert isinstance(ds, ShardedIndexedDataset) and len(ds) == 40
    merged = MMapIndexedDataset(tmp_path / "full" / "document")
    for i in range(40):
        np.testing.assert_array_equal(ds[i], seqs[i])
        np.testing.assert_array_equal(merged[i], seqs[i])
    assert ds[-1].tolist() == seqs[-1].tolist()
    (first.parent / "document-00003-of-00003.bin").unlink()
    with pytest.raises(FileNotFoundError, match="download every piece"):
        open_order(first)


def test_sampled_positions_cohorts_and_tokens(tmp_path: Path) -> None:
    order = np.arange(24 * 5).reshape(24, 5)  # sequence i = [5i, …, 5i + 4]
    ins = sample_training(open_order_from(order, tmp_path), [0, 1, 2, 4, 6], 4, k=2, m=3, seed=9)
    seq = ins.info["seq_idx"].to_numpy()
    np.testing.assert_array_equal(ins.tokens[:, 0], 5 * seq)
    step = seq // 4 + 1
    expect = np.select([step <= 1, step <= 2, step <= 4], [1, 2, 4], 6)
    np.testing.assert_array_equal(ins.cohort.to_numpy(int), expect)
    assert np.bincount(expect)[[1, 2, 4, 6]].tolist() == [3, 3, 6, 6]
    cut = sample_training(open_order_from(order, tmp_path), [0, 1, 2, 4, 6], 4, k=2, m=3,
                          epoch_cutoff=4)  # fmt: skip
    assert set(cut.cohort.tolist()) == {1, 2, 4}
    with pytest.raises(ValueError, match="needs sequence"):
        sample_training(open_order_from(order, tmp_path), [0, 10], 4, k=1, m=1)


def open_order_from(arr: np.ndarray, root: Path) -> TokenIndex:
    np.save(root / "order.npy", arr)
    return open_order(root / "order.npy")


def test_instance_table_round_trip_and_tamper_check(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tr = Instances.from_arrays(rng.integers(0, 70_000, (4, 6)), [0, 1, 2, 3], [5, 5, 10, 10])
    va = sample_validation(rng.integers(0, 70_000, (9, 8)), 3, seed=2, seq_len=6)
    assert va.seq_len == 6 and va.never.all()
    ins = Instances.concat([tr, va])
    path = write_instance_table(tmp_path / "t.parquet", ins, {"seed": 2, "fingerprint": "x"})
    back, meta = read_instance_table(path)
    assert back.fingerprint() == ins.fingerprint() == meta["fingerprint"]  # not overridable
    np.testing.assert_array_equal(back.tokens, ins.tokens)
    assert back.cohort.tolist() == ins.cohort.tolist() and meta["seed"] == 2
    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.loc[0, "cohort"] = 10
    import pyarrow as pa

    pq.write_table(pa.Table.from_pandas(frame).replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(ValueError, match="fingerprint mismatch"):
        read_instance_table(path)


def test_file_provenance_hashes_small_files_fully_large_ones_by_head_and_tail(
    tmp_path: Path,
) -> None:
    import hashlib

    f = tmp_path / "blob"
    data = np.random.default_rng(0).bytes(3 << 20)
    f.write_bytes(data)
    full = file_provenance([f])[0]
    assert full["sha256"] == hashlib.sha256(data).hexdigest() and full["size"] == 3 << 20
    part = file_provenance([f], full_hash_limit=1 << 20)[0]
    want = hashlib.sha256(data[: 1 << 20] + data[-(1 << 20) :]).hexdigest()
    assert part["sha256_head_tail"] == want


def test_cli_samples_a_lab_run(tmp_path: Path) -> None:
    from causalmem.cli import app

    run = tmp_path / "lab"
    (run / "data").mkdir(parents=True)
    order = np.random.default_rng(3).integers(0, 300, (6 * 8, 10))
    write_indexed_dataset(run / "data" / "train", order, dtype=np.uint16)
    np.save(run / "data" / "validation.npy", np.random.default_rng(4).integers(0, 300, (20, 10)))
    for s in (0, 1, 2, 4, 6):
        (run / "checkpoints" / f"step{s}").mkdir(parents=True)
        (run / "checkpoints" / f"step{s}" / "config.json").write_text("{}")
    (run / "run.json").write_text(json.dumps({"config": {"batch_size": 8}}))
    res = CliRunner().invoke(
        app,
        ["sample", str(tmp_path / "i.parquet"), "--lab-run", str(run), "--k", "1", "--m", "2",
         "--n-validation", "5"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    ins, prov = read_instance_table(tmp_path / "i.parquet")
    assert prov["source"] == "lab" and prov["batch_size"] == 8
    assert prov["checkpoint_steps"] == [0, 1, 2, 4, 6]
    train = ins.info["split"].eq("train").to_numpy()
    np.testing.assert_array_equal(ins.tokens[train], order[ins.info["seq_idx"][train].astype(int)])
    assert [f["path"].rsplit("/", 1)[-1] for f in prov["files"]["order"]] == [
        "train.idx",
        "train.bin",
    ]
    assert int(ins.never.sum()) == 5
