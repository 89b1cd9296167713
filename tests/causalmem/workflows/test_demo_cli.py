from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import causalmem as cm
from causalmem.cli import app
from causalmem.workflows.simulated_demo import SimulatedDemoConfig, run_demo

SMALL = SimulatedDemoConfig(
    units_per_cohort=20,
    n_never=200,
    cohort_every=4000,
    last_cohort=40_000,
    residual_at=40_000,
    biters=200,
    seed=3,
)


def test_demo_writes_report_tables_and_recovers_truth(tmp_path: Path) -> None:
    out = run_demo(tmp_path / "demo", SMALL, log=lambda m: None)
    names = {p.name for p in out.files}
    assert {"panel.parquet", "att_gt.parquet", "report.md", "run.json", "summary.txt"} <= names
    assert {"aggte_dynamic.tex", "aggte_dynamic.md", "att_gt_instantaneous.tex"} <= names
    cells = pd.read_parquet(tmp_path / "demo" / "att_gt.parquet")
    assert len(cells) == 10 * 153  # 10 cohorts x 153 outcome periods (varying base)
    assert out.recovery["uniform_band_coverage_post"] >= 0.95
    assert abs(out.recovery["bias"]) < 0.02
    panel = cm.read_panel(tmp_path / "demo" / "panel.parquet")
    assert panel.meta["user"]["config"]["seed"] == 3
    run = json.loads((tmp_path / "demo" / "run.json").read_text())
    assert run["provenance"]["seed"] == "3"
    assert not list((tmp_path / "demo").glob(".*.tmp"))  # no half-written files left


def test_demo_config_from_toml_rejects_unknown_keys(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[demo]\nbiters = 10\nbogus = 1\n")
    with pytest.raises(ValueError, match="bogus"):
        SimulatedDemoConfig.from_toml(p)
    p.write_text("[demo]\nbiters = 10\n")
    assert SimulatedDemoConfig.from_toml(p).biters == 10


def test_cli_demo_and_fit(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[demo]\nunits_per_cohort = 10\nn_never = 100\ncohort_every = 20000\n"
        "last_cohort = 40000\nresidual_at = 40000\nbiters = 50\n"
    )
    runner = CliRunner()
    r = runner.invoke(
        app, ["demo", "--simulated", "--out", str(tmp_path / "d"), "--config", str(cfg)]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(
        app,
        [
            "fit",
            str(tmp_path / "d" / "panel.parquet"),
            "--out",
            str(tmp_path / "f"),
            "--biters",
            "0",
        ],
    )
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "f" / "att_gt.parquet")
    assert set(t["se_method"]) == {"analytic"}
    assert (tmp_path / "f" / "aggte_dynamic.md").exists()


def test_analysis_script_runs(tmp_path: Path) -> None:
    import runpy
    import sys

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        "[demo]\nunits_per_cohort = 10\nn_never = 100\ncohort_every = 20000\n"
        "last_cohort = 40000\nresidual_at = 40000\nbiters = 50\n"
    )
    script = Path(__file__).parents[3] / "analyses" / "01_simulated_profile" / "run.py"
    argv = sys.argv
    sys.argv = [str(script), "--out", str(tmp_path / "a"), "--config", str(cfg)]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    assert (tmp_path / "a" / "report.md").exists()
