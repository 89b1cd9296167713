"""Test-sized runs of the lab demo: corpus → tokenizer → training → scoring → att_gt → report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("altair")
pytest.importorskip("vl_convert")

from causalmem.lab.config import LabConfig  # noqa: E402
from causalmem.panel.io import read_panel  # noqa: E402
from causalmem.workflows.lab_demo import run_lab_demo  # noqa: E402
from tests.causalmem.builders import synthetic_text  # noqa: E402

# 60 steps × 16 sequences + 200 held out: about the prototype's 640-chunk test run.
SMALL = {
    "vocab_size": 1024,
    "n_layer": 2,
    "d_model": 64,
    "n_head": 2,
    "seq_len": 32,
    "batch_size": 16,
    "steps": 60,
    "lr": 1e-2,
    "checkpoint_every": 10,
    "log_spaced_until": 8,
    "n_heldout": 200,
    "n_validation": 200,
    "k": 10,
    "m": 5,
    "biters": 200,
}


@pytest.mark.slow
def test_lab_demo_end_to_end_on_synthetic_text(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text(synthetic_text(5000))
    cfg = LabConfig(corpus=str(text), **SMALL)  # type: ignore[arg-type]
    out = tmp_path / "demo"
    msgs: list[str] = []
    res = run_lab_demo(out, cfg, log=msgs.append, progress=False)
    h = res.headline
    assert h["n_cohorts"] == 6 and h["n_trained_instances"] == 6 * 50
    # memorisation is detected: positive and significant right after training
    assert h["instantaneous_mean"] > 1.0
    inst = pd.read_parquet(out / "instantaneous.parquet")
    assert (inst["statistic"] > 3).sum() >= 4, inst[["group", "estimate", "statistic"]]
    assert h["event_path"][0] > 0
    cells = pd.read_parquet(out / "att_gt.parquet")
    pre = cells[(cells["time"] < cells["group"]) & cells["estimate"].notna()]
    assert len(pre) > 0 and pre["estimate"].abs().mean() < 0.5 * h["instantaneous_mean"]
    for name in ("profile", "instantaneous_lr", "event_path"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<html" in (out / "figures" / f"{name}.html").read_text().lower()
    for name in ("instantaneous", "event_path", "residual"):
        assert "\\begin{tabular}" in (out / "tables" / f"{name}.tex").read_text()
        assert "|" in (out / "tables" / f"{name}.md").read_text()
    report = (out / "report.md").read_text()
    assert "Instantaneous memorisation" in report and "figures/profile.png" in report
    panel = read_panel(out / "panel.parquet")
    assert panel.frame["cohort"].isna().sum() > 0
    manifest = json.loads((out / "scores" / "manifest.json").read_text())
    assert manifest["n_shards"] == 7 and manifest["rows"] == len(panel.frame)
    assert not [p for p in out.rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert any(m.startswith("training:") for m in msgs)

    # a rerun resumes every stage and reproduces the estimates exactly
    again = run_lab_demo(out, cfg, log=lambda m: None, progress=False)
    assert again.timings["training"] < res.timings["training"]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "att_gt.parquet"), cells)


@pytest.mark.slow
@pytest.mark.network
def test_lab_demo_test_size_on_real_english(tmp_path: Path) -> None:
    # the VADER snippets from PyPI; 30 steps × 16 + 160 held out = 640 chunks
    cfg = LabConfig(
        corpus="vader",
        vocab_size=1024,
        d_model=128,
        n_head=4,
        seq_len=32,
        steps=30,
        lr=3e-3,
        checkpoint_every=10,
        log_spaced_until=8,
        n_heldout=160,
        n_validation=160,
        k=10,
        m=4,
        biters=200,
    )
    res = run_lab_demo(tmp_path / "demo", cfg, log=lambda m: None, progress=False)
    assert res.headline["instantaneous_min_t"] > 4
    assert res.headline["instantaneous_mean"] > 1.0
