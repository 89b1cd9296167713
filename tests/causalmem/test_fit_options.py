"""``att_gt(..., panel=False)`` and ``causalmem fit --stream``: the front doors of two engines.

The engines are tested in their own files (``estimators/test_att_gt_rc.py``,
``estimators/test_stream.py``); here only that the common entry points reach them with the same
arguments and refuse what they cannot do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import causalmem as cm
from causalmem.cli import app
from causalmem.errors import OptionError
from causalmem.panel import Panel, write_panel


def _frame() -> pd.DataFrame:
    sim = cm.simulate_panel(
        cohorts=(3, 4, 6), units_per_cohort=30, n_never=40, steps=range(1, 8), seed=4
    )
    return sim.frame.sort_values(["unit", "step"]).reset_index(drop=True)


def test_panel_false_is_att_gt_rc() -> None:
    f = _frame()
    a = cm.att_gt(f, "y", "step", "unit", "cohort", panel=False, biters=50, seed=0)
    b = cm.att_gt_rc(f, "y", "step", "cohort", idname="unit", biters=50, seed=0)
    np.testing.assert_array_equal(a.att, b.att)
    np.testing.assert_array_equal(a.se, b.se)
    assert a.provenance["panel"] is False
    # without a unit id (rows are the sampling units)
    c = cm.att_gt(f, "y", "step", None, "cohort", panel=False, bstrap=False)
    d = cm.att_gt_rc(f, "y", "step", "cohort", bstrap=False)
    np.testing.assert_array_equal(c.att, d.att)


def test_panel_false_refuses_panel_only_options() -> None:
    with pytest.raises(OptionError, match="allow_unbalanced_panel applies to panels only"):
        cm.att_gt(_frame(), "y", "step", "unit", "cohort", panel=False, allow_unbalanced_panel=True)


def test_fit_stream_equals_fit(tmp_path: Path) -> None:
    f = _frame()
    panel = Panel.from_frame(f, unit="unit", step="step", cohort="cohort", outcomes=("y",))
    path = write_panel(panel, tmp_path / "panel.parquet")
    runner = CliRunner()
    mem = runner.invoke(app, ["fit", str(path), "--out", str(tmp_path / "mem"), "--biters", "0"])
    assert mem.exit_code == 0, mem.output
    st = runner.invoke(
        app, ["fit", str(path), "--out", str(tmp_path / "st"), "--biters", "0", "--stream"]
    )
    assert st.exit_code == 0, st.output
    a = pd.read_parquet(tmp_path / "mem" / "att_gt.parquet")
    b = pd.read_parquet(tmp_path / "st" / "att_gt.parquet")
    np.testing.assert_allclose(b["estimate"], a["estimate"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b["std_error"], a["std_error"], rtol=1e-12, atol=1e-14)


def test_fit_stream_refuses_in_memory_only_options(tmp_path: Path) -> None:
    f = _frame()
    panel = Panel.from_frame(f, unit="unit", step="step", cohort="cohort", outcomes=("y",))
    path = write_panel(panel, tmp_path / "panel.parquet")
    res = CliRunner().invoke(
        app, ["fit", str(path), "--out", str(tmp_path / "o"), "--stream", "--max-e", "3"]
    )
    assert res.exit_code == 1
    assert "--stream does not support --min-e / --max-e / --balance-e" in res.output
