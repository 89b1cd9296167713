"""``causalmem pretrends`` and ``causalmem bacon`` (issue 14, items 2 and 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from causalmem.cli import app
from causalmem.panel import Panel, simulate_panel, write_panel

REF = Path(__file__).parent / "analysis" / "reference" / "pretrends_hewang_stata.json"


def test_pretrends_json(tmp_path: Path) -> None:
    ref = json.loads(REF.read_text())
    src = tmp_path / "es.json"
    src.write_text(json.dumps({k: ref[k] for k in ("betahat", "sigma", "event_time")}))
    out = tmp_path / "pt.csv"
    res = CliRunner().invoke(app, ["pretrends", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Power 0.5000" in res.output
    t = pd.read_csv(out)
    assert len(t) == 8 and abs(t["mean_after_pretest"].iloc[0] - (-0.0923171)) < 1e-6


def test_pretrends_bad_json(tmp_path: Path) -> None:
    src = tmp_path / "es.json"
    src.write_text(json.dumps({"betahat": [1.0]}))
    res = CliRunner().invoke(app, ["pretrends", str(src)])
    assert res.exit_code == 1 and "sigma" in res.output


def test_bacon_and_pretrends_on_panel(tmp_path: Path) -> None:
    f = simulate_panel(seed=3).frame
    p = Panel.from_frame(f, unit="unit", step="step", cohort="cohort", outcomes="y")
    path = write_panel(p, tmp_path / "p.parquet")
    out = tmp_path / "bacon.csv"
    res = CliRunner().invoke(app, ["bacon", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "Later vs Earlier Treated" in res.output and "negative weight" in res.output
    b = pd.read_csv(out)
    assert abs(b["weight"].sum() - 1) < 1e-12
    assert (tmp_path / "bacon_weights.csv").exists()
    res = CliRunner().invoke(app, ["pretrends", str(path), "--target-power", "0.8"])
    assert res.exit_code == 0, res.output
    assert "Power 0.8000" in res.output
