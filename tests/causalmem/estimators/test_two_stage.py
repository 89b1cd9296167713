"""Two-stage DiD (Gardner 2022) against R ``did2s`` published output and two ports.

References (none written here):

* R ``did2s`` README (kylebutts/did2s, README.md at commit 078f717c, did2s v1.1.0, read
  through the code index): ``did2s(df_het, yname = "dep_var", first_stage = ~ 0 | state + year,
  second_stage = ~ i(treat, ref = FALSE), treatment = "treat", cluster_var = "state")`` prints
  ``treat = TRUE 2.152*** (0.0476)`` with 46,500 observations.
* ``pyfixest==0.60`` ``did2s`` (test-only oracle; itself tested against R did2s via rpy2):
  static and event-study coefficients and GMM-corrected SEs, to 1e-6 (pyfixest demeans by
  alternating projections to a tolerance; we solve the normal equations exactly).
* ``diff-diff==3.13`` ``TwoStageDiD``: event-study SEs and the static overall ATT/SE.

Data: R did2s's ``df_het`` as shipped in ``pyfixest/did/data/df_het.csv`` (46,500 rows, the
README's size).
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causalmem.estimators.imputation import did2s


@pytest.fixture(scope="module")
def het() -> pd.DataFrame:
    pytest.importorskip("pyfixest")
    path = Path(str(resources.files("pyfixest"))) / "did" / "data" / "df_het.csv"
    df = pd.read_csv(path)
    return df.assign(gc=df["g"].where(df["g"] > 0))


def _pf(het: pd.DataFrame, first: str, second: str, cluster: str) -> pd.DataFrame:
    pf = pytest.importorskip("pyfixest")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pf.did2s(
            het,
            yname="dep_var",
            first_stage=first,
            second_stage=second,
            treatment="treat",
            cluster=cluster,
        )
    return fit.tidy()


def test_static_matches_r_readme_and_pyfixest(het: pd.DataFrame) -> None:
    res = did2s(het, "dep_var", "year", "unit", "gc", fe="state", cluster="state")
    est, se = float(res.estimate[0]), float(res.std_error[0])
    # R did2s README: 2.152 (0.0476), printed to 4 significant digits / 3 for the SE
    assert round(est, 3) == 2.152
    assert round(se, 4) == 0.0476
    ref = _pf(het, "~ 0 | state + year", "~ i(treat, ref=False)", "state")
    # pyfixest demeans by alternating projections to a tolerance; with the state effect (units
    # of several cohorts per state) it stops ~7e-7 away from the exact solution we compute.
    assert est == pytest.approx(float(ref["Estimate"].iloc[0]), abs=1e-5)
    assert se == pytest.approx(float(ref["Std. Error"].iloc[0]), abs=1e-6)
    assert res.n_obs == 46_500 and res.n_clusters == het["state"].nunique()


@pytest.mark.slow
def test_event_study_with_leads_matches_pyfixest(het: pd.DataFrame) -> None:
    res = did2s(het, "dep_var", "year", "unit", "gc", horizon=True, pretrends=True)
    ref = _pf(het, "~ 0 | unit + year", "~ i(rel_year, ref=-1.0)", "unit")
    ref = ref[~ref.index.str.contains("inf")]
    ref_e = ref.index.str.replace("rel_year::", "").astype(float)
    ours = res.tidy().set_index("event_time").loc[ref_e]
    # pyfixest's demeaning tolerance (~5e-8 here); diff-diff below agrees to 1e-10.
    np.testing.assert_allclose(ours["estimate"], ref["Estimate"], atol=1e-6)
    np.testing.assert_allclose(ours["std_error"], ref["Std. Error"], atol=1e-6)
    w, df, p = res.pretest
    assert df == int((res.tidy()["kind"] == "pre").sum()) == 20 and np.isfinite(w)


def test_matches_diff_diff(het: pd.DataFrame) -> None:
    dd = pytest.importorskip("diff_diff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = dd.TwoStageDiD(cluster="unit").fit(
            het,
            outcome="dep_var",
            unit="unit",
            time="year",
            first_treat="g",
            aggregate="event_study",
        )
    es = pd.DataFrame(m.event_study_effects).T
    res = did2s(het, "dep_var", "year", "unit", "gc", horizon=True)
    t = res.tidy()
    ref = es.loc[t["event_time"].astype(int).to_list()]
    np.testing.assert_allclose(t["estimate"], ref["effect"].astype(float), atol=1e-8)
    np.testing.assert_allclose(t["std_error"], ref["se"].astype(float), atol=1e-10)
    static = did2s(het, "dep_var", "year", "unit", "gc")
    assert static.estimate[0] == pytest.approx(m.overall_att, abs=1e-8)
    assert static.std_error[0] == pytest.approx(m.overall_se, abs=1e-10)
    assert static.glance().iloc[0]["estimator"] == "two_stage"
    assert "Two-stage" in static.summary()
