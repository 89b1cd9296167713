"""Goodman-Bacon decomposition against R bacondecomp's castle-doctrine output.

Reference: ``reference/bacon_castle.json`` (data and R output; provenance inside). The 2x2
estimates and weights are also compared with diff-diff's ``BaconDecomposition`` (test-only
oracle, documented to match R bacondecomp at 1e-6) and the sum with the package's own TWFE.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causalmem._numerics.bacon import bacon_cells, twfe_coefficient_cells
from causalmem.errors import UnbalancedPanelError
from causalmem.estimators.diagnostics import bacon_decomposition
from causalmem.estimators.twfe import twfe
from lmecon.result import check_result

REF = json.loads((Path(__file__).parent / "reference" / "bacon_castle.json").read_text())


def castle() -> pd.DataFrame:
    """The castle panel (550 rows) from the reference file."""
    years = np.array(REF["years"])
    n = len(REF["state"])
    cohort = np.array([np.nan if c is None else c for c in REF["cohort"]], dtype=float)
    return pd.DataFrame(
        {
            "state": np.repeat(REF["state"], years.size),
            "year": np.tile(years, n),
            "cohort": np.repeat(cohort, years.size),
            "l_homicide": np.asarray(REF["l_homicide"], dtype=float).ravel(),
        }
    )


@pytest.fixture(scope="module")
def res():  # noqa: ANN201
    return bacon_decomposition(castle(), "l_homicide", "year", "state", "cohort")


def test_castle_matches_r_bacondecomp(res) -> None:  # noqa: ANN001
    by = res.by_type().set_index("type")
    for typ, ref in REF["by_type"].items():
        assert by.loc[typ, "weight"] == pytest.approx(ref["weight"], abs=5e-6)
        assert by.loc[typ, "avg_est"] == pytest.approx(ref["avg_est"], abs=5e-6)
    g = res.glance().iloc[0]
    assert g.decomposition_sum == pytest.approx(REF["twfe_coefficient"], abs=5e-9)
    assert res.twfe_estimate == pytest.approx(g.decomposition_sum, abs=1e-12)
    assert res.comparisons["weight"].sum() == pytest.approx(1.0, abs=1e-13)
    df = castle().assign(post=lambda f: (f.year >= f.cohort).astype(float))
    fit = twfe("l_homicide ~ post | state + year", df)
    assert float(fit.coef[0]) == pytest.approx(res.twfe_estimate, abs=1e-12)
    assert res.comparisons["forbidden"].sum() == 10
    assert g.forbidden_weight == pytest.approx(
        REF["by_type"]["Later vs Earlier Treated"]["weight"], abs=5e-6
    )


def test_castle_matches_diff_diff_per_comparison(res) -> None:  # noqa: ANN001
    diff_diff = pytest.importorskip("diff_diff")
    df = castle().assign(first_treat=lambda f: f.cohort.fillna(0).astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dd = diff_diff.bacon_decompose(df, "l_homicide", "state", "year", "first_treat")
    kind = {
        "treated_vs_never": "Treated vs Untreated",
        "earlier_vs_later": "Earlier vs Later Treated",
        "later_vs_earlier": "Later vs Earlier Treated",
    }
    theirs = pd.DataFrame(
        {
            "treated": [float(c.treated_group) for c in dd.comparisons],
            "control": [
                np.inf if c.control_group == "never_treated" else float(c.control_group)
                for c in dd.comparisons
            ],
            "type": [kind[c.comparison_type] for c in dd.comparisons],
            "estimate_dd": [c.estimate for c in dd.comparisons],
            "weight_dd": [c.weight for c in dd.comparisons],
        }
    )
    m = res.comparisons.merge(theirs, on=["treated", "control", "type"], validate="1:1")
    assert len(m) == len(res.comparisons) == 25
    np.testing.assert_allclose(m["estimate"], m["estimate_dd"], atol=1e-8)
    np.testing.assert_allclose(m["weight"], m["weight_dd"], atol=1e-8)


def test_protocol_and_plot(res) -> None:  # noqa: ANN001
    check_result(res)
    assert "Later vs Earlier Treated" in res.summary()
    spec = res.plot().to_dict()
    assert spec["layer"][0]["encoding"]["color"]["field"] == "type"
    assert "Later vs Earlier" in res.to_markdown()


def test_unbalanced_is_refused_with_advice() -> None:
    df = castle().iloc[1:]
    with pytest.raises(UnbalancedPanelError, match="twfe_weights"):
        bacon_decomposition(df, "l_homicide", "year", "state", "cohort")


def test_always_treated_cohort_sums_to_twfe() -> None:
    rng = np.random.default_rng(0)
    n_t = 9
    start = np.array([0, 3, 5, 7, 9])  # always, three timing groups, never
    n = np.array([4.0, 7.0, 5.0, 3.0, 11.0])
    ybar = rng.standard_normal((5, n_t)) + np.arange(n_t) * 0.1
    beta, _ = twfe_coefficient_cells(ybar, n, start)
    bc = bacon_cells(ybar, n, start)
    assert set(bc.type) == {
        "Treated vs Untreated",
        "Later vs Always Treated",
        "Earlier vs Later Treated",
        "Later vs Earlier Treated",
    }
    assert bc.weight.sum() == pytest.approx(1.0, abs=1e-14)
    assert float(bc.weight @ bc.estimate) == pytest.approx(beta, abs=1e-12)
    # the brute-force TWFE on unit-level rows agrees with the cell formula
    units = np.repeat(np.arange(5), n.astype(int))
    rows = pd.DataFrame(
        {
            "u": np.repeat(np.arange(units.size), n_t),
            "t": np.tile(np.arange(n_t), units.size),
        }
    )
    k = units[rows["u"]]
    rows["y"] = ybar[k, rows["t"]] + 0.0
    rows["d"] = (rows["t"].to_numpy() >= start[k]).astype(float)
    fit = twfe("y ~ d | u + t", rows)
    assert float(fit.coef[0]) == pytest.approx(beta, abs=1e-10)


def test_large_panel_is_fast() -> None:
    import time

    rng = np.random.default_rng(1)
    n_units, n_t = 3000, 60
    cohort = rng.choice(np.r_[np.arange(5, 55, 2), [np.nan] * 8], size=n_units)
    df = pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n_units), n_t),
            "step": np.tile(np.arange(n_t), n_units),
            "cohort": np.repeat(cohort, n_t),
        }
    )
    df["y"] = rng.standard_normal(len(df))
    t0 = time.perf_counter()
    r = bacon_decomposition(df, "y", "step", "unit", "cohort")
    assert time.perf_counter() - t0 < 10
    assert r.comparisons["weight"].sum() == pytest.approx(1.0, abs=1e-12)
    assert r.glance()["decomposition_sum"].iloc[0] == pytest.approx(r.twfe_estimate, abs=1e-10)
