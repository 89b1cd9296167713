"""The lab: corpus files, BPE tokenizer, data split, LR schedule, checkpoint grid, training."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from causalmem.instances import MMapIndexedDataset  # noqa: E402
from causalmem.lab.corpus import Corpus, cache_dir, load_corpus, load_text_file  # noqa: E402
from causalmem.lab.tokenizer import (  # noqa: E402
    encode_documents,
    load_tokenizer,
    save_tokenizer,
    train_bpe,
)
from causalmem.lab.train import (  # noqa: E402
    LabData,
    TrainConfig,
    cohort_lr,
    lab_checkpoint_steps,
    lr_at,
    lr_schedule,
    prepare_data,
    train,
)
from causalmem.scoring.checkpoints import load_causal_lm, weights_hash  # noqa: E402
from tests.causalmem.builders import synthetic_text  # noqa: E402

TINY = TrainConfig(
    n_layer=1,
    d_model=32,
    n_head=2,
    seq_len=16,
    batch_size=4,
    steps=12,
    lr=1e-2,
    checkpoint_every=5,
    log_spaced_until=4,
    seed=3,
)


def test_load_text_file_and_corpus(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("First  para\nline two.\n\nSecond para.\n\n\nFirst  para\nline two.\n")
    c = load_text_file(p)
    assert c.documents == ("First para line two.", "Second para.", "First para line two.")
    assert c.provenance["sha256"] and c.provenance["n_documents"] == 3
    assert load_text_file(p, split="line").documents[:2] == ("First para", "line two.")
    d = c.deduplicated()
    assert d.documents == ("First para line two.", "Second para.")
    assert len(c) == 3  # the original is unchanged
    assert isinstance(load_corpus(p), Corpus)
    with pytest.raises(FileNotFoundError):
        load_corpus(tmp_path / "missing.txt")


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAUSALMEM_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("CAUSALMEM_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "causalmem"


def test_bpe_is_deterministic_and_round_trips(tmp_path: Path) -> None:
    docs = synthetic_text(400).split("\n\n")
    a = train_bpe(docs, vocab_size=400)
    b = train_bpe(docs, vocab_size=400)
    assert a.get_vocab() == b.get_vocab() and a.get_vocab_size() == 400
    text = docs[3]
    assert a.decode(a.encode(text).ids) == text
    assert a.token_to_id("<|endoftext|>") == 0
    save_tokenizer(a, tmp_path / "tok")
    assert load_tokenizer(tmp_path / "tok").encode(text).ids == a.encode(text).ids
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert hf(text)["input_ids"] == a.encode(text).ids
    enc = encode_documents(a, docs[:2])
    assert [e.tolist() for e in enc] == [a.encode(d).ids for d in docs[:2]]


def test_lr_schedule_warmup_cosine_floor() -> None:
    cfg = TrainConfig(steps=200, lr=2e-3, warmup_frac=0.05, min_lr_ratio=0.1)
    assert cfg.warmup_steps == 10
    assert lr_at(1, cfg) == pytest.approx(2e-4)
    assert lr_at(10, cfg) == pytest.approx(2e-3)
    mid = 10 + (200 - 10) / 2
    assert lr_at(mid, cfg) == pytest.approx(2e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(200, cfg) == pytest.approx(2e-4)
    s = lr_schedule(cfg)
    assert len(s) == 200 and s["lr"].is_monotonic_decreasing is False
    assert (np.diff(s["lr"].to_numpy()[10:]) <= 0).all()
    c = cohort_lr(cfg, [0, 100, 200])
    assert c["group"].tolist() == [100, 200]
    assert c["lr_mean"].iloc[0] == pytest.approx(float(np.mean(lr_at(np.arange(1, 101), cfg))))
    assert c["lr_end"].iloc[1] == pytest.approx(2e-4)
    assert math.isclose(float(lr_at(np.array([10]), cfg)[0]), 2e-3)


def test_checkpoint_grid() -> None:
    assert lab_checkpoint_steps(600, 50).tolist() == (
        [0, 1, 2, 4, 8, 16, 32] + list(range(50, 601, 50))
    )
    assert lab_checkpoint_steps(12, 5, 4).tolist() == [0, 1, 2, 4, 5, 10, 12]


def test_prepare_data_split_is_disjoint_and_complete() -> None:
    docs = [np.arange(i * 50, i * 50 + 37) for i in range(40)]  # 1,480 tokens, no repeats
    docs.append(np.arange(0, 37))  # a duplicate document
    data = prepare_data(docs, TINY, n_validation=10, seed=1)
    assert data.train.shape == (TINY.steps * TINY.batch_size, TINY.seq_len)
    assert data.validation.shape == (10, TINY.seq_len)
    rows = np.concatenate([data.train, data.validation, data.reserve])
    assert len({r.tobytes() for r in rows}) == rows.shape[0]  # each chunk once
    assert data.provenance["unique_chunks"] == rows.shape[0]
    assert data.fingerprint() == prepare_data(docs, TINY, n_validation=10, seed=1).fingerprint()
    assert data.fingerprint() != prepare_data(docs, TINY, n_validation=10, seed=2).fingerprint()
    with pytest.raises(ValueError, match="needs"):
        prepare_data(docs[:5], TINY, n_validation=10)


def _data() -> tuple[LabData, int]:
    docs = synthetic_text(300).split("\n\n")
    tok = train_bpe(docs, vocab_size=300)
    data = prepare_data(encode_documents(tok, docs), TINY, n_validation=8, seed=0)
    return data, tok.get_vocab_size()


def test_train_records_order_and_resumes_bit_identically(tmp_path: Path) -> None:
    data, vocab = _data()
    before = torch.random.get_rng_state()
    full = train(data, TINY, tmp_path / "full", vocab_size=vocab, progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)  # no global seeding
    assert full.checkpoint_steps == (0, 1, 2, 4, 5, 10, 12)
    assert [c.step for c in full.checkpoints] == list(full.checkpoint_steps)
    order = MMapIndexedDataset(full.order_path)
    stored = np.stack([order[i] for i in range(len(order))])
    np.testing.assert_array_equal(stored, data.train)
    np.testing.assert_array_equal(np.load(full.validation_path), data.validation)
    hist = full.history
    assert hist["step"].tolist() == list(range(1, 13))
    np.testing.assert_allclose(hist["lr"], lr_at(np.arange(1, 13), TINY))
    assert not (tmp_path / "full" / "trainer_state").exists()
    final = weights_hash(load_causal_lm(full.checkpoints[-1]))
    # interrupted after step 5, then resumed: bit-identical checkpoints
    part = train(data, TINY, tmp_path / "part", vocab_size=vocab, progress=False, stop_after=5)
    assert part.checkpoint_steps[-1] == 5
    assert not (tmp_path / "part" / "run.json").exists()
    msgs: list[str] = []
    resumed = train(
        data, TINY, tmp_path / "part", vocab_size=vocab, progress=False, log=msgs.append
    )
    assert resumed.resumed_from == 5 and any("resuming" in m for m in msgs)
    for a, b in zip(full.checkpoints, resumed.checkpoints, strict=True):
        assert weights_hash(load_causal_lm(a)) == weights_hash(load_causal_lm(b)), a.step
    assert weights_hash(load_causal_lm(resumed.checkpoints[-1])) == final
    np.testing.assert_array_equal(resumed.history["loss"], hist["loss"])
    # a finished run is returned without training; a different config is refused
    again = train(data, TINY, tmp_path / "full", vocab_size=vocab, progress=False)
    assert again.checkpoint_steps == full.checkpoint_steps
    with pytest.raises(ValueError, match="different"):
        changed = TrainConfig(**{**TINY.__dict__, "lr": 0.5})
        train(data, changed, tmp_path / "full", vocab_size=vocab, progress=False)
    meta = json.loads((tmp_path / "full" / "run.json").read_text())
    assert meta["config"]["steps"] == 12 and meta["data"]["n_train"] == 48
    # no leftovers of atomic writes
    leftovers = [p for p in (tmp_path / "full").rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_train_config_validation() -> None:
    with pytest.raises(ValueError):
        TrainConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError):
        TrainConfig(warmup_frac=1.5)


@pytest.mark.network
def test_vader_corpus_from_pypi(tmp_path: Path) -> None:
    from causalmem.lab.corpus import VADER_SDIST_SHA256, load_vader

    c = load_vader(cache_dir())
    assert 23_000 < len(c) < 24_000
    assert c.provenance["sha256"] == VADER_SDIST_SHA256 and c.provenance["licence"] == "MIT"
    assert {lab["source"] for lab in c.labels} == {"movie", "tweets", "amazon", "nyt"}
    assert any("Lord of the Rings" in d for d in c.documents[:5])
    assert not any("&amp;" in d for d in c.documents)
    prov = json.loads(
        (cache_dir() / "corpora" / "vaderSentiment-3.3.2" / "provenance.json").read_text()
    )
    assert prov["sha256"] == VADER_SDIST_SHA256
