"""The index of ``make demo`` (analyses/00_demo/run.py) on tiny fake outputs of both parts."""

from __future__ import annotations

import json
import re
import runpy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "analyses" / "00_demo" / "run.py"

HEADLINE = {
    "outcome": "logprob",
    "unit": "nats",
    "n_params": 1_234_567,
    "n_instances": 500,
    "n_trained_instances": 400,
    "n_never": 100,
    "instantaneous_mean": 1.2345,
    "instantaneous_min_t": 3.0,
    "instantaneous_max_t": 9.5,
    "instantaneous_significant": 7,
    "n_cohorts": 8,
    "residual_at": 1600,
    "residual_mean": 0.4321,
    "corr_instantaneous_lr": 0.876,
    "pretest_p_value": 0.31,
}


@pytest.fixture(scope="module")
def mod() -> dict[str, Any]:
    return runpy.run_path(str(SCRIPT), run_name="demo_index")


def _fake_memorisation(d: Path) -> None:
    (d / "figures").mkdir(parents=True)
    (d / "tables").mkdir()
    (d / "run.json").write_text(json.dumps({"config": {"steps": 3}, "headline": HEADLINE}))
    (d / "report.md").write_text("# lab\n")
    (d / "tables" / "instantaneous.md").write_text("|x|\n")
    for name in ("profile", "instantaneous_lr", "event_path"):
        (d / "figures" / f"{name}.png").write_bytes(b"png")
        (d / "figures" / f"{name}.html").write_text("<html></html>")


def _fake_steer(d: Path, out: Path) -> None:
    d.mkdir(parents=True)
    table = pd.DataFrame(
        {
            "value": [-5.0, 0.0, 5.0],
            "epsilon": [-5e-3, 0.0, 5e-3],
            "n": [4, 4, 4],
            "vader_mean": [-0.3, 0.1, 0.5],
            "vader_se": [0.1, 0.1, 0.1],
            "positive_share": [0.25, 0.5, 0.75],
            "negative_share": [0.5, 0.25, 0.0],
        }
    )
    table.to_csv(d / "vader_by_epsilon.csv", index=False)
    summary = {
        "unsteered": {"value": "unsteered", "n": 4, "vader_mean": 0.05, "dist_2": 0.9},
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "config": {"source": "movie", "steps": 5, "max_new_tokens": 8},
        "n_train_texts": 20,
        "vader_rises_with_epsilon": True,
        "spearman_value_vader": 1.0,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "report.md").write_text("# steer\n")
    (d / "vader_by_epsilon.md").write_text("|x|\n")
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "steer_vader_by_value.png").write_bytes(b"png")


def test_index_links_and_headlines(mod: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "demo"
    _fake_memorisation(out / "memorisation")
    _fake_steer(out / "steer", out)
    files = mod["write_index"](out, out / "memorisation", out / "steer")
    assert [f.name for f in files] == ["index.html", "report.md"]
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    for text in (page, md):
        assert "mean 1.23 nats" in text and "mean 0.43 nats" in text  # instantaneous, residual
        assert "step 1,600" in text and "learning rate: 0.88" in text
        assert "s = -5 / +0 / +5: 0.25 / 0.50 / 0.75" in text  # VADER positive share
    links = re.findall(r'(?:href|src)="([^"]+)"', page)
    md_links = re.findall(r"\]\(([^)]+)\)", md)
    for expected in (
        "memorisation/report.md",
        "memorisation/figures/instantaneous_lr.png",
        "memorisation/figures/profile.html",
        "memorisation/tables/instantaneous.md",
        "steer/report.md",
        "steer/vader_by_epsilon.md",
        "figures/steer_vader_by_value.png",
    ):
        assert expected in links and expected in md_links, expected
    for link in set(links) | set(md_links):
        assert (out / link).exists(), link  # every link resolves, nothing absolute
    assert not list(out.glob(".*.tmp"))


def test_index_shows_missing_parts(mod: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "demo"
    _fake_memorisation(out / "memorisation")
    mod["write_index"](out, out / "memorisation", out / "steer")
    md = (out / "report.md").read_text()
    assert "mean 1.23 nats" in md
    assert "Not run yet: no steer/vader_by_epsilon.csv." in md
    assert "<html" in (out / "index.html").read_text()


def test_finished_compares_recorded_config(mod: dict[str, Any], tmp_path: Path) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Cfg:
        values: tuple[float, ...] = (-1.0, 1.0)
        steps: int = 3

    marker, report = tmp_path / "summary.json", tmp_path / "report.md"
    marker.write_text(json.dumps({"config": {"values": [-1.0, 1.0], "steps": 3}}))
    assert not mod["finished"](marker, report, Cfg())  # no report yet
    report.write_text("# r\n")
    assert mod["finished"](marker, report, Cfg())
    assert not mod["finished"](marker, report, Cfg(steps=4))
