"""The scoring runner end to end on tiny random-init GPT-NeoX checkpoints (save_pretrained)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from causalmem.instances import Instances  # noqa: E402
from causalmem.panel.panel import Panel  # noqa: E402
from causalmem.scoring import runner  # noqa: E402
from causalmem.scoring.checkpoints import (  # noqa: E402
    Checkpoint,
    CheckpointNotFoundError,
    DuplicateWeightsError,
    load_causal_lm,
    local_checkpoints,
    pythia_checkpoints,
    pythia_revisions,
    weights_hash,
)
from causalmem.scoring.metrics import METRICS, sequence_scores  # noqa: E402
from causalmem.scoring.runner import (  # noqa: E402
    ScoreRunMismatchError,
    read_manifest,
    read_scores,
    score,
    scoring_plan,
)
from tests.causalmem.builders import (  # noqa: E402
    SEQ,
    VOCAB,
    make_checkpoints,
    make_instances,
)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> list[Checkpoint]:
    return make_checkpoints(tmp_path_factory.mktemp("ckpts"))


def test_checkpoint_helpers() -> None:
    revs = pythia_revisions()
    assert len(revs) == 154 and revs[:5] == ["step0", "step1", "step2", "step4", "step8"]
    assert revs[10:12] == ["step512", "step1000"] and revs[-1] == "step143000"
    assert len(pythia_revisions(include_log_spaced=False)) == 144
    cks = pythia_checkpoints("EleutherAI/pythia-160m-deduped", steps=[1000, 0])
    assert [(c.revision, c.step) for c in cks] == [("step0", 0), ("step1000", 1000)]
    assert cks[0].label == "EleutherAI/pythia-160m-deduped@step0"
    with pytest.raises(ValueError, match="not published"):
        pythia_checkpoints(steps=[3])
    c = Checkpoint("m", "step42")
    assert Checkpoint.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="infer the step"):
        Checkpoint("some/model", "main")


def test_score_end_to_end_matches_a_direct_forward(ckpts: list[Checkpoint], tmp_path: Path) -> None:
    ins = make_instances()
    panel = score(ckpts, ins, tmp_path / "out", batch_size=4, progress=False)
    assert isinstance(panel, Panel)
    f = panel.frame
    assert len(f) == ins.n * len(ckpts)
    assert sorted(f["step"].unique()) == [0, 5, 10]
    assert set(panel.schema.outcomes) == set(METRICS)
    assert f["cohort"].isna().sum() == 5 * 3
    # compare step 5 with an independent forward pass over all instances at once
    model = load_causal_lm(ckpts[1])
    with torch.inference_mode():
        ids = torch.tensor(ins.tokens)
        ref = sequence_scores(model(input_ids=ids).logits, ids)
    got = f[f["step"] == 5].set_index("unit").loc[ins.unit]
    for name in METRICS:
        np.testing.assert_allclose(got[name].to_numpy(), getattr(ref, name).numpy(), atol=1e-5)
    manifest = read_manifest(tmp_path / "out")
    assert manifest["rows"] == len(f) and manifest["n_shards"] == 3
    rec = manifest["checkpoints"][0]
    assert {"weights_hash", "rows", "checkpoint", "instances", "batch_size"} <= set(rec)
    assert rec["checkpoint"]["revision"] is None and rec["rows"] == ins.n
    assert rec["dtype"] == "float32" and rec["device"] == "cpu"


def test_deterministic_and_batch_size_invariant(ckpts: list[Checkpoint], tmp_path: Path) -> None:
    ins = make_instances()
    a = score(ckpts[:1], ins, tmp_path / "a", batch_size=3, progress=False, as_frame=True)
    b = score(ckpts[:1], ins, tmp_path / "b", batch_size=3, progress=False, as_frame=True)
    c = score(ckpts[:1], ins, tmp_path / "c", batch_size=14, progress=False, as_frame=True)
    pd.testing.assert_frame_equal(a, b)  # bitwise identical reruns
    for name in METRICS:
        np.testing.assert_allclose(a[name], c[name], rtol=1e-5, atol=1e-5)


def test_resume_after_interruption(
    ckpts: list[Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ins = make_instances()
    reference = score(ckpts, ins, tmp_path / "ref", batch_size=4, progress=False).frame

    real = runner.score_checkpoint
    calls: list[int] = []

    def crash_on_third(ck: Checkpoint, *args: object, **kwargs: object) -> object:
        calls.append(int(ck.step or 0))
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while step 10 was scored
        return real(ck, *args, **kwargs)  # type: ignore[arg-type]

    out = tmp_path / "run"
    monkeypatch.setattr(runner, "score_checkpoint", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        score(ckpts, ins, out, batch_size=4, progress=False)
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "step-000000000.parquet",
        "step-000000005.parquet",
    ]
    assert read_manifest(out)["n_shards"] == 2
    # a crash inside the next shard write leaves only a temporary file, never a partial shard
    (out / "shards" / ".step-000000010.parquet.abc.tmp").write_bytes(b"partial")
    monkeypatch.setattr(runner, "score_checkpoint", real)
    calls.clear()
    seen: list[int] = []

    def record(ck: Checkpoint, *args: object, **kwargs: object) -> object:
        seen.append(int(ck.step or 0))
        return real(ck, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "score_checkpoint", record)
    messages: list[str] = []
    resumed = score(ckpts, ins, out, batch_size=4, progress=False, log=messages.append).frame
    assert seen == [10]  # only the unfinished checkpoint is scored again
    assert any("resuming" in m for m in messages)
    pd.testing.assert_frame_equal(resumed, reference)  # nothing lost, nothing duplicated
    assert not [p for p in (out / "shards").iterdir() if p.name.endswith(".tmp")]
    # a finished run is a no-op
    seen.clear()
    again = score(ckpts, ins, out, batch_size=4, progress=False).frame
    assert seen == [] and len(again) == len(reference)


def test_orphan_shard_without_manifest_is_adopted(ckpts: list[Checkpoint], tmp_path: Path) -> None:
    # crash between the shard rename and the manifest update: the shard is complete and kept
    ins = make_instances()
    out = tmp_path / "run"
    full = score(ckpts, ins, out, batch_size=4, progress=False).frame
    (out / "manifest.json").unlink()
    again = score(ckpts, ins, out, batch_size=4, progress=False).frame
    pd.testing.assert_frame_equal(full, again)
    assert json.loads((out / "manifest.json").read_text())["n_shards"] == 3


def test_failed_shard_write_leaves_no_file(
    ckpts: list[Checkpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ins = make_instances()
    out = tmp_path / "run"

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(runner.pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        score(ckpts[:1], ins, out, batch_size=4, progress=False, as_frame=True)
    assert list((out / "shards").iterdir()) == []


def test_duplicate_weights_refused_unless_allowed(ckpts: list[Checkpoint], tmp_path: Path) -> None:
    root = Path(ckpts[-1].model).parent
    dup_root = tmp_path / "dups"
    for s in (0, 5, 10):
        shutil.copytree(root / f"step{s}", dup_root / f"step{s}")
    shutil.copytree(root / "step10", dup_root / "step20")  # Pythia #206-style copy
    cks = list(local_checkpoints(dup_root))
    ins = make_instances()
    out = tmp_path / "out"
    with pytest.raises(DuplicateWeightsError, match="same weights"):
        score(cks, ins, out, batch_size=4, progress=False)
    # the checkpoints before the duplicate are stored; the duplicate is not
    assert sorted(p.name for p in (out / "shards").iterdir()) == [
        "step-000000000.parquet",
        "step-000000005.parquet",
        "step-000000010.parquet",
    ]
    panel = score(cks, ins, out, batch_size=4, progress=False, allow_duplicate_weights=True)
    f = panel.frame
    a = f[f["step"] == 10].set_index("unit")["logprob"]
    b = f[f["step"] == 20].set_index("unit")["logprob"]
    pd.testing.assert_series_equal(a, b)
    with pytest.raises(DuplicateWeightsError):
        read_scores(out)
    hashes = [c["weights_hash"] for c in read_manifest(out)["checkpoints"]]
    assert hashes[2] == hashes[3] != hashes[1] != hashes[0]


def test_weights_hash_is_stable_and_does_not_modify(ckpts: list[Checkpoint]) -> None:
    m = load_causal_lm(ckpts[0])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    h1, h2 = weights_hash(m), weights_hash(m)
    assert h1 == h2 and len(h1) == 64
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    assert weights_hash(load_causal_lm(ckpts[1])) != h1
    assert not m.training and not any(p.requires_grad for p in m.parameters())


def test_scoring_plan_gives_an_unbalanced_panel(ckpts: list[Checkpoint], tmp_path: Path) -> None:
    ins = make_instances()
    plan = scoring_plan(ins, [0, 5, 10], pre_periods=0)
    # cohort 5: base period 0 onwards; cohort 10: base 5 onwards; never-trained everywhere
    coh = ins.cohort.to_numpy(dtype=float, na_value=np.nan)
    assert plan[0][coh == 10].sum() == 0 and plan[0][coh == 5].all()
    assert all(plan[s][np.isnan(coh)].all() for s in (0, 5, 10))
    panel = score(ckpts, ins, tmp_path / "p", plan=plan, batch_size=4, progress=False)
    f = panel.frame
    assert len(f) == sum(int(m.sum()) for m in plan.values())
    assert panel.meta["validation"]["allow_unbalanced_panel"] is True
    # the rows that were scored equal those of a full run
    full = score(ckpts, ins, tmp_path / "f", batch_size=4, progress=False).frame
    merged = f.merge(full, on=["unit", "step"], suffixes=("", "_full"))
    np.testing.assert_array_equal(merged["logprob"], merged["logprob_full"])
    # a different plan on the same folder is refused
    with pytest.raises(ScoreRunMismatchError, match="plan"):
        score(ckpts, ins, tmp_path / "p", batch_size=4, progress=False)
    with pytest.raises(ScoreRunMismatchError, match="other instances"):
        score(ckpts, make_instances(seed=9), tmp_path / "f", batch_size=4, progress=False)


def test_ragged_instances_are_masked(ckpts: list[Checkpoint], tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    seqs = [rng.integers(0, VOCAB, size=n) for n in (SEQ, 5, 8)]
    ins = Instances.from_arrays(seqs, unit=[1, 2, 3], cohort=[5, None, None])
    f = score(ckpts[:1], ins, tmp_path / "r", batch_size=3, progress=False, as_frame=True)
    shard = pd.read_parquet(tmp_path / "r" / "shards" / "step-000000000.parquet")
    assert shard.set_index("unit")["n_tokens"].to_dict() == {1: SEQ - 1, 2: 4, 3: 7}
    alone = score(
        ckpts[:1],
        Instances.from_arrays(seqs[1][None, :], [2], [None]),
        tmp_path / "alone",
        batch_size=1,
        progress=False,
        as_frame=True,
    )
    a = f.set_index("unit").loc[2, "logprob"]
    assert a == pytest.approx(alone["logprob"].iloc[0], abs=1e-5)


def test_offline_loading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(CheckpointNotFoundError, match="HF_HUB_OFFLINE"):
        load_causal_lm(Checkpoint("EleutherAI/pythia-14m", "step0"))
    with pytest.raises(CheckpointNotFoundError, match="does not exist"):
        load_causal_lm(Checkpoint("./no/such/folder/step3"))


def test_bad_inputs(ckpts: list[Checkpoint], tmp_path: Path) -> None:
    ins = make_instances()
    with pytest.raises(ValueError, match="distinct"):
        score([ckpts[0], Checkpoint(ckpts[1].model, None, 0)], ins, tmp_path, progress=False)
    with pytest.raises(TypeError):
        score(ckpts, ins.tokens, tmp_path, progress=False)  # type: ignore[arg-type]
