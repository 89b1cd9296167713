"""Reliability of the scoring stage (issue 13): no silent wrong numbers, no silent data loss.

Classes covered: non-finite logits (1), manifest verification on read (6), weights changed in
place (7), foreign / renamed / escaping shards (8), checkpoints that cannot score the instances
(10, 12).
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from causalmem.errors import (  # noqa: E402
    CausalmemWarning,
    CheckpointCompatibilityError,
    NonFiniteScoresError,
    ShardIntegrityError,
)
from causalmem.instances import Instances  # noqa: E402
from causalmem.scoring import runner  # noqa: E402
from causalmem.scoring.checkpoints import (  # noqa: E402
    Checkpoint,
    load_causal_lm,
    local_checkpoints,
    quiet_transformers,
)
from causalmem.scoring.integrity import content_checksum, shard_path  # noqa: E402
from causalmem.scoring.runner import (  # noqa: E402
    METADATA_KEY,
    ScoreRunMismatchError,
    read_scores,
    score,
    score_instances,
)
from tests.causalmem.builders import (  # noqa: E402
    SEQ,
    VOCAB,
    make_checkpoints,
    make_instances,
    tiny_model,
)

SHARD5 = "step-000000005.parquet"


def _same(a: Any, b: Any) -> None:
    pd.testing.assert_frame_equal(a, b)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> list[Checkpoint]:
    return make_checkpoints(tmp_path_factory.mktemp("ckpts"))


@pytest.fixture(scope="module")
def scored(ckpts: list[Checkpoint], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished, intact scoring folder (copied by tests that damage it)."""
    out = tmp_path_factory.mktemp("scored") / "out"
    score(ckpts, make_instances(), out, batch_size=4, progress=False)
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _save(
    path: Path, seed: int = 100, mutate: Callable[[Any], None] | None = None, **cfg: int
) -> Path:
    if cfg:
        config = transformers.GPTNeoXConfig(
            vocab_size=cfg.get("vocab", VOCAB),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=cfg.get("ctx", SEQ),
            tie_word_embeddings=False,
        )
        torch.manual_seed(seed)
        model = transformers.GPTNeoXForCausalLM(config)
    else:
        model = tiny_model(seed)
    if mutate is not None:
        with torch.no_grad():
            mutate(model)
    with quiet_transformers():
        model.save_pretrained(path)
    return path


def _rewrite(path: Path, frame_fn: Any = None, record_fn: Any = None) -> None:
    """Rewrite a shard in place, changing its rows and/or its embedded record."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    payload = json.loads(meta[METADATA_KEY])
    if record_fn is not None:
        record_fn(payload["record"])
    meta[METADATA_KEY] = json.dumps(payload).encode()
    frame = table.to_pandas()
    if frame_fn is not None:
        frame = frame_fn(frame)
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(meta), path
    )


def _edit_manifest(out: Path, fn: Callable[[dict[str, Any]], object]) -> None:
    body = json.loads((out / "manifest.json").read_text())
    fn(body)
    (out / "manifest.json").write_text(json.dumps(body))


# ----------------------------------------------------------------------------- 1 non-finite
def _nan_weight(model: Any) -> None:
    model.get_output_embeddings().weight[3, 0] = float("nan")


def _overflow(model: Any) -> None:
    model.get_output_embeddings().weight.mul_(1e38).mul_(1e10)


@pytest.mark.parametrize("mutate", [_nan_weight, _overflow], ids=["nan", "inf"])
def test_non_finite_logits_fail_the_checkpoint_and_write_no_shard(
    ckpts: list[Checkpoint], tmp_path: Path, mutate: Callable[[Any], None]
) -> None:
    bad = Checkpoint(str(_save(tmp_path / "bad" / "step20", mutate=mutate)), None, 20)
    out = tmp_path / "out"
    ins = make_instances()
    with pytest.raises(NonFiniteScoresError, match="non-finite logits") as err:
        score([*ckpts, bad], ins, out, batch_size=4, progress=False)
    msg = str(err.value)
    assert "step20 (step 20)" in msg and "No shard was written" in msg and "float16" in msg
    names = sorted(p.name for p in (out / "shards").iterdir())
    assert "step-000000020.parquet" not in names and len(names) == 3
    # the resume is not poisoned: with the checkpoint fixed, the run completes
    shutil.rmtree(tmp_path / "bad" / "step20")
    _save(tmp_path / "bad" / "step20", seed=7)
    panel = score([*ckpts, bad], ins, out, batch_size=4, progress=False)
    assert sorted(panel.frame["step"].unique()) == [0, 5, 10, 20]
    assert np.isfinite(panel.frame["logprob"]).all()


def test_score_instances_refuses_nan_logits_directly(tmp_path: Path) -> None:
    model = load_causal_lm(Checkpoint(str(_save(tmp_path / "step1", mutate=_nan_weight))))
    with pytest.raises(NonFiniteScoresError, match="'mine' produced non-finite"):
        score_instances(model, make_instances(), batch_size=4, label="mine")


def test_resume_rescores_a_shard_holding_non_finite_scores(
    ckpts: list[Checkpoint], scored: Path, tmp_path: Path
) -> None:
    out = _copy(scored, tmp_path / "out")
    reference = read_scores(scored).frame

    def poison(f: pd.DataFrame) -> pd.DataFrame:
        return f.assign(logprob=np.nan, acc_seq=1.0)

    _rewrite(out / "shards" / SHARD5, poison, lambda r: r.update(checksum=None))
    _edit_manifest(out, lambda b: [e.update(checksum=None) for e in b["checkpoints"]])
    with pytest.warns(CausalmemWarning, match="non-finite scores in 14 of 14 rows"):
        panel = score(ckpts, make_instances(), out, batch_size=4, progress=False)
    _same(panel.frame, reference)


# ----------------------------------------------------------------------------- 6 manifest
def _truncate(out: Path) -> None:
    p = out / "shards" / SHARD5
    p.write_bytes(p.read_bytes()[:200])


def _delete(out: Path) -> None:
    (out / "shards" / SHARD5).unlink()


def _edit_values(out: Path) -> None:
    _rewrite(out / "shards" / SHARD5, lambda f: f.assign(logprob=f["logprob"] + 1))


def _drop_rows(out: Path) -> None:
    _rewrite(out / "shards" / SHARD5, lambda f: f.iloc[:10], lambda r: r.update(rows=10))


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (_truncate, "cannot be read as parquet"),
        (_delete, "is missing"),
        (_edit_values, "differ from the checksum"),
        (_drop_rows, "does not match its manifest entry"),
    ],
    ids=["truncated", "deleted", "values-edited", "rows-dropped"],
)
def test_read_scores_refuses_shards_that_do_not_match_the_manifest(
    ckpts: list[Checkpoint],
    scored: Path,
    tmp_path: Path,
    damage: Callable[[Path], None],
    fragment: str,
) -> None:
    out = _copy(scored, tmp_path / "out")
    damage(out)
    with pytest.raises(ShardIntegrityError, match=fragment) as err:
        read_scores(out)
    msg = str(err.value)
    assert "1 of the 3 shards" in msg and "step 5" in msg and "steps=[0, 10]" in msg
    assert "Rerun score()" in msg
    assert len(read_scores(out, steps=[0, 10], as_frame=True)) == 2 * 14  # the intact ones
    # repair: a resumed run scores the damaged checkpoint again, with a warning
    with pytest.warns(CausalmemWarning, match="scored again"):
        panel = score(ckpts, make_instances(), out, batch_size=4, progress=False)
    _same(panel.frame, read_scores(scored).frame)


def test_inconsistent_manifest_is_refused(scored: Path, tmp_path: Path) -> None:
    out = _copy(scored, tmp_path / "out")
    _edit_manifest(out, lambda b: b["checkpoints"].pop(1))
    with pytest.raises(ShardIntegrityError, match="counts 3 shards .* but lists 2 shards"):
        read_scores(out)


def test_old_manifest_without_checksums_is_read_with_a_warning(
    ckpts: list[Checkpoint], scored: Path, tmp_path: Path
) -> None:
    out = _copy(scored, tmp_path / "out")
    for p in (out / "shards").iterdir():
        _rewrite(p, None, lambda r: [r.pop("checksum"), r.pop("source")])
    _edit_manifest(out, lambda b: [(e.pop("checksum"), e.pop("source")) for e in b["checkpoints"]])
    with pytest.warns(CausalmemWarning, match="3 of 3 shards have no content checksum"):
        frame = read_scores(out).frame
    _same(frame, read_scores(scored).frame)
    # what can be checked still is: row counts
    _drop_rows(out)
    with pytest.raises(ShardIntegrityError, match="does not match its manifest entry"):
        read_scores(out)
    # a resumed run records the checksums (and rescores the damaged shard)
    with pytest.warns(CausalmemWarning, match="scored again"):
        score(ckpts, make_instances(), out, batch_size=4, progress=False)
    entries = json.loads((out / "manifest.json").read_text())["checkpoints"]
    assert all(e["checksum"] for e in entries)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CausalmemWarning)
        read_scores(out)


def test_missing_manifest_is_rebuilt_with_a_warning(scored: Path, tmp_path: Path) -> None:
    out = _copy(scored, tmp_path / "out")
    (out / "manifest.json").unlink()
    with pytest.warns(CausalmemWarning, match=r"manifest.json is missing.*3 shard files"):
        frame = read_scores(out).frame
    _same(frame, read_scores(scored).frame)
    _truncate(out)
    with pytest.warns(CausalmemWarning), pytest.raises(ShardIntegrityError, match="step 5"):
        read_scores(out)


def test_checksum_survives_the_parquet_round_trip(scored: Path) -> None:
    entries = json.loads((scored / "manifest.json").read_text())["checkpoints"]
    for e in entries:
        frame = pd.read_parquet(scored / "shards" / e["shard"])
        assert content_checksum(frame) == e["checksum"]


# ----------------------------------------------------------------------------- 7 weights
def test_weights_changed_in_place_are_rescored_and_said(
    ckpts: list[Checkpoint], tmp_path: Path
) -> None:
    src = _copy(Path(ckpts[0].model).parent, tmp_path / "ck")
    cks = list(local_checkpoints(src))
    ins = make_instances()
    out = tmp_path / "out"
    before = score(cks, ins, out, batch_size=4, progress=False).frame
    # touched but identical files: re-hashed, trusted, no warning
    for p in (src / "step5").iterdir():
        os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CausalmemWarning)
        same = score(cks, ins, out, batch_size=4, progress=False).frame
    _same(same, before)
    # new weights saved over the old folder
    shutil.rmtree(src / "step5")
    _save(src / "step5", seed=999)
    messages: list[str] = []
    with pytest.warns(CausalmemWarning, match=r"weights of checkpoint .*step5.* changed"):
        after = score(cks, ins, out, batch_size=4, progress=False, log=messages.append).frame
    assert any("14 rows are scored again" in m for m in messages)
    fresh = score(cks, ins, tmp_path / "fresh", batch_size=4, progress=False).frame
    _same(after, fresh)
    assert not np.array_equal(after["logprob"], before["logprob"])


# ----------------------------------------------------------------------------- 8 foreign files
def test_renamed_and_foreign_files_are_ignored(
    ckpts: list[Checkpoint], scored: Path, tmp_path: Path
) -> None:
    out = _copy(scored, tmp_path / "out")
    other = tmp_path / "other"
    score(ckpts[:1], make_instances(seed=9), other, batch_size=4, progress=False, as_frame=True)
    shutil.copy(other / "shards" / "step-000000000.parquet", out / "shards" / "old-run.parquet")
    shutil.copy(out / "shards" / SHARD5, out / "shards" / "step-000000005 (copy).parquet")
    (out / "shards" / "notes.txt").write_text("hello")
    messages: list[str] = []
    panel = score(ckpts, make_instances(), out, batch_size=4, progress=False, log=messages.append)
    _same(panel.frame, read_scores(scored).frame)
    assert any("ignoring old-run.parquet" in m for m in messages)
    assert len(read_scores(out, as_frame=True)) == 3 * 14


def test_unlisted_shard_of_another_run_is_never_overwritten(
    ckpts: list[Checkpoint], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    score(ckpts[:1], make_instances(seed=9), other, batch_size=4, progress=False, as_frame=True)
    out = tmp_path / "out"
    first = score(ckpts[1:], make_instances(), out, batch_size=4, progress=False, as_frame=True)
    shutil.copy(other / "shards" / "step-000000000.parquet", out / "shards")
    # not one of this run's steps: ignored
    again = score(ckpts[1:], make_instances(), out, batch_size=4, progress=False, as_frame=True)
    _same(again, first)
    with pytest.raises(ScoreRunMismatchError, match="another scoring run.*Move it out"):
        score(ckpts, make_instances(), out, batch_size=4, progress=False)
    assert len(pd.read_parquet(out / "shards" / "step-000000000.parquet")) == 14  # untouched


def test_shard_names_never_point_outside_the_folder(scored: Path, tmp_path: Path) -> None:
    out = _copy(scored, tmp_path / "a" / "out")
    outside = tmp_path / "a" / "x.parquet"
    shutil.copy(out / "shards" / SHARD5, outside)
    _edit_manifest(out, lambda b: b["checkpoints"][1].update(shard="../../x.parquet"))
    with pytest.raises(ShardIntegrityError, match="not a shard file name inside"):
        read_scores(out)
    # the same in the shard's own metadata
    out2 = _copy(scored, tmp_path / "b" / "out")
    _rewrite(out2 / "shards" / SHARD5, None, lambda r: r.update(shard="../../x.parquet"))
    with pytest.raises(ShardIntegrityError, match="metadata names shard '../../x.parquet'"):
        read_scores(out2)
    assert shard_path(out, "../x.parquet") is None and shard_path(out, "/etc/passwd") is None
    assert shard_path(out, SHARD5) == out / "shards" / SHARD5


# ----------------------------------------------------------------------------- 10, 12 fit
def test_token_ids_past_the_vocabulary_are_refused_before_scoring(
    ckpts: list[Checkpoint], tmp_path: Path
) -> None:
    ins = make_instances()
    tokens = np.r_[ins.tokens[:3], np.full((1, SEQ), VOCAB + 5)]
    bad = Instances.from_arrays(tokens, [0, 1, 2, 3], [5, None, None, None])
    out = tmp_path / "out"
    with pytest.raises(CheckpointCompatibilityError, match="vocabulary of 61 tokens") as err:
        score(ckpts, bad, out, batch_size=4, progress=False)
    msg = str(err.value)
    assert "1 of 4 instances" in msg and "largest 66" in msg and "units 3" in msg
    assert "tokenizer" in msg and "Nothing was scored" in msg
    assert not out.exists()


def test_instances_longer_than_the_context_are_refused(
    ckpts: list[Checkpoint], tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    long = Instances.from_arrays(
        [rng.integers(0, VOCAB, n) for n in (SEQ, SEQ * 3, 5)], [1, 2, 3], [5, None, None]
    )
    with pytest.raises(CheckpointCompatibilityError, match="context of 12 tokens") as err:
        score(ckpts, long, tmp_path / "out", batch_size=4, progress=False)
    assert "1 of 3 instances are longer (up to 36 tokens)" in str(err.value)
    model = load_causal_lm(ckpts[0])
    with pytest.raises(CheckpointCompatibilityError, match="'m' has a context of 12"):
        score_instances(model, long, batch_size=2, label="m")


def test_a_late_checkpoint_with_a_smaller_vocabulary_fails_before_the_first(
    ckpts: list[Checkpoint], tmp_path: Path
) -> None:
    small = Checkpoint(str(_save(tmp_path / "small" / "step20", vocab=40)), None, 20)
    out = tmp_path / "out"
    with pytest.raises(CheckpointCompatibilityError, match=r"small/step20' has a vocabulary of 40"):
        score([*ckpts, small], make_instances(), out, batch_size=4, progress=False)
    assert not out.exists()  # nothing scored, not even the compatible checkpoints


def test_checkpoints_with_different_vocabularies_are_refused(
    ckpts: list[Checkpoint], tmp_path: Path
) -> None:
    big = Checkpoint(str(_save(tmp_path / "big" / "step20", vocab=VOCAB + 30)), None, 20)
    with pytest.raises(CheckpointCompatibilityError, match="different vocabulary sizes") as err:
        score([*ckpts, big], make_instances(), tmp_path / "out", batch_size=4, progress=False)
    msg = str(err.value)
    assert "61 tokens" in msg and "91 tokens" in msg and "its own output folder" in msg


def test_valid_runs_are_unchanged_by_the_checks(
    ckpts: list[Checkpoint], scored: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a finished folder is a no-op on rerun: no checkpoint is loaded or scored again
    out = _copy(scored, tmp_path / "out")
    calls: list[object] = []
    monkeypatch.setattr(runner, "score_checkpoint", lambda *a, **k: calls.append(a))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CausalmemWarning)
        frame = score(ckpts, make_instances(), out, batch_size=4, progress=False).frame
    assert calls == []
    _same(frame, read_scores(scored).frame)


def _fake_hub(cache: Path, revisions: dict[str, int]) -> None:
    """A Hugging Face cache holding ``org/tiny`` at the given revisions (branch -> seed)."""
    repo = cache / "models--org--tiny"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for rev, seed in revisions.items():
        commit = f"{seed:040x}"
        _save(repo / "snapshots" / commit, seed=seed)
        (repo / "refs" / rev).write_text(commit)


def test_hub_revision_moved_in_the_cache_is_rescored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _fake_hub(cache, {"step0": 100, "step5": 101})
    cks = [Checkpoint("org/tiny", "step0"), Checkpoint("org/tiny", "step5")]
    ins = make_instances()
    out = tmp_path / "out"
    kw: dict[str, Any] = {"batch_size": 4, "progress": False, "local_files_only": True}
    before = score(cks, ins, out, as_frame=True, **kw)
    assert isinstance(before, pd.DataFrame)
    entries = json.loads((out / "manifest.json").read_text())["checkpoints"]
    assert entries[1]["source"] == f"hub:{101:040x}"
    _fake_hub(cache, {"step5": 202})  # the branch now points to other weights
    with pytest.warns(CausalmemWarning, match=r"weights of checkpoint 'org/tiny@step5'"):
        after = score(cks, ins, out, as_frame=True, **kw)
    assert isinstance(after, pd.DataFrame)
    same0 = before[before["step"] == 0].reset_index(drop=True)
    _same(same0, after[after["step"] == 0].reset_index(drop=True))
    assert not np.array_equal(before["logprob"], after["logprob"])
