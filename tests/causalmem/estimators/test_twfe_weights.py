"""de Chaisemartin - D'Haultfoeuille weights of the TWFE coefficient.

Checks: the textbook three-period example (weights 1, -1/2, 1/2: dCDH 2020, Section 3, by
hand below), the exact decomposition ``beta_fe = sum W_gt tau_gt`` of noise-free outcomes with
heterogeneous cell effects on balanced and unbalanced panels (the package's TWFE as the
independent side; diff-diff's ``attgt_weights(type="twfe")`` weights CS ATT(g, t), a
different representation, so it is no oracle here) and the castle coefficient of R
bacondecomp's vignette.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causalmem.errors import IdentificationError
from causalmem.estimators.diagnostics import twfe_weights
from causalmem.estimators.twfe import twfe
from lmecon.result import check_result
from tests.causalmem.estimators.test_bacon import castle


def test_three_period_textbook_example() -> None:
    # Two equal cohorts, treated at t=2 and t=3, no never-treated. D-tilde by hand:
    # early (t=2,3): 1/3, -1/6; late (t=3): 1/6; sum 1/3 -> weights 1, -1/2, 1/2.
    df = pd.DataFrame(
        {
            "unit": np.repeat([1, 2], 3),
            "step": np.tile([1, 2, 3], 2),
            "cohort": np.repeat([2, 3], 3),
        }
    )
    w = twfe_weights(df, None, "step", "unit", "cohort")
    c = w.cells.sort_values(["cohort", "time"])
    np.testing.assert_allclose(c["weight"], [1.0, -0.5, 0.5], atol=1e-14)
    g = w.glance().iloc[0]
    assert g.n_negative == 1 and g.sum_negative == pytest.approx(-0.5)
    assert np.isnan(w.beta_fe)
    check_result(w)
    assert "1 ATTs receive a negative weight" in w.summary()
    assert w.plot().to_dict()["mark"]["type"] == "rect"


def _hetero_panel(seed: int, drop: float) -> tuple[pd.DataFrame, dict[tuple[float, float], float]]:
    rng = np.random.default_rng(seed)
    n_units, n_t = 400, 12
    cohort = rng.choice([3.0, 5.0, 8.0, 10.0, np.nan], size=n_units)
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n_units), n_t),
            "step": np.tile(np.arange(n_t), n_units),
            "cohort": np.repeat(cohort, n_t),
        }
    )
    treated = (df["step"] >= df["cohort"]).to_numpy()
    g = df["cohort"].to_numpy()
    tau = np.where(treated, 1.0 + 0.3 * (df["step"] - g) - 0.05 * np.nan_to_num(g), 0.0)
    alpha = rng.standard_normal(n_units)[df["unit"]]
    gamma = rng.standard_normal(n_t)[df["step"]]
    df["y"] = alpha + gamma + tau
    df["d"] = treated.astype(float)
    df["tau"] = tau
    if drop:
        df = df[rng.random(len(df)) > drop].reset_index(drop=True)
    cells = df[df["d"] == 1].groupby(["cohort", "step"])["tau"].first().to_dict()
    return df, cells


@pytest.mark.parametrize("drop", [0.0, 0.15])
def test_decomposition_is_exact(drop: float) -> None:
    df, tau = _hetero_panel(0, drop)
    w = twfe_weights(df, "y", "step", "unit", "cohort")
    assert w.spec.balanced == (drop == 0.0)
    fit = twfe("y ~ d | unit + step", df)
    assert w.beta_fe == pytest.approx(float(fit.coef[0]), abs=1e-9)
    cells = w.cells
    implied = sum(
        wt * tau[(g, t)]
        for g, t, wt in zip(cells["cohort"], cells["time"], cells["weight"], strict=True)
    )
    assert implied == pytest.approx(w.beta_fe, abs=1e-9)
    assert cells["weight"].sum() == pytest.approx(1.0, abs=1e-10)
    # w averages one over treated observations
    share = cells["n_obs"] / cells["n_obs"].sum()
    assert float((share * cells["w"]).sum()) == pytest.approx(1.0, abs=1e-10)


def test_castle() -> None:
    # beta_fe is the TWFE coefficient printed by R bacondecomp's vignette; diff-diff's
    # attgt_weights(type="twfe") weights CS ATT(g,t) cells (pre-period cells included), a
    # different representation, so it is not used as an oracle here.
    w = twfe_weights(castle(), "l_homicide", "year", "state", "cohort")
    assert w.beta_fe == pytest.approx(0.08181162, abs=5e-9)
    g = w.glance().iloc[0]
    assert g.n_cells == 20 and g.n_negative == 0
    assert g.sum_positive == pytest.approx(1.0, abs=1e-12)


def test_no_treated_rows() -> None:
    df = pd.DataFrame({"unit": np.repeat([1, 2], 3), "step": np.tile([1, 2, 3], 2)})
    df["cohort"] = np.nan
    with pytest.raises(IdentificationError, match="No row is treated"):
        twfe_weights(df, None, "step", "unit", "cohort")
