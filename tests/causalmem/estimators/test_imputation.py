"""Imputation estimator (Borusyak, Jaravel & Spiess 2024) against references nobody here wrote.

* ``diff-diff==3.13`` ``ImputationDiD`` (test-only oracle): overall ATT, every event-study
  horizon and their conservative SEs, with and without ``leave_one_out``, on a balanced and an
  unbalanced panel (observed agreement ~1e-11 on estimates, ~1e-15 on SEs).
* ``pyfixest==0.60`` ``feols`` (fixest port) for BJS's pre-trend regression (Test 1): the lead
  coefficients on the untreated observations with unit and year effects, CRV1 by unit and
  fixest's default small-sample factor. SEs agree to ~2e-5 relative (pyfixest demeans by
  alternating projections to a tolerance; we solve the normal equations exactly).
* Data: ``df_het`` of R ``did2s`` (46,500 rows, 1,500 units, 1990-2020, cohorts 2000/2010 and
  never treated), as shipped in ``pyfixest/did/data/df_het.csv``; the truth is the column
  ``te + te_dynamic``.
* R ``didimputation`` drops never-treated units from its variance sum
  (``data[!is.infinite(zz000event_time)]`` in ``R/did_imputation.R``, kylebutts/didimputation
  read through the code index); BJS's formula (and diff-diff) sum over every cluster, as we do.
"""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from causalmem.errors import CohortError, IdentificationError, MissingColumnError, OptionError
from causalmem.estimators.imputation import did2s, did_imputation
from causalmem.presentation.tables import etable
from causalmem.results.imputation import ImputationResult


def _df_het() -> pd.DataFrame:
    pytest.importorskip("pyfixest")
    path = Path(str(resources.files("pyfixest"))) / "did" / "data" / "df_het.csv"
    df = pd.read_csv(path)
    return df.assign(gc=df["g"].where(df["g"] > 0))


@pytest.fixture(scope="module")
def het() -> pd.DataFrame:
    return _df_het()


def _dd_event(data: pd.DataFrame, **kw: object) -> tuple[object, pd.DataFrame]:
    dd = pytest.importorskip("diff_diff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = dd.ImputationDiD(cluster="unit", **kw).fit(
            data,
            outcome="dep_var",
            unit="unit",
            time="year",
            first_treat="g",
            aggregate="event_study",
        )
    return m, pd.DataFrame(m.event_study_effects).T


@pytest.mark.parametrize("leave_out", [False, True])
@pytest.mark.parametrize("balanced", [True, False])
def test_matches_diff_diff(het: pd.DataFrame, leave_out: bool, balanced: bool) -> None:
    data = het if balanced else het.sample(frac=0.9, random_state=1).sort_index()
    ours = did_imputation(data, "dep_var", "year", "unit", "gc", horizon=True, leave_out=leave_out)
    ref, es = _dd_event(data, leave_one_out=leave_out)
    assert ours.estimate[0] == pytest.approx(ref.overall_att, abs=1e-8)  # type: ignore[attr-defined]
    assert ours.std_error[0] == pytest.approx(ref.overall_se, abs=1e-10)  # type: ignore[attr-defined]
    t = ours.tidy().query("kind == 'post'")
    es = es.loc[t["event_time"].astype(int).to_list()]
    np.testing.assert_allclose(t["estimate"], es["effect"].astype(float), atol=1e-8)
    np.testing.assert_allclose(t["std_error"], es["se"].astype(float), atol=1e-10)
    np.testing.assert_allclose(t["n_obs"], es["n_obs"].astype(float))


def test_pretrend_regression_matches_fixest(het: pd.DataFrame) -> None:
    pf = pytest.importorskip("pyfixest")
    ours = did_imputation(het, "dep_var", "year", "unit", "gc", pretrends=[-5, -4, -3, -2, -1])
    pre = ours.tidy().query("kind == 'pre'")
    d = het[(het["g"] == 0) | (het["year"] < het["g"])].copy()
    for k in range(1, 6):
        d[f"lead{k}"] = ((d["year"] - d["g"]) == -k) & (d["g"] > 0)
    fml = "dep_var ~ lead5 + lead4 + lead3 + lead2 + lead1 | unit + year"
    # R fixest's default with fixed effects: CRV1 by the first one (unit); pyfixest's default
    # differs (iid), so it is spelled out.
    ref = pf.feols(fml, data=d, vcov={"CRV1": "unit"}).tidy()
    np.testing.assert_allclose(pre["estimate"], ref["Estimate"], atol=1e-9)
    np.testing.assert_allclose(pre["std_error"], ref["Std. Error"], rtol=1e-4)
    w, df, p = ours.pretest
    assert df == 5 and 0 < p < 1
    # (W is the Wald statistic of the five leads with the same covariance)
    b = pre["estimate"].to_numpy()
    v = ours.vcov[:5, :5]
    assert w == pytest.approx(float(b @ np.linalg.solve(v, b)))


def test_all_leads_drop_the_earliest(het: pd.DataFrame) -> None:
    res = did_imputation(het, "dep_var", "year", "unit", "gc", pretrends=True)
    leads = res.tidy().query("kind == 'pre'")["event_time"]
    assert leads.min() == -19.0  # -20 (the earliest) is the reference
    with pytest.raises(OptionError, match="collinear"):
        did_imputation(het, "dep_var", "year", "unit", "gc", pretrends=list(range(-20, 0)))


def test_recovers_truth_and_result_contract(het: pd.DataFrame) -> None:
    res = did_imputation(het, "dep_var", "year", "unit", "gc", horizon=[0, 1, 2, 3])
    assert isinstance(res, ImputationResult)
    treated = het[(het["g"] > 0) & (het["year"] >= het["g"])]
    truth = (treated["te"] + treated["te_dynamic"]).mean()
    ov = res.tidy().query("term == 'overall'").iloc[0]
    assert abs(ov["estimate"] - truth) < 3 * ov["std_error"]
    by_e = (treated["te"] + treated["te_dynamic"]).groupby(treated["year"] - treated["g"]).mean()
    post = res.tidy().query("kind == 'post'")
    z = (post["estimate"].to_numpy() - by_e.loc[[0, 1, 2, 3]].to_numpy()) / post["std_error"]
    assert np.all(np.abs(z) < 4)
    g = res.glance().iloc[0]
    assert g["n_obs"] == len(het) and g["n_units"] == 1500 and g["estimator"] == "imputation"
    assert "Imputation estimator" in res.summary()
    assert "overall" in res.to_markdown()
    tab = etable([res], ["BJS"]).to_frame()
    assert "event_time=2" in tab.index and "overall" in tab.index
    with pytest.raises(ValueError):
        res.estimate[0] = 0.0


def test_matches_two_stage_point_estimates(het: pd.DataFrame) -> None:
    imp = did_imputation(het, "dep_var", "year", "unit", "gc", horizon=True)
    ts = did2s(het, "dep_var", "year", "unit", "gc", horizon=True)
    np.testing.assert_allclose(imp.estimate[1:], ts.estimate, atol=1e-10)


def test_errors_and_drops(het: pd.DataFrame) -> None:
    with pytest.raises(MissingColumnError):
        did_imputation(het, "nope", "year", "unit", "gc")
    bad = het.copy()
    bad.loc[bad.index[0], "gc"] = 2015.0
    with pytest.raises(CohortError, match="constant"):
        did_imputation(bad, "dep_var", "year", "unit", "gc")
    with pytest.raises(OptionError, match="not observed"):
        did_imputation(het, "dep_var", "year", "unit", "gc", horizon=[99])
    with pytest.raises(IdentificationError):
        did_imputation(het.assign(gc=np.nan), "dep_var", "year", "unit", "gc")
    # always-treated units cannot be imputed: dropped with a warning
    at = het.copy()
    first = at["unit"].isin(at["unit"].unique()[:3])
    at.loc[first, "gc"] = 1990.0
    with pytest.warns(Warning, match="cannot be imputed"):
        res = did_imputation(at, "dep_var", "year", "unit", "gc")
    assert res.n_dropped == 3 * 31
    before = het.copy()
    did_imputation(het, "dep_var", "year", "unit", "gc", horizon=True)
    pd.testing.assert_frame_equal(het, before)
