"""bayes_did's per-cohort decay: exact likelihood, exact conditional draws, recovery.

The cells model gives each cohort zero-sum coefficients ``(alpha_g, beta_g1, beta_g2)`` on the
loadings ``(1, f_1(e), f_2(e))`` (``causalmem.estimators.bayes._decay``), integrated out exactly
(Woodbury per cohort, plus the cross-cohort zero-sum correction). The references are dense
computations written independently here: the multivariate normal of SciPy with the full
covariance ``V + sigma_delta^2 I + sum_k s_k^2 Z_k (I - 11'/K) Z_k'`` (tolerance 1e-8 relative:
J x J solves), and the Gaussian conditional of ``theta`` and of the coefficients given the
hyperparameters (Monte Carlo, 40,000 draws, 4 x 5 Monte Carlo SEs as in test_bayes.py).
Recovery: a simulated panel (``causalmem.simulate_panel``) whose cohorts have known, distinct
amplitudes and decay rates.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import causalmem as cm
from causalmem.errors import CausalmemWarning

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
HAS_PYMC = importlib.util.find_spec("pymc") is not None and importlib.util.find_spec("arviz")
needs_pymc = pytest.mark.skipif(not HAS_PYMC, reason="pymc/arviz not installed (causalmem[bayes])")


def _att(g: np.ndarray, t: np.ndarray, e: np.ndarray) -> np.ndarray:
    return -(2.0 * np.exp(-e / 2.0) + 0.5) + 0.15 * np.cos(g)


def _fit(frame: pd.DataFrame, **kw: object) -> cm.AttGtResult:
    kw.setdefault("bstrap", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        return cm.att_gt(frame, "y", "step", "unit", "cohort", **kw)  # type: ignore[arg-type]


def _small(pre: bool, control_group: str = "nevertreated", n_decay: int = 2):  # type: ignore[no-untyped-def]
    import pymc as pm

    from causalmem.estimators import bayes as B

    sim = cm.simulate_panel(
        cohorts=(3, 5, 6),
        units_per_cohort=(4, 6, 5),
        n_never=8,
        steps=range(1, 9),
        att=_att,
        seed=4,
    )
    res = _fit(sim.frame, control_group=control_group)
    cs = B._cell_set(res, pre)
    scale, center = B._data_scale(cs)
    fac, _ = B._factors(res, cs.order, None)
    cs = B._reorder(cs, fac.order)
    built = B._build_cells_model(pm, cs, fac, "rw", scale, center, n_decay)
    return res, cs, fac, built, scale


def _loadings(cs) -> np.ndarray:  # type: ignore[no-untyped-def]
    from causalmem.estimators.bayes._decay import cell_loadings, decay_basis

    return cell_loadings(cs.post, cs.e_code, decay_basis(cs.e_grid))


def _coef_cov(cs, s2: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Covariance of sum_k Z_k b_k with zero-sum b_k ~ N(0, s_k^2 (I - 11'/K)) (dense)."""
    f = _loadings(cs)
    j, k = cs.n, cs.cohorts.size
    cov = np.zeros((j, j))
    for c in range(f.shape[1]):
        z = np.zeros((j, k))
        z[np.arange(j), cs.cohort_code] = f[:, c]
        cov += s2[c] * z @ (np.eye(k) - 1.0 / k) @ z.T
    return cov


def test_decay_basis_shape_and_values() -> None:
    # Discrete orthogonal polynomials in u = log1p(e) / log1p(7) on the grid (Gram-Schmidt
    # of 1, u, u^2 done here by hand), scaled to max |f| = 1, f(e_1) > 0.
    from causalmem.estimators.bayes._decay import decay_basis

    e = np.array([0.0, 1.0, 3.0, 7.0])
    f = decay_basis(e)
    u = np.log1p(e) / np.log1p(7.0)
    one = np.ones(4) / 2.0
    p1 = u - (u @ one) * one
    p1 /= np.linalg.norm(p1)
    p2 = u**2 - (u**2 @ one) * one - (u**2 @ p1) * p1
    want = np.c_[p1 / np.max(np.abs(p1)), p2 / np.max(np.abs(p2))]
    want *= np.sign(want[0])
    np.testing.assert_allclose(f, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(f.T @ np.ones(4), 0.0, atol=1e-12)
    assert abs(f[:, 0] @ f[:, 1]) < 1e-12
    assert f.shape == (4, 2) and decay_basis(e, 0).shape == (4, 0)
    np.testing.assert_allclose(decay_basis(np.array([0.0])), [[0.0, 0.0]])


def test_numpy_marginal_equals_dense_gaussian() -> None:
    # marginal_nll2 (Woodbury + zero-sum correction) against the dense Gaussian, one block
    # per cohort with random PSD covariances.
    import scipy.sparse as sp

    from causalmem.estimators.bayes._decay import marginal_nll2

    rng = np.random.default_rng(0)
    sizes = [3, 5, 4, 2]
    n = sum(sizes)
    bounds = np.r_[0, np.cumsum(sizes)]
    blocks = []
    for p in sizes:
        a = rng.normal(size=(p, p))
        blocks.append(a @ a.T / p + 0.1 * np.eye(p))
    f = rng.normal(size=(n, 3))
    s2 = np.array([0.5, 0.3, 0.2])
    sd2 = 0.05
    rho = rng.normal(size=n)
    seg = sp.csr_matrix((np.ones(n), (np.repeat(np.arange(4), sizes), np.arange(n))))
    # rotate to each block's eigenbasis as the model does
    rho_r, f_r, lam = np.zeros(n), np.zeros_like(f), np.zeros(n)
    for h, b in enumerate(blocks):
        sl = slice(bounds[h], bounds[h + 1])
        w, q = np.linalg.eigh(b)
        lam[sl], rho_r[sl], f_r[sl] = w, q.T @ rho[sl], q.T @ f[sl]
    got = marginal_nll2(rho_r, lam, f_r, seg, s2, sd2)
    cov = np.zeros((n, n))
    for h, b in enumerate(blocks):
        sl = slice(bounds[h], bounds[h + 1])
        cov[sl, sl] = b + sd2 * np.eye(b.shape[0])
    g = len(sizes)
    for c in range(3):
        z = np.zeros((n, g))
        z[np.arange(n), np.repeat(np.arange(g), sizes)] = f[:, c]
        cov += s2[c] * z @ (np.eye(g) - 1.0 / g) @ z.T
    want = -2 * stats.multivariate_normal(np.zeros(n), cov).logpdf(rho) - n * np.log(2 * np.pi)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_compiled_marginal_value_and_gradient() -> None:
    # The compiled Op's value equals the NumPy formula (itself equal to the dense Gaussian,
    # above); its gradient (Fisher's identity) equals central finite differences.
    import scipy.sparse as sp

    from causalmem.estimators.bayes._decay import marginal_nll2
    from causalmem.estimators.bayes._decay_op import decay_marginal

    rng = np.random.default_rng(7)
    sizes = [3, 5, 4, 2, 6]
    n = sum(sizes)
    bounds = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    rho = rng.normal(size=n)
    lam = rng.uniform(0.1, 2.0, size=n)
    f = rng.normal(size=(n, 3))
    s2 = np.array([0.5, 0.3, 0.2])
    sd2 = 0.05
    seg = sp.csr_matrix((np.ones(n), (np.repeat(np.arange(len(sizes)), sizes), np.arange(n))))
    d = lam + sd2
    val, g_rho, g_d, g_s2 = decay_marginal(rho, d, f, bounds, s2)
    np.testing.assert_allclose(val, marginal_nll2(rho, lam, f, seg, s2, sd2), rtol=1e-12)

    def fn(r: np.ndarray, dd: np.ndarray, ss: np.ndarray) -> float:
        return float(decay_marginal(r, dd, f, bounds, ss, grad=False)[0])

    h = 1e-6
    eye_n, eye_k = np.eye(n), np.eye(3)
    num_rho = [
        (fn(rho + h * eye_n[i], d, s2) - fn(rho - h * eye_n[i], d, s2)) / (2 * h) for i in range(n)
    ]
    num_d = [
        (fn(rho, d + h * eye_n[i], s2) - fn(rho, d - h * eye_n[i], s2)) / (2 * h) for i in range(n)
    ]
    num_s2 = [
        (fn(rho, d, s2 + h * eye_k[i]) - fn(rho, d, s2 - h * eye_k[i])) / (2 * h) for i in range(3)
    ]
    np.testing.assert_allclose(g_rho, num_rho, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g_d, num_d, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g_s2, num_s2, rtol=1e-6, atol=1e-7)


@needs_pymc
def test_compiled_marginal_refuses_second_derivatives() -> None:
    import pytensor
    import pytensor.tensor as pt

    from causalmem.estimators.bayes._decay_op import _decay_ops

    rho, dvar, s2 = pt.dvector("rho"), pt.dvector("dvar"), pt.dvector("s2")
    f = np.ones((4, 2))
    val = _decay_ops()()(rho, dvar, f, np.array([0, 2, 4]), s2)[0]
    g = pytensor.grad(val, s2)  # first derivatives: fine
    with pytest.raises(NotImplementedError, match="second derivatives"):
        pytensor.grad(g.sum(), s2)


@needs_pymc
def test_model_gradient_matches_finite_differences() -> None:
    # The model's compiled gradient (the Op's gradient outputs through PyTensor's chain rule)
    # against central differences of its compiled log density.
    _, _, _, built, _ = _small(False)
    m = built.model
    logp = m.compile_logp()
    dlogp = m.compile_dlogp()
    ip = m.initial_point()
    rng = np.random.default_rng(3)
    point = {k: v + 0.3 * rng.normal(size=np.shape(v)) for k, v in ip.items()}
    grad = dlogp(point)
    flat = np.concatenate([np.ravel(point[v.name]) for v in m.value_vars])
    sizes = [np.size(point[v.name]) for v in m.value_vars]

    def at(x: np.ndarray) -> float:
        out, i = {}, 0
        for v, k in zip(m.value_vars, sizes, strict=True):
            out[v.name] = x[i : i + k].reshape(np.shape(point[v.name]))
            i += k
        return float(logp(out))

    h = 1e-5
    idx = rng.choice(flat.size, size=min(12, flat.size), replace=False)
    num = [
        (at(flat + h * np.eye(flat.size)[j]) - at(flat - h * np.eye(flat.size)[j])) / (2 * h)
        for j in idx
    ]
    np.testing.assert_allclose(grad[idx], num, rtol=1e-5, atol=1e-6)


@needs_pymc
@pytest.mark.parametrize("pre", [False, True], ids=["post", "post+pre"])
def test_decay_likelihood_is_the_dense_gaussian(pre: bool) -> None:
    from causalmem.estimators import bayes as B

    _, cs, fac, built, scale = _small(pre)
    m = built.model
    f = m.compile_fn(
        m.replace_rvs_by_values([m["mu"], m["z_ctrl"], m["likelihood"]]),
        inputs=m.value_vars,
        on_unused_input="ignore",
    )
    lc = B._psd_sqrt(fac.ctrl_cov)
    a = fac.control_design()
    v_treated = fac.dense() - a @ fac.ctrl_cov @ a.T
    j = cs.n
    rng = np.random.default_rng(0)
    ip = m.initial_point()
    gaps = []
    for _ in range(3):
        point = {name: val + rng.normal(size=np.shape(val)) * 0.5 for name, val in ip.items()}
        mu, z, ll = f(point)
        sd = np.exp(point["sigma_delta_std_log__"]) * scale
        sa = np.exp(point["sigma_alpha_std_log__"]) * scale
        sb = np.exp(point["sigma_beta_std_log__"]) * scale
        u = lc @ z
        mean = mu[np.maximum(cs.e_code, 0)] * cs.post - (u[fac.t_pos] - u[fac.b_pos])
        cov = v_treated + sd**2 * np.eye(j) + _coef_cov(cs, np.r_[sa, sb] ** 2)
        gaps.append(float(ll) - stats.multivariate_normal(mean, cov).logpdf(cs.y))
    expected = j / 2 * np.log(2 * np.pi) + j * np.log(scale)  # dropped constant, std units
    np.testing.assert_allclose(gaps, expected, rtol=1e-8)


@needs_pymc
def test_decay_dense_fallback_likelihood_is_the_dense_gaussian() -> None:
    _, cs, fac, built, scale = _small(False, "notyettreated")
    assert fac.ctrl_cov is None and len(fac.blocks) == 1
    m = built.model
    f = m.compile_fn(
        m.replace_rvs_by_values([m["mu"], m["alpha"], m["beta"], m["likelihood"]]),
        inputs=m.value_vars,
        on_unused_input="ignore",
    )
    fl = _loadings(cs)
    rng = np.random.default_rng(1)
    ip = m.initial_point()
    gaps = []
    for _ in range(3):
        point = {name: val + rng.normal(size=np.shape(val)) * 0.5 for name, val in ip.items()}
        mu, alpha, beta, ll = f(point)
        np.testing.assert_allclose(beta.sum(axis=0), 0.0, atol=1e-10)  # zero-sum per loading
        sd = np.exp(point["sigma_delta_std_log__"]) * scale
        coef = np.column_stack([alpha, beta])[cs.cohort_code]
        mean = mu[np.maximum(cs.e_code, 0)] * cs.post + (coef * fl).sum(axis=1)
        cov = fac.blocks[0] + sd**2 * np.eye(cs.n)
        gaps.append(float(ll) - stats.multivariate_normal(mean, cov).logpdf(cs.y))
    np.testing.assert_allclose(gaps, cs.n / 2 * np.log(2 * np.pi) + cs.n * np.log(scale), rtol=1e-8)


@needs_pymc
def test_decay_conditional_draws_are_exact() -> None:
    import arviz as az
    import xarray as xr

    from causalmem.estimators import bayes as B

    _, cs, fac, built, _ = _small(True)
    pc = built.post
    n_draws = 40_000
    rng = np.random.default_rng(2)
    mu = rng.normal(size=cs.e_grid.size) - 1.0
    z = rng.normal(size=fac.periods.size)
    sd, sa, sb = 0.3, 0.4, np.array([0.5, 0.25])

    def rep(x: np.ndarray | np.float64) -> np.ndarray:
        return np.broadcast_to(x, (1, n_draws, *np.shape(x))).copy()

    post = xr.Dataset(
        {
            "mu": (("chain", "draw", "event_time"), rep(mu)),
            "z_ctrl": (("chain", "draw", "period"), rep(z)),
            "sigma_delta": (("chain", "draw"), rep(np.float64(sd))),
            "sigma_alpha": (("chain", "draw"), rep(np.float64(sa))),
            "sigma_beta": (("chain", "draw", "decay_basis"), rep(sb)),
        },
        coords={"chain": [0], "draw": np.arange(n_draws)},
    )
    idata: Any
    if int(az.__version__.split(".")[0]) >= 1:
        idata = xr.DataTree.from_dict({"posterior": post})
    else:
        idata = az.InferenceData(posterior=post)
    B._add_theta(idata, pc, seed=3)
    theta = idata.posterior["theta"].values.reshape(n_draws, -1)
    beta = idata.posterior["beta"].values.reshape(n_draws, cs.cohorts.size, 2)
    a = fac.control_design()
    u = B._psd_sqrt(fac.ctrl_cov) @ z
    m_s = mu[np.maximum(cs.e_code, 0)] * cs.post
    m_y = m_s - (u[fac.t_pos] - u[fac.b_pos])
    s_theta = sd**2 * np.eye(cs.n) + _coef_cov(cs, np.r_[sa, sb] ** 2)
    s_y = fac.dense() - a @ fac.ctrl_cov @ a.T + s_theta
    gain = np.linalg.solve(s_y, s_theta).T
    mean = m_s + gain @ (cs.y - m_y)
    cov = s_theta - gain @ s_theta
    sd_t = np.sqrt(np.diag(cov))
    assert np.max(np.abs(theta.mean(0) - mean) / sd_t) < 5 / np.sqrt(n_draws) * 4
    assert np.max(np.abs(theta.std(0) / sd_t - 1)) < 0.03
    # beta_1 of each cohort: Cov(b, y) = s^2 (I - 11'/K) Z'
    k = cs.cohorts.size
    z1 = np.zeros((cs.n, k))
    z1[np.arange(cs.n), cs.cohort_code] = _loadings(cs)[:, 1]
    c_b = sb[0] ** 2 * (np.eye(k) - 1.0 / k)
    g_b = np.linalg.solve(s_y, z1 @ c_b).T
    b_mean = g_b @ (cs.y - m_y)
    b_sd = np.sqrt(np.diag(c_b - g_b @ (z1 @ c_b)))
    assert np.max(np.abs(beta[:, :, 0].mean(0) - b_mean) / b_sd) < 5 / np.sqrt(n_draws) * 4
    np.testing.assert_allclose(beta.sum(axis=1), 0.0, atol=1e-10)


def _distinct_decay(g: np.ndarray, t: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Cohorts with distinct peaks (1 ... 4) and decay rates (1 ... 3 checkpoints)."""
    k = (g - 3) / 5.0  # 0 ... 1 over cohorts 3 ... 8
    return -((1.0 + 3.0 * k) * np.exp(-e / (1.0 + 2.0 * k)) + 0.5)


@needs_pymc
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::causalmem.errors.CausalmemWarning")
def test_per_cohort_decay_recovers_distinct_cohort_paths() -> None:
    # 6 cohorts x 20 units, 12 checkpoints; cohorts' effects differ in peak and decay rate.
    # With the per-cohort decay the posterior recovers each cohort's path (90% HDIs cover,
    # RMSE below the level-only model's) and sigma_beta is clearly positive.
    from causalmem.estimators.bayes import bayes_did

    sim = cm.simulate_panel(
        cohorts=tuple(range(3, 9)),
        units_per_cohort=20,
        n_never=40,
        steps=range(1, 13),
        att=_distinct_decay,
        seed=5,
    )
    res = _fit(sim.frame)
    truth = sim.truth.astype({"group": float, "time": float})[["group", "time", "att"]]
    out = {}
    for decay in (False, True):
        post = bayes_did(res, draws=400, tune=400, seed=1, sampler="pymc", cohort_decay=decay)
        m = post.tidy(hdi_prob=0.9).merge(truth, on=["group", "time"])
        m = m[m["post"]]
        cover = float(((m["att"] >= m["conf_low"]) & (m["att"] <= m["conf_high"])).mean())
        rmse = float(np.sqrt(np.mean((m["estimate"] - m["att"]) ** 2)))
        out[decay] = (cover, rmse, post)
    cover, rmse, post = out[True]
    assert post.spec.cohort_decay and not out[False][2].spec.cohort_decay
    assert cover >= 0.85, cover
    assert rmse < out[False][1], (rmse, out[False][1])
    hp = post.hyperparameters().set_index("term")["estimate"]
    assert hp["sigma_beta[1]"] + hp["sigma_beta[2]"] > 0.3, hp
    # instantaneous effect per cohort (e = 0): ordered as the truth, within 0.5
    inst = m[m["event_time"] == 0].sort_values("group")
    assert np.max(np.abs(inst["estimate"] - inst["att"])) < 0.5
    assert np.all(np.diff(inst["estimate"].to_numpy()) < 0)


def test_cohort_decay_option_checks() -> None:
    from causalmem.estimators.bayes.api import _decay_terms

    # on by default for the cells model (reports/bayes_calibration.md), off on request
    assert _decay_terms("cells", True) == 2 and _decay_terms("cells", None) == 2
    assert _decay_terms("cells", False) == 0
    assert _decay_terms("units", None) == 0
    with pytest.raises(ValueError, match="cohort_decay=True needs model='cells'"):
        _decay_terms("units", True)
    with pytest.raises(TypeError, match="cohort_decay must be"):
        _decay_terms("cells", 2)  # type: ignore[arg-type]
