"""Repeated cross-sections: :func:`att_gt_rc` against R ``did``'s ``panel = FALSE`` ports.

Oracles (test-only, installed in the venv; none written here):

* ``moderndid==0.2.0`` — a port of R ``did`` / ``DRDID`` whose ``att_gt(panel=False)`` and
  ``drdid_rc`` / ``reg_did_rc`` / ``std_ipw_did_rc`` we compare cell by cell (ATT, analytic
  SE), the 2x2 influence functions observation by observation, and all four ``aggte``
  aggregations (estimates and SEs, including the estimated-weights term).
* ``csdid`` (the Python port of R did used in ``test_peers.py``) with ``panel=False``.

Data: simulated repeated cross-sections (each row its own instance) with a known effect
``1 + 0.5 (t - g)`` after treatment, a covariate that shifts with cohort and whose effect
drifts over time (so unconditional parallel trends fail and ``xformla`` matters), and sampling
weights. Tolerances: 1e-8 on estimates and SEs (observed ~1e-12: the logit is solved by our
Newton iterations versus statsmodels' IRLS).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from causalmem._numerics.drdid_rc import dr_did_rc, ipw_did_rc, mean_did_rc, reg_did_rc
from causalmem.errors import (
    AlwaysTreatedError,
    IdentificationError,
    MissingColumnError,
    OptionError,
    OutcomeError,
)
from causalmem.estimators.aggte import aggte
from causalmem.estimators.att_gt_rc import att_gt_rc
from causalmem.results.attgt import AttGtResult

ATOL = 1e-8


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def _rc_frame(n: int = 3000, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = rng.choice(np.array([1, 2, 3, 4, 5]), size=n)
    g = rng.choice([0, 3, 4, 5], size=n, p=[0.4, 0.2, 0.2, 0.2]).astype(float)
    x1 = rng.normal(size=n) + 0.3 * (g > 0)
    te = np.where((g > 0) & (t >= g), 1 + 0.5 * (t - g), 0.0)
    y = 0.5 * t + x1 + 0.2 * x1 * t + te + rng.normal(size=n)
    return pd.DataFrame(
        {"id": np.arange(n), "t": t, "g0": g, "x1": x1, "y": y, "w": rng.uniform(0.5, 1.5, n)}
    ).assign(g=lambda d: d["g0"].where(d["g0"] > 0))


DF = _rc_frame()


def _moderndid(**kw: Any) -> Any:
    md = pytest.importorskip("moderndid")
    with _quiet():
        return md.att_gt(
            DF, yname="y", tname="t", idname="id", gname="g0", panel=False, boot=False, **kw
        )


@pytest.mark.parametrize("est_method", ["dr", "reg", "ipw"])
@pytest.mark.parametrize("control_group", ["nevertreated", "notyettreated"])
@pytest.mark.parametrize("xformla", [None, "~ x1"])
def test_cells_match_moderndid(est_method: str, control_group: str, xformla: str | None) -> None:
    ours = att_gt_rc(
        DF,
        "y",
        "t",
        "g",
        xformla=xformla,
        est_method=est_method,  # type: ignore[arg-type]
        control_group=control_group,  # type: ignore[arg-type]
        weightsname="w",
        bstrap=False,
    )
    ref = _moderndid(
        xformla=xformla, est_method=est_method, control_group=control_group, weightsname="w"
    )
    np.testing.assert_allclose(ours.group, np.asarray(ref.groups, float))
    np.testing.assert_allclose(ours.time, np.asarray(ref.times, float))
    np.testing.assert_allclose(ours.att, np.asarray(ref.att_gt), atol=ATOL, rtol=0)
    np.testing.assert_allclose(ours.se, np.asarray(ref.se_gt), atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["simple", "dynamic", "group", "calendar"])
def test_aggte_matches_moderndid(kind: str) -> None:
    md = pytest.importorskip("moderndid")
    ours = aggte(att_gt_rc(DF, "y", "t", "g", xformla="~ x1", bstrap=False), kind)  # type: ignore[arg-type]
    with _quiet():
        ref = md.aggte(_moderndid(xformla="~ x1"), type=kind)
    assert ours.overall_estimate == pytest.approx(ref.overall_att, abs=ATOL)
    assert ours.overall_std_error == pytest.approx(ref.overall_se, abs=ATOL)
    if kind != "simple":
        np.testing.assert_allclose(ours.estimate, np.asarray(ref.att_by_event), atol=ATOL)
        np.testing.assert_allclose(ours.std_error, np.asarray(ref.se_by_event), atol=ATOL)


def test_cells_match_csdid() -> None:
    # ATT(g, t) agree to rounding. SEs differ by up to ~2 %: csdid's ``drdid_rc`` subtracts
    # the base-period outcome-regression estimation effect (``inf_treat_or_post -
    # inf_treat_or_pre``, likewise for the comparison part), whereas R DRDID::drdid_rc adds it
    # (``inf.treat.or <- inf.treat.or.post + inf.treat.or.pre``; DRDID/R/drdid_rc.R, read via
    # the code index) and moderndid follows R. We follow R (exact moderndid parity above). The
    # two terms cancel asymptotically when the propensity score is right (locally efficient),
    # which is why the gap is small.
    csdid_att_gt = pytest.importorskip("csdid.att_gt")
    d = DF.assign(g0=DF["g0"].astype("int64"))
    with _quiet():
        m = csdid_att_gt.ATTgt(
            yname="y", tname="t", idname="id", gname="g0", data=d, xformla="~ x1", panel=False
        ).fit(est_method="dr", bstrap=False)
    ours = att_gt_rc(DF, "y", "t", "g", xformla="~ x1", bstrap=False)
    np.testing.assert_allclose(ours.att, np.asarray(m.results["att"], float), atol=1e-6)
    np.testing.assert_allclose(ours.se, np.asarray(m.results["se"], float), rtol=0.03)
    # reg (no propensity score, no such term) agrees exactly.
    with _quiet():
        m = csdid_att_gt.ATTgt(
            yname="y", tname="t", idname="id", gname="g0", data=d, xformla="~ x1", panel=False
        ).fit(est_method="reg", bstrap=False)
    ours = att_gt_rc(DF, "y", "t", "g", xformla="~ x1", est_method="reg", bstrap=False)
    np.testing.assert_allclose(ours.att, np.asarray(m.results["att"], float), atol=1e-8)
    np.testing.assert_allclose(ours.se, np.asarray(m.results["se"], float), atol=1e-8)


def test_two_by_two_influence_functions_match_moderndid() -> None:
    md_dr = pytest.importorskip("moderndid.drdid.estimators.drdid_rc")
    from moderndid.drdid.estimators.reg_did_rc import reg_did_rc as m_reg
    from moderndid.drdid.estimators.std_ipw_did_rc import std_ipw_did_rc as m_ipw

    rng = np.random.default_rng(0)
    n = 600
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.uniform(size=n)])
    d = (rng.uniform(size=n) < 1 / (1 + np.exp(-0.5 * x[:, 1]))).astype(float)
    post = (rng.uniform(size=n) < 0.5).astype(float)
    y = x[:, 1] + 0.5 * x[:, 2] + 0.3 * d + 0.7 * post + 1.2 * d * post + rng.normal(size=n)
    w = rng.uniform(0.5, 2, size=n)
    pairs = ((dr_did_rc, md_dr.drdid_rc), (reg_did_rc, m_reg), (ipw_did_rc, m_ipw))
    for ours_f, theirs in pairs:
        a = ours_f(y, post, d, x, w)
        with _quiet():
            b = theirs(y, post, d, x, i_weights=w.copy(), influence_func=True)
        assert a.att == pytest.approx(b.att, abs=1e-9)
        np.testing.assert_allclose(a.inf, b.att_inf_func, atol=1e-8)
    # Without covariates all of them are the difference of four weighted cell means.
    m = mean_did_rc(y, post, d, w)
    for f in (dr_did_rc, reg_did_rc, ipw_did_rc):
        r = f(y, post, d, x[:, :1], w)
        assert r.att == pytest.approx(m.att, abs=1e-12)
        np.testing.assert_allclose(r.inf, m.inf, atol=1e-10)


def test_recovers_known_effect_and_bootstrap_band() -> None:
    df = _rc_frame(n=20000, seed=5)
    res = att_gt_rc(df, "y", "t", "g", xformla="~ x1", seed=3, biters=499)
    assert isinstance(res, AttGtResult)
    assert res.provenance["panel"] is False
    assert res.band == "uniform" and res.crit_val > 1.96
    truth = np.where(res.time >= res.group, 1 + 0.5 * (res.time - res.group), 0.0)
    z = (res.att - truth) / res.se_analytic
    assert np.all(np.abs(z) < 4.5)
    # bootstrap SEs agree with the analytic ones up to Monte Carlo error
    np.testing.assert_allclose(res.se, res.se_analytic, rtol=0.2)
    dyn = aggte(res, "dynamic")
    assert dyn.band == "uniform"
    tid = dyn.tidy()
    e0 = float(tid.loc[tid["event_time"] == 0.0, "estimate"].iloc[0])
    assert abs(float(e0) - 1.0) < 0.15
    # same seed, same draws
    again = att_gt_rc(df, "y", "t", "g", xformla="~ x1", seed=3, biters=499)
    np.testing.assert_array_equal(res.se, again.se)


def test_clustered_se_sums_within_clusters() -> None:
    # Duplicating every row and clustering on the original row keeps the estimate, and the
    # clustered IF is the sum of two identical halves: SE unchanged vs. the single copy.
    d2 = pd.concat([DF, DF], ignore_index=True)
    one = att_gt_rc(DF, "y", "t", "g", bstrap=False)
    two = att_gt_rc(d2, "y", "t", "g", bstrap=False, clustervars="id")
    np.testing.assert_allclose(two.att, one.att, atol=1e-12)
    np.testing.assert_allclose(two.se, one.se, rtol=1e-10)
    naive = att_gt_rc(d2, "y", "t", "g", bstrap=False)
    np.testing.assert_allclose(naive.se * np.sqrt(2), one.se, rtol=1e-10)


def test_errors() -> None:
    with pytest.raises(MissingColumnError, match="nope"):
        att_gt_rc(DF, "nope", "t", "g")
    with pytest.raises(OutcomeError, match="non-finite"):
        att_gt_rc(DF.assign(y=DF["y"].where(DF.index > 0)), "y", "t", "g")
    with pytest.raises(AlwaysTreatedError, match="drop_always_treated"):
        att_gt_rc(DF.assign(g=DF["g"].replace(3.0, 1.0)), "y", "t", "g")
    with pytest.raises(IdentificationError, match="never-treated"):
        att_gt_rc(DF[DF["g"].notna()], "y", "t", "g")
    with pytest.raises(OptionError, match="biters"):
        att_gt_rc(DF, "y", "t", "g", biters=2)
    before = DF.copy()
    att_gt_rc(DF, "y", "t", "g", bstrap=False, xformla="~ x1")
    pd.testing.assert_frame_equal(DF, before)


def test_clustered_bootstrap_is_keyed_by_cluster_id() -> None:
    """Multipliers keyed by (seed, cluster id), as att_gt's: shuffling the rows changes nothing.

    Unclustered repeated cross-sections key each observation by its position (there is no id).
    """
    d2 = pd.concat([DF, DF], ignore_index=True)
    a = att_gt_rc(d2, "y", "t", "g", clustervars="id", biters=200, seed=5)
    shuffled = d2.sample(frac=1.0, random_state=0).reset_index(drop=True)
    b = att_gt_rc(shuffled, "y", "t", "g", clustervars="id", biters=200, seed=5)
    np.testing.assert_allclose(b.att, a.att, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-12)
    assert b.crit_val == pytest.approx(a.crit_val, rel=1e-12)
    # the draws are the keyed multipliers of the cluster ids: the same ids, another seed differ
    c = att_gt_rc(d2, "y", "t", "g", clustervars="id", biters=200, seed=6)
    assert not np.allclose(c.se, a.se)
