"""bayes_did: covariance structure, exact likelihood, conditional draws, recovery, contract.

Tolerances: the factored sampling covariance and ``engine.combine`` are two algebraically
identical computations (1e-10); the model's log-likelihood is compared with a dense
multivariate normal up to its constant (1e-8 relative: a J x J solve); the vectorised R-hat /
ESS equal ArviZ's to 1e-10 (relative, ESS). Monte Carlo checks (conditional draws of ``theta``)
use 40,000 draws and allow 5 Monte Carlo SEs. Recovery uses fixed seeds, so it is deterministic
on one platform; the bounds are the issue's (90% HDI coverage in [0.8, 0.98] over >= 20 cells,
lower RMSE than the raw Callaway-Sant'Anna cells with ~5 units per cohort).

Sampling tests use PyMC's own sampler (seconds to compile, cached by PyTensor); one test runs
the default ``sampler="auto"`` (nutpie when installed, ~10-25 s of numba compilation).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy import stats

import causalmem as cm
from causalmem._numerics.cellcov import (
    dense_factors,
    period_covariance,
    shrink_correlation,
    structured_factors,
)
from causalmem.errors import CausalmemWarning
from causalmem.results.base import TIDY_COLUMNS

TIGHT = 1e-10
pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
HAS_PYMC = importlib.util.find_spec("pymc") is not None and importlib.util.find_spec("arviz")
needs_pymc = pytest.mark.skipif(not HAS_PYMC, reason="pymc/arviz not installed (causalmem[bayes])")


def _att(g: np.ndarray, t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Memorisation-like decay plus cohort-specific shifts (so alpha has work to do)."""
    return -(2.0 * np.exp(-e / 2.0) + 0.5) + 0.15 * np.cos(g)


def _sim(seed: int = 0, **kw: object) -> cm.SimulatedPanel:
    args: dict[str, object] = dict(
        cohorts=tuple(range(3, 13)),
        units_per_cohort=5,
        n_never=30,
        steps=range(1, 15),
        att=_att,
        seed=seed,
    )
    args.update(kw)
    return cm.simulate_panel(**args)  # type: ignore[arg-type]


def _fit(frame: pd.DataFrame, **kw: object) -> cm.AttGtResult:
    kw.setdefault("bstrap", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        return cm.att_gt(frame, "y", "step", "unit", "cohort", **kw)  # type: ignore[arg-type]


def _identity_r(res: cm.AttGtResult, order: np.ndarray) -> np.ndarray:
    j = res.cells.n_cells
    w = sp.csr_matrix((np.ones(order.size), (order, np.arange(order.size))), shape=(j, order.size))
    return res.engine.combine(w, np.zeros((res.cells.glist.size + 1, order.size)))


def _with_weights_clusters(df: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    units = df["unit"].unique()
    out = df.assign(w=df["unit"].map(pd.Series(rng.uniform(0.3, 3.0, units.size), index=units)))
    coh = out["cohort"].astype("Float64").fillna(-1).astype(float)
    out["cl"] = (coh * 100 + out["unit"] % 2).astype(int)  # clusters nested in cohorts
    return out


# ------------------------------------------------------------------ covariance structure
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"base_period": "universal"},
        {"weightsname": "w", "clustervars": "cl"},
        {"anticipation": 1},
    ],
    ids=["varying", "universal", "weights+nested-clusters", "anticipation"],
)
@pytest.mark.parametrize("pre", [False, True], ids=["post", "post+pre"])
def test_structured_covariance_equals_engine_combine(kw: dict, pre: bool) -> None:
    sim = _sim(seed=3, cohorts=(3, 4, 6), units_per_cohort=(5, 7, 6), n_never=9, steps=range(1, 9))
    res = _fit(_with_weights_clusters(sim.frame), **kw)
    c = res.cells
    sel = np.flatnonzero(~c.reference & (c.post | pre))
    fac = structured_factors(res.engine.rows, c, sel, shrinkage=0.0)
    r = _identity_r(res, fac.order)
    v = r.T @ r
    np.testing.assert_allclose(fac.dense(), v, rtol=0, atol=TIGHT * max(1.0, np.abs(v).max()))
    np.testing.assert_allclose(np.sqrt(np.diag(fac.dense())), res.se_analytic[fac.order], rtol=1e-9)
    # Block-diagonal over cohorts plus the shared rank <= T never-treated term.
    assert fac.ctrl_cov is not None
    assert np.linalg.matrix_rank(fac.control_design() @ fac.ctrl_cov) <= fac.periods.size


def test_period_covariance_is_the_mean_path_covariance() -> None:
    # P_k = Cov(mean outcome path of block k) on the r scale: sample covariance / n (ddof 0).
    sim = _sim(seed=5, cohorts=(3, 5), units_per_cohort=8, n_never=10, steps=range(1, 7))
    res = _fit(sim.frame)
    pc = period_covariance(res.engine.rows)
    rows = res.engine.rows
    for k in range(pc.n_blocks):
        z = rows.Z[rows.block[k] : rows.block[k + 1]]
        np.testing.assert_allclose(
            pc.period_cov(k), np.cov(z.T, ddof=0) / z.shape[0], rtol=1e-10, atol=1e-14
        )


def test_shrinkage_keeps_variances_and_makes_small_cohorts_definite() -> None:
    # 4 units per cohort, 12 periods: the raw per-cohort covariance is singular (rank 3).
    sim = _sim(seed=1, cohorts=(3, 5, 7), units_per_cohort=4, n_never=40, steps=range(1, 13))
    res = _fit(sim.frame)
    c = res.cells
    sel = np.flatnonzero(c.post)
    raw = structured_factors(res.engine.rows, c, sel, shrinkage=0.0)
    auto = structured_factors(res.engine.rows, c, sel)
    assert np.linalg.eigvalsh(raw.blocks[0]).min() < 1e-12 * raw.blocks[0].max()
    for blk in auto.blocks:
        assert np.linalg.eigvalsh(blk).min() > 0
    np.testing.assert_allclose(np.diag(auto.ctrl_cov), np.diag(raw.ctrl_cov), rtol=1e-12)
    assert np.all((auto.shrinkage > 0) & (auto.shrinkage < 1))
    # ddof=1 rescales each block by n / (n - 1).
    d1 = structured_factors(res.engine.rows, c, sel, shrinkage=0.0, ddof=1)
    np.testing.assert_allclose(d1.blocks[0], raw.blocks[0] * 4 / 3, rtol=1e-12)
    cov = np.array([[4.0, 2.0], [2.0, 1.0]])
    np.testing.assert_allclose(shrink_correlation(cov, np.eye(2), 0.5), [[4, 1], [1, 1]])


def test_structured_covariance_rejects_not_yet_treated_and_dense_matches() -> None:
    sim = _sim(seed=2, cohorts=(3, 4, 6), units_per_cohort=6, n_never=8, steps=range(1, 8))
    res = _fit(sim.frame, control_group="notyettreated")
    sel = np.flatnonzero(res.cells.post)
    with pytest.raises(ValueError, match="never-treated"):
        structured_factors(res.engine.rows, res.cells, sel)
    r = _identity_r(res, sel)
    fac = dense_factors(r, sel, shrinkage=0.0)
    np.testing.assert_allclose(fac.dense(), r.T @ r, atol=TIGHT)


# ------------------------------------------------------------------ diagnostics numerics
def _ar_draws() -> list[np.ndarray]:
    """``[c, n, 12]`` AR(1) chains with one non-converged column and one with ties."""
    rng = np.random.default_rng(0)
    out = []
    for c, n in [(2, 400), (4, 101), (2, 7)]:
        phi = rng.uniform(-0.5, 0.97, 12)
        x = np.zeros((c, n, 12))
        e = rng.standard_normal((c, n, 12))
        for t in range(n):
            x[:, t] = (x[:, t - 1] * phi if t else 0.0) + e[:, t]
        x[1, :, 0] += 0.5  # one non-converged column
        x[:, :, 1] = np.round(x[:, :, 1], 1)  # ties
        out.append(x)
    return out


def _arviz_per_column(x: np.ndarray) -> np.ndarray:
    """ArviZ's own R-hat, bulk and tail ESS, one column at a time (its public API)."""
    import arviz as az

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(x.shape[2]):
            col = x[:, :, i]
            if int(az.__version__.split(".")[0]) >= 1:
                kw = {"chain_axis": 0, "draw_axis": 1}
                out.append(
                    (
                        az.rhat(col, **kw),
                        az.ess(col, method="bulk", **kw),
                        az.ess(col, method="tail", prob=(0.05, 0.95), **kw),
                    )
                )
            else:
                out.append(
                    (
                        az.rhat(col, method="rank"),
                        az.ess(col, method="bulk"),
                        az.ess(col, method="tail"),
                    )
                )
    return np.array(out, dtype=np.float64)


@needs_pymc
@pytest.mark.parametrize("case", [0, 1, 2])
def test_diagnostics_are_arviz_and_the_vectorised_kernel_equals_it(
    case: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from causalmem.results import bayes as RB

    x = _ar_draws()[case]  # (2, 400), (4, 101), (2, 7): the draws the hand-written code met
    ref = _arviz_per_column(x)
    rhat, ess = RB.rhat_ess_bulk(x)  # < VECTORISED_FROM columns: ArviZ on the whole array
    np.testing.assert_allclose(rhat, ref[:, 0], rtol=1e-12)
    np.testing.assert_allclose(ess, ref[:, 1], rtol=1e-12)
    np.testing.assert_allclose(RB.ess_tail(x), ref[:, 2], rtol=1e-12)
    # The vectorised kernel (used from VECTORISED_FROM columns on) equals ArviZ's to 1e-10.
    k_rhat, k_ess = RB.convergence(x)
    np.testing.assert_allclose(k_rhat, ref[:, 0], rtol=1e-10)
    np.testing.assert_allclose(k_ess, ref[:, 1], rtol=1e-10)
    monkeypatch.setattr(RB, "VECTORISED_FROM", 1)
    np.testing.assert_allclose(RB.rhat_ess_bulk(x)[0], ref[:, 0], rtol=1e-10)
    # ArviZ's tail ESS equals the hand-written one it replaces: the smaller ESS of the 5% and
    # 95% quantile indicators (split chains, no rank normalisation).
    flat = x.reshape(-1, x.shape[2])
    old = np.full(x.shape[2], np.inf)
    for prob in (0.05, 0.95):
        ind = (x <= np.quantile(flat, prob, axis=0)[None, None, :]).astype(np.float64)
        old = np.minimum(old, RB._ess_raw(RB._split_chains(ind)))
    np.testing.assert_allclose(RB.ess_tail(x), old, rtol=1e-10)


def _old_hdi(draws: np.ndarray, prob: float) -> np.ndarray:
    """The hand-written HDI that ArviZ's replaced: shortest window of ``floor(prob n)`` gaps."""
    s = np.sort(draws, axis=0)
    n = s.shape[0]
    k = min(max(int(np.floor(prob * n)), 1), n - 1)
    lo = np.argmin(s[k:] - s[: n - k], axis=0)
    cols = np.arange(s.shape[1])
    return np.c_[s[lo, cols], s[lo + k, cols]]


@needs_pymc
def test_hdi_is_arviz_and_equals_the_old_one() -> None:
    import arviz as az

    from causalmem.results.bayes import hdi

    x = np.random.default_rng(3).gamma(2.0, size=(2, 1000, 5))
    lo, hi = hdi(x, 0.9)
    flat = x.reshape(2000, 5)
    if int(az.__version__.split(".")[0]) >= 1:
        ref = np.array([az.hdi(flat[:, i], prob=0.9) for i in range(5)])
    else:
        ref = np.array([az.hdi(flat[:, i], hdi_prob=0.9) for i in range(5)])
    np.testing.assert_allclose(np.c_[lo, hi], ref, rtol=1e-12)
    for prob in (0.5, 0.9, 0.95):
        lo2, hi2 = hdi(x, prob)
        np.testing.assert_allclose(np.c_[lo2, hi2], _old_hdi(flat, prob), rtol=1e-12)


def _posterior_container(post: Any) -> Any:
    """ArviZ's container holding just a posterior group (DataTree from ArviZ 1 on)."""
    import arviz as az
    import xarray as xr

    if int(az.__version__.split(".")[0]) >= 1:
        return xr.DataTree.from_dict({"posterior": post})
    return az.InferenceData(posterior=post)


def _groups(idata: object) -> set[str]:
    """The group names of ArviZ's container (DataTree children, InferenceData groups)."""
    import xarray as xr

    if isinstance(idata, xr.DataTree):
        return set(idata.children)
    return set(idata.groups())  # type: ignore[attr-defined]


# ------------------------------------------------------------------ exact likelihood
def _small_cells(pre: bool, control_group: str = "nevertreated"):  # type: ignore[no-untyped-def]
    import pymc as pm

    from causalmem.estimators import bayes as B

    sim = _sim(seed=4, cohorts=(3, 5, 6), units_per_cohort=(4, 6, 5), n_never=8, steps=range(1, 9))
    res = _fit(sim.frame, control_group=control_group)
    cs = B._cell_set(res, pre)
    scale, center = B._data_scale(cs)
    fac, _ = B._factors(res, cs.order, None)
    cs = B._reorder(cs, fac.order)
    built = B._build_cells_model(pm, cs, fac, "rw", scale, center)
    return res, cs, fac, built, scale


@needs_pymc
@pytest.mark.parametrize("pre", [False, True], ids=["post", "post+pre"])
def test_cells_likelihood_is_the_dense_gaussian(pre: bool) -> None:
    # ATT_hat ~ N(mu(e) - A u_C, B + sigma_delta^2 I + sigma_alpha^2 Z (I - 11'/K) Z'):
    # alpha and delta are integrated out exactly; differences across parameter values match.
    from causalmem.estimators import bayes as B

    _, cs, fac, built, scale = _small_cells(pre)
    m = built.model
    f = m.compile_fn(
        m.replace_rvs_by_values([m["mu"], m["z_ctrl"], m["likelihood"]]),
        inputs=m.value_vars,
        on_unused_input="ignore",
    )
    lc = B._psd_sqrt(fac.ctrl_cov)
    a = fac.control_design()
    v_treated = fac.dense() - a @ fac.ctrl_cov @ a.T
    j, k = cs.n, cs.cohorts.size
    zp = np.zeros((j, k))
    zp[np.arange(j), cs.cohort_code] = cs.post
    rng = np.random.default_rng(0)
    ip = m.initial_point()
    gaps = []
    for _ in range(3):
        point = {name: val + rng.normal(size=np.shape(val)) * 0.5 for name, val in ip.items()}
        mu, z, ll = f(point)
        sd = np.exp(point["sigma_delta_std_log__"]) * scale
        sa = np.exp(point["sigma_alpha_std_log__"]) * scale
        u = lc @ z
        mean = mu[np.maximum(cs.e_code, 0)] * cs.post - (u[fac.t_pos] - u[fac.b_pos])
        cov = v_treated + sd**2 * np.eye(j) + sa**2 * zp @ (np.eye(k) - 1.0 / k) @ zp.T
        gaps.append(float(ll) - stats.multivariate_normal(mean, cov).logpdf(cs.y))
    expected = j / 2 * np.log(2 * np.pi) + j * np.log(scale)  # dropped constant, std units
    np.testing.assert_allclose(gaps, expected, rtol=1e-8)


@needs_pymc
def test_dense_fallback_likelihood_is_the_dense_gaussian() -> None:
    _, cs, fac, built, scale = _small_cells(False, "notyettreated")
    assert fac.ctrl_cov is None and len(fac.blocks) == 1
    m = built.model
    f = m.compile_fn(
        m.replace_rvs_by_values([m["mu"], m["alpha"], m["likelihood"]]),
        inputs=m.value_vars,
        on_unused_input="ignore",
    )
    rng = np.random.default_rng(1)
    ip = m.initial_point()
    gaps = []
    for _ in range(3):
        point = {name: val + rng.normal(size=np.shape(val)) * 0.5 for name, val in ip.items()}
        mu, alpha, ll = f(point)
        assert abs(alpha.sum()) < 1e-10  # zero-sum cohort effects
        sd = np.exp(point["sigma_delta_std_log__"]) * scale
        mean = (mu[np.maximum(cs.e_code, 0)] + alpha[cs.cohort_code]) * cs.post
        cov = fac.blocks[0] + sd**2 * np.eye(cs.n)
        gaps.append(float(ll) - stats.multivariate_normal(mean, cov).logpdf(cs.y))
    np.testing.assert_allclose(gaps, cs.n / 2 * np.log(2 * np.pi) + cs.n * np.log(scale), rtol=1e-8)


@needs_pymc
def test_conditional_draws_of_theta_and_alpha_are_exact() -> None:
    import xarray as xr

    from causalmem.estimators import bayes as B

    _, cs, fac, built, _ = _small_cells(True)
    pc = built.post
    n_draws = 40_000
    rng = np.random.default_rng(2)
    mu = rng.normal(size=cs.e_grid.size) - 1.0
    z = rng.normal(size=fac.periods.size)
    sd, sa = 0.3, 0.4

    def rep(x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(x, (1, n_draws, *np.shape(x))).copy()

    post = xr.Dataset(
        {
            "mu": (("chain", "draw", "event_time"), rep(mu)),
            "z_ctrl": (("chain", "draw", "period"), rep(z)),
            "sigma_delta": (("chain", "draw"), rep(np.float64(sd))),
            "sigma_alpha": (("chain", "draw"), rep(np.float64(sa))),
        },
        coords={"chain": [0], "draw": np.arange(n_draws)},
    )
    idata = _posterior_container(post)
    B._add_theta(idata, pc, seed=3)
    theta = idata.posterior["theta"].values.reshape(n_draws, -1)
    alpha = idata.posterior["alpha"].values.reshape(n_draws, -1)
    # Dense Gaussian conditional given (mu, u_C, sigma_delta, sigma_alpha).
    j, k = cs.n, cs.cohorts.size
    zp = np.zeros((j, k))
    zp[np.arange(j), cs.cohort_code] = cs.post
    a = fac.control_design()
    u = B._psd_sqrt(fac.ctrl_cov) @ z
    m_s = mu[np.maximum(cs.e_code, 0)] * cs.post
    m_y = m_s - (u[fac.t_pos] - u[fac.b_pos])
    c_alpha = sa**2 * (np.eye(k) - 1.0 / k)
    s_theta = sd**2 * np.eye(j) + zp @ c_alpha @ zp.T
    s_y = fac.dense() - a @ fac.ctrl_cov @ a.T + s_theta
    gain = np.linalg.solve(s_y, s_theta).T
    mean = m_s + gain @ (cs.y - m_y)
    cov = s_theta - gain @ s_theta
    sd_t = np.sqrt(np.diag(cov))
    assert np.max(np.abs(theta.mean(0) - mean) / sd_t) < 5 / np.sqrt(n_draws) * 4
    assert np.max(np.abs(theta.std(0) / sd_t - 1)) < 0.03
    g_a = np.linalg.solve(s_y, zp @ c_alpha).T
    a_mean = g_a @ (cs.y - m_y)
    a_sd = np.sqrt(np.diag(c_alpha - g_a @ (zp @ c_alpha)))
    assert np.max(np.abs(alpha.mean(0) - a_mean) / a_sd) < 5 / np.sqrt(n_draws) * 4
    np.testing.assert_allclose(alpha.sum(axis=1), 0.0, atol=1e-10)


# ------------------------------------------------------------------ sampling: recovery
@pytest.fixture(scope="module")
def small_panel() -> cm.SimulatedPanel:
    return _sim(seed=0)


def _recovery(post: object, truth: pd.DataFrame) -> tuple[int, float, float, float]:
    tidy = post.tidy(hdi_prob=0.9)  # type: ignore[attr-defined]
    m = tidy.merge(truth.astype({"group": float, "time": float}), on=["group", "time"])
    m = m[m["post"]]
    cover = float(((m["att"] >= m["conf_low"]) & (m["att"] <= m["conf_high"])).mean())
    rmse = float(np.sqrt(np.mean((m["estimate"] - m["att"]) ** 2)))
    raw = float(np.sqrt(np.mean((m["raw_estimate"] - m["att"]) ** 2)))
    return len(m), cover, rmse, raw


@needs_pymc
def test_cells_model_recovers_a_simulated_profile(small_panel: cm.SimulatedPanel) -> None:
    # 10 cohorts of 5 units, 14 checkpoints: 75 post cells, raw cells are noisy.
    from causalmem.estimators.bayes import bayes_did

    res = _fit(small_panel.frame)
    post = bayes_did(res, draws=1000, tune=1000, seed=0, sampler="pymc")
    n, cover, rmse, raw = _recovery(post, small_panel.truth)
    assert n >= 20
    assert 0.8 <= cover <= 0.98, cover
    assert rmse < raw, (rmse, raw)
    assert post.diagnostics["divergences"] == 0
    assert post.covariance == "structured"


@needs_pymc
def test_units_model_recovers_a_simulated_profile() -> None:
    # A smaller panel for the unit-level model (6 cohorts of 5 units, 10 checkpoints).
    from causalmem.estimators.bayes import bayes_did

    sim = _sim(seed=1, cohorts=tuple(range(3, 9)), steps=range(1, 11))
    res = _fit(sim.frame)
    before = sim.frame.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        post = bayes_did(
            res, model="units", data=sim.frame, draws=600, tune=600, seed=1, sampler="pymc"
        )
    pd.testing.assert_frame_equal(sim.frame, before)
    n, cover, rmse, raw = _recovery(post, sim.truth)
    assert n >= 20
    # The unit-level model also uses every untreated observation: much lower RMSE. Its HDIs
    # are conservative here (the true cell deviations are 0, sigma_delta is not).
    assert rmse < raw
    assert cover >= 0.8
    assert {"unit_effect", "time_effect", "sigma_eps"} <= set(post.idata.posterior.data_vars)


# ------------------------------------------------------------------ contract, warnings
@pytest.fixture(scope="module")
def tiny_fit(small_panel: cm.SimulatedPanel):  # type: ignore[no-untyped-def]
    """A deliberately short run: diagnostics fail and warn."""
    if not HAS_PYMC:
        pytest.skip("pymc/arviz not installed")
    from causalmem.estimators.bayes import bayes_did

    res = _fit(small_panel.frame)
    before = (res.att.copy(), res.se.copy(), res.tidy())
    with pytest.warns(CausalmemWarning, match=r"diagnostics failed: .*ess_bulk = \d+ < 400"):
        post = bayes_did(res, draws=30, tune=30, chains=2, seed=11, sampler="pymc")
    return res, post, before


@needs_pymc
def test_bayes_result_honours_the_protocol(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    # the check of tests/test_result_protocol.py, on this file's shared short fit
    from lmecon.result import check_result

    check_result(tiny_fit[1])


def test_diagnostics_warning_names_the_numbers(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    _, post, _ = tiny_fit
    d = post.diagnostics
    assert d["passed"] is False
    assert d["min_ess_bulk"] < 400
    assert {"max_r_hat", "min_ess_bulk", "divergences", "max_r_hat_nuisance"} <= set(d)
    assert post.glance().loc[0, "diagnostics_passed"] == False  # noqa: E712


@needs_pymc
def test_tidy_contract(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    res, post, _ = tiny_fit
    t9 = post.tidy()
    assert tuple(t9.columns[: len(TIDY_COLUMNS)]) == TIDY_COLUMNS
    for col in ("group", "time", "event_time", "post", "r_hat", "ess_bulk"):
        assert col in t9.columns
    assert t9["statistic"].isna().all() and t9["p_value"].isna().all()
    assert len(t9) == int(res.cells.post.sum())
    assert (t9["conf_low"] <= t9["estimate"]).all() and (t9["estimate"] <= t9["conf_high"]).all()
    draws = post.idata.posterior["theta"].values.reshape(-1, len(t9))
    np.testing.assert_allclose(t9["estimate"], draws.mean(0), rtol=1e-12)
    np.testing.assert_allclose(t9["std_error"], draws.std(0, ddof=1), rtol=1e-12)
    t5 = post.tidy(hdi_prob=0.5)
    assert ((t5["conf_high"] - t5["conf_low"]) <= (t9["conf_high"] - t9["conf_low"]) + 1e-12).all()
    assert (t9["event_time"] == t9["time"] - t9["group"]).all()
    t9.loc[0, "estimate"] = 99.0  # a new frame each call
    assert post.tidy().loc[0, "estimate"] != 99.0
    prof = post.profile()
    assert tuple(prof.columns[: len(TIDY_COLUMNS)]) == TIDY_COLUMNS
    assert prof["event_time"].tolist() == sorted(set(t9["event_time"]))
    g = post.glance()
    assert len(g) == 1 and g.loc[0, "n_post_cells"] == len(t9)
    assert "mu(e)" in post.summary() and "Diagnostics" in post.summary()
    assert "\\begin{table}" in post.to_latex() and "|" in post.to_markdown()
    assert set(post.hyperparameters()["term"]) >= {"sigma_mu", "sigma_alpha", "sigma_delta"}
    assert {"prior", "posterior"} & _groups(post.idata) == {"posterior"}
    assert "constant_data" in _groups(post.idata)
    assert post.idata.posterior["theta"].dims == ("chain", "draw", "cell")
    with pytest.raises(ValueError, match="hdi_prob"):
        post.tidy(hdi_prob=1.5)
    with pytest.raises(dataclasses_frozen_error()):
        post.spec = None  # type: ignore[misc]
    assert post.provenance["bayes_versions"]["pymc"] != "not installed"
    assert "mu" in post.priors and "likelihood" in post.priors


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


@needs_pymc
def test_inputs_never_mutated_and_seed_reproducible(tiny_fit, small_panel) -> None:  # type: ignore[no-untyped-def]
    from causalmem.estimators.bayes import bayes_did

    res, post, (att, se, tidy) = tiny_fit
    np.testing.assert_array_equal(res.att, att)
    np.testing.assert_array_equal(res.se, se)
    pd.testing.assert_frame_equal(res.tidy(), tidy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        again = bayes_did(res, draws=30, tune=30, chains=2, seed=11, sampler="pymc")
    pd.testing.assert_frame_equal(again.tidy(), post.tidy())


@needs_pymc
def test_placebo_cells_gp_pooling_and_dense_fallback_run() -> None:
    from causalmem.estimators.bayes import bayes_did

    sim = _sim(seed=2, cohorts=(3, 5, 7), units_per_cohort=6, n_never=20, steps=range(1, 10))
    res = _fit(sim.frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        pre = bayes_did(
            res, include_pre=True, pooling="gp", draws=100, tune=100, seed=3, sampler="pymc"
        )
        nyt = bayes_did(
            _fit(sim.frame, control_group="notyettreated"),
            draws=100,
            tune=100,
            seed=3,
            sampler="pymc",
        )
    t = pre.tidy()
    assert (~t["post"]).sum() > 0 and len(t) == int((~res.cells.reference).sum())
    assert "lengthscale" in pre.idata.posterior
    assert nyt.covariance == "dense"
    assert np.isfinite(nyt.tidy()["estimate"]).all()


@needs_pymc
@pytest.mark.slow
def test_default_sampler_auto(small_panel: cm.SimulatedPanel) -> None:
    from causalmem.estimators.bayes import bayes_did

    res = _fit(small_panel.frame)
    post = bayes_did(res, draws=500, tune=500, seed=5)
    expected = "nutpie" if importlib.util.find_spec("nutpie") else "pymc"
    assert post.spec.sampler_used == expected
    n, cover, rmse, raw = _recovery(post, small_panel.truth)
    assert rmse < raw and cover >= 0.8


# ------------------------------------------------------------------ bad inputs
def test_bad_inputs(small_panel: cm.SimulatedPanel) -> None:
    from causalmem.estimators.bayes import bayes_did

    res = _fit(small_panel.frame)
    with pytest.raises(ValueError, match="model="):
        bayes_did(res, model="twfe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pooling="):
        bayes_did(res, pooling="spline")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampler="):
        bayes_did(res, sampler="stan")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data="):
        bayes_did(res, model="units")
    with pytest.raises(ValueError, match="draws"):
        bayes_did(res, draws=0)
    with pytest.raises(ValueError, match="target_accept"):
        bayes_did(res, target_accept=1.0)
    with pytest.raises(ValueError, match="shrinkage"):
        bayes_did(res, shrinkage=2.0)
    with pytest.raises(TypeError, match="AttGtResult"):
        bayes_did(res.tidy())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        bayes_did(res, seed=1.5)  # type: ignore[arg-type]


@needs_pymc
def test_dense_fallback_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from causalmem.estimators import bayes as B

    res = _fit(
        _sim(seed=2, cohorts=(3, 5), units_per_cohort=6, n_never=20).frame,
        control_group="notyettreated",
    )
    monkeypatch.setattr(B._cells, "MAX_DENSE_CELLS", 3)  # where _factors reads the cap
    with pytest.raises(ValueError, match="structured covariance"):
        B.bayes_did(res, draws=10, tune=10)


def test_missing_pymc_gives_install_hint(
    monkeypatch: pytest.MonkeyPatch, small_panel: cm.SimulatedPanel
) -> None:
    from causalmem.estimators.bayes import bayes_did

    res = _fit(small_panel.frame)
    monkeypatch.setitem(sys.modules, "pymc", None)
    with pytest.raises(ImportError, match=r"pip install causalmem\[bayes\]"):
        bayes_did(res, draws=10, tune=10, seed=0)


def test_import_stays_light() -> None:
    code = (
        "import sys, causalmem, causalmem.estimators.bayes, causalmem.results.bayes, "
        "causalmem._numerics.cellcov; "
        "heavy = [m for m in ('pymc', 'arviz', 'pytensor', 'nutpie', 'numba') "
        "if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
