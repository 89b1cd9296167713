"""Parity with the Python peers ``csdid==0.4.3`` and ``differences==0.3.0`` (analytic inference).

Our numbers reproduce R ``did`` on ``mpdta`` (``test_r_did_mpdta.py``); here the peers are the
oracles on random balanced panels from :func:`causalmem.simulate_panel` (3 shapes: 4-5 cohorts,
9-10 periods, 90-160 units, one with an irregular Pythia-like step grid), without the bootstrap.

Tolerances (absolute), and why:

* ``ATOL_ATT = 1e-8`` and ``ATOL_SE = 1e-6`` (the contract). Without covariates every
  estimator is a difference of cohort means and we observe ~1e-15. With covariates the logit is
  solved iteratively: statsmodels' IRLS (both peers) stops at a relative deviance change of 1e-8,
  our Newton solver at a 1e-12 step, so ATT(g, t) agrees to ~1e-10 and SEs to ~1e-11 (csdid).
* ``differences`` with a propensity score (``dr``, ``ipw`` + covariates): its SEs use
  statsmodels' ``cov_params()``, whose IRLS weights are one iteration stale (statsmodels
  ``GLM._fit_irls`` computes ``self.weights`` from ``mu`` *before* the last update). R DRDID
  (>= 1.2: ``chol2inv(chol(t(X) %*% (W * X))) * n`` with ``W`` at the final, capped ``ps.fit``),
  csdid and we rebuild the Hessian at the final scores. The gap is ~1e-5 relative, so the raw
  comparison uses ``RTOL_SE_STALE_HESSIAN = 1e-3`` and a second comparison, with differences'
  Hessian rebuilt at its own final scores, must meet ``ATOL_SE``.

Peer conventions translated at this boundary only: never-treated units have a missing cohort
here, ``0`` in csdid (R's coding) and ``NaN`` in differences. differences spells
``control_group`` ``never_treated`` / ``not_yet_treated`` and R's ``ipw`` (``std_ipw_did_panel``)
``std_ipw``: its ``"ipw"`` maps to ``ipw-mle``, which has no panel implementation (KeyError).

Documented peer differences, tested as differences (see each test): R did's ``group`` overall-SE
bug (both peers agree with us), propensity-score trimming at 0.995 (differences does not trim),
clustered SEs (differences averages the influence function within clusters, R did >= 2.5 and we
sum it; differences 0.3.0 cannot cluster through ``fit`` at all), csdid's old ddof=1 SE (fixed
in 0.4.3). R did's overlap refusal (max preliminary p >= 0.999 -> NA) is tested at the end.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from collections.abc import Iterator
from functools import cache
from typing import Any, NamedTuple, cast
from unittest import mock

import numpy as np
import pandas as pd
import pytest

import causalmem as cm
from causalmem._types import AggType

pytestmark = pytest.mark.peers

ATOL_ATT = 1e-8
ATOL_SE = 1e-6
RTOL_SE_STALE_HESSIAN = 1e-3

# (name -> simulate_panel arguments). "B" uses an irregular, Pythia-like grid of steps.
PANELS: dict[str, dict[str, Any]] = {
    "A": dict(cohorts=(3, 5, 6, 8), units_per_cohort=25, n_never=50, steps=range(1, 10), seed=11),
    "B": dict(
        cohorts=(2, 8, 16, 64),
        units_per_cohort=(10, 30, 20, 40),
        n_never=60,
        steps=(0, 1, 2, 4, 8, 16, 32, 64, 128),
        seed=22,
    ),
    "C": dict(
        cohorts=(4, 5, 7, 9, 10),
        units_per_cohort=12,
        n_never=30,
        steps=range(1, 11),
        seed=33,
        level_shift=0.5,
    ),
}
COVARIATE_EFFECT = 0.5  # makes x matter (unconditional parallel trends fail with it)
DIFFERENCES_METHOD = {"dr": "dr", "reg": "reg", "ipw": "std_ipw"}
DIFFERENCES_CONTROL = {"nevertreated": "never_treated", "notyettreated": "not_yet_treated"}
# ours -> (csdid typec, differences type_of_aggregation)
AGG_TYPES = {
    "simple": ("simple", "simple"),
    "dynamic": ("dynamic", "event"),
    "group": ("group", "cohort"),
    "calendar": ("calendar", "time"),
}


class Cfg(NamedTuple):
    panel: str
    control_group: str = "nevertreated"
    base_period: str = "varying"
    est_method: str = "dr"
    xformla: str | None = None
    anticipation: int = 0

    def __str__(self) -> str:
        x = "x" if self.xformla else "nox"
        return (
            f"{self.panel}-{self.control_group}-{self.base_period}-{self.est_method}-{x}"
            f"-ant{self.anticipation}"
        )


def _grid(panels: str, methods: tuple[str, ...], xformla: str | None) -> list[Cfg]:
    return [
        Cfg(p, cg, bp, em, xformla)
        for p in panels
        for cg in ("nevertreated", "notyettreated")
        for bp in ("varying", "universal")
        for em in methods
    ]


# Every (control group x base period) on all panels with dr; reg/ipw on panel A (without
# covariates they coincide, so A suffices); anticipation on panel C.
NO_COV = (
    _grid("ABC", ("dr",), None)
    + _grid("A", ("reg", "ipw"), None)
    + [
        Cfg("C", cg, bp, anticipation=1)
        for cg in ("nevertreated", "notyettreated")
        for bp in ("varying", "universal")
    ]
)
WITH_COV = _grid("A", ("dr", "reg", "ipw"), "~ x") + [
    Cfg(p, cg, bp, em, "~ x")
    for p in "BC"
    for cg, bp in (("nevertreated", "varying"), ("notyettreated", "universal"))
    for em in ("dr", "reg", "ipw")
]
AGG_CFGS = _grid("ABC", ("dr",), None) + [
    Cfg("A", "notyettreated", "varying", "dr", "~ x"),
    Cfg("C", anticipation=1),
]


# ----------------------------------------------------------------------------- helpers
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the peers' warnings, prints (csdid's anticipation note) and progress bars."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield


@cache
def _frame(panel: str, covariates: bool) -> pd.DataFrame:
    effect = COVARIATE_EFFECT if covariates else 0.0
    return cm.simulate_panel(covariate_effect=effect, **PANELS[panel]).frame


def _frame_for(cfg: Cfg) -> pd.DataFrame:
    return _frame(cfg.panel, cfg.xformla is not None).copy()


def _ours(cfg: Cfg, df: pd.DataFrame | None = None, engine: str = "auto", **kw: Any) -> Any:
    from causalmem.estimators.att_gt import _att_gt

    df = _frame_for(cfg) if df is None else df
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cm.errors.CausalmemWarning)
        return _att_gt(
            _engine=engine,
            data=df,
            yname="y",
            tname="step",
            idname="unit",
            gname="cohort",
            xformla=cfg.xformla,
            control_group=cfg.control_group,
            base_period=cfg.base_period,
            est_method=cfg.est_method,
            anticipation=cfg.anticipation,
            bstrap=False,
            **kw,
        )


def _ours_cells(res: Any) -> pd.DataFrame:
    t = res.tidy()
    return t.set_index(["group", "time"])[["estimate", "std_error"]].sort_index()


def _csdid_fit(cfg: Cfg, df: pd.DataFrame | None = None, **kw: Any) -> Any:
    csdid_att_gt = pytest.importorskip("csdid.att_gt")
    d = _frame_for(cfg) if df is None else df.copy()
    d["cohort"] = d["cohort"].fillna(0).astype("int64")  # csdid / R: 0 = never treated
    with _quiet():
        model = csdid_att_gt.ATTgt(
            yname="y",
            tname="step",
            idname="unit",
            gname="cohort",
            data=d,
            control_group=cfg.control_group,
            xformla=cfg.xformla,
            anticipation=cfg.anticipation,
            **kw,
        )
        return model.fit(est_method=cfg.est_method, base_period=cfg.base_period, bstrap=False)


def _csdid_cells(model: Any) -> pd.DataFrame:
    r = model.results
    out = pd.DataFrame(
        {
            "group": np.asarray(r["group"], float),
            "time": np.asarray(r["year"], float),
            "estimate": np.asarray(r["att"], float),
            "std_error": np.asarray(r["se"], float),
        }
    )
    return out.set_index(["group", "time"]).sort_index()


def _differences_model(cfg: Cfg, df: pd.DataFrame | None = None) -> Any:
    differences = pytest.importorskip("differences")
    d = _frame_for(cfg) if df is None else df.copy()
    d["cohort"] = d["cohort"].astype("float64")  # differences: NaN = never treated
    with _quiet():
        return differences.ATTgt(
            d.set_index(["unit", "step"]),
            cohort_column="cohort",
            base_period=cfg.base_period,
            anticipation=cfg.anticipation,
        )


def _differences_fit(cfg: Cfg, df: pd.DataFrame | None = None, **kw: Any) -> Any:
    model = _differences_model(cfg, df)
    formula = "y" if cfg.xformla is None else f"y {cfg.xformla}"
    with _quiet():
        model.fit(
            formula,
            est_method=DIFFERENCES_METHOD[cfg.est_method],
            control_group=DIFFERENCES_CONTROL[cfg.control_group],
            progress_bar=False,
            **kw,
        )
    return model


def _flat(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.columns = out.columns.get_level_values(-1)  # ("...", "analytic", "std_error") -> ...
    return out


def _differences_cells(model: Any) -> pd.DataFrame:
    with _quiet():
        out = _flat(model.aggregate(None)).reset_index()  # None -> the ATT(g, t) table
    out = out.rename(columns={"cohort": "group", "ATT": "estimate"})
    out["group"] = out["group"].astype(float)
    out["time"] = out["time"].astype(float)
    return out.set_index(["group", "time"])[["estimate", "std_error"]].sort_index()


# The peers are slow; fit each configuration once per session.
_csdid_cached = cache(lambda cfg: _csdid_fit(cfg))
_differences_cached = cache(lambda cfg: _differences_fit(cfg))
_ours_cached = cache(lambda cfg: _ours(cfg))


def _assert_cells(
    ours: pd.DataFrame, peer: pd.DataFrame, *, atol_se: float = ATOL_SE, rtol_se: float = 0.0
) -> None:
    """Same (g, t) cells; ATT to ATOL_ATT; SEs to atol_se/rtol_se with identical NaN patterns.

    NaN SEs are universal-base reference cells (ATT 0 by construction) in all three packages.
    """
    assert ours.index.equals(peer.index), (
        ours.index.difference(peer.index),
        peer.index.difference(ours.index),
    )
    np.testing.assert_allclose(ours["estimate"], peer["estimate"], rtol=0, atol=ATOL_ATT)
    np.testing.assert_array_equal(ours["std_error"].isna(), peer["std_error"].isna())
    np.testing.assert_allclose(ours["std_error"], peer["std_error"], rtol=rtol_se, atol=atol_se)


# ------------------------------------------------------------------ ATT(g, t) parity
@pytest.mark.parametrize("engine", ["auto", "dense"])
@pytest.mark.parametrize("cfg", NO_COV, ids=str)
def test_att_gt_without_covariates_matches_peers(cfg: Cfg, engine: str) -> None:
    # "auto" is the cohort-structured engine here; "dense" forms the n x J influence matrix.
    ours = _ours_cells(_ours(cfg, engine=engine))
    _assert_cells(ours, _csdid_cells(_csdid_cached(cfg)))
    _assert_cells(ours, _differences_cells(_differences_cached(cfg)))


@pytest.mark.parametrize("cfg", WITH_COV, ids=str)
def test_att_gt_with_covariate_matches_csdid(cfg: Cfg) -> None:
    # csdid 0.4.3 implements R did + DRDID >= 1.2 exactly (trimming at 0.995, Hessian at the
    # final propensity scores, R's overlap / singular-design refusals, none triggered here).
    _assert_cells(_ours_cells(_ours_cached(cfg)), _csdid_cells(_csdid_cached(cfg)))


@pytest.mark.parametrize("cfg", WITH_COV, ids=str)
def test_att_gt_with_covariate_matches_differences(cfg: Cfg) -> None:
    # differences' "dr" is DRDID's traditional ("dr-mle") estimator, the one R did calls; its
    # "dr-ipt" (inverse probability tilting, Graham et al.) is a different estimator and is not
    # compared. Its outcome regression ("reg") has no propensity score and agrees exactly.
    ours = _ours_cells(_ours_cached(cfg))
    peer = _differences_cells(_differences_cached(cfg))
    if cfg.est_method == "reg":
        _assert_cells(ours, peer)
    else:
        # Stale IRLS Hessian in statsmodels' cov_params (module docstring): SEs ~1e-5 relative.
        _assert_cells(ours, peer, atol_se=0.0, rtol_se=RTOL_SE_STALE_HESSIAN)


def _pscore_mle_final_hessian(original: Any) -> Any:
    """differences' ``pscore_mle`` with R DRDID's Hessian: ``(X' diag(w p (1 - p)) X)^-1``."""

    def fit(treated: Any, exog: Any, weights: Any, _freq_weights_flag: bool = False) -> Any:
        ps_fit, _ = original(treated, exog, weights, _freq_weights_flag)
        x = np.asarray(exog, dtype=float)
        info = x.T @ ((np.asarray(weights, float) * ps_fit * (1 - ps_fit))[:, None] * x)
        return ps_fit, np.linalg.inv(info)

    return fit


@pytest.mark.parametrize(
    "cfg", [c for c in WITH_COV if c.est_method != "reg" and c.panel != "A"], ids=str
)
def test_differences_se_gap_is_only_its_stale_pscore_hessian(cfg: Cfg) -> None:
    pytest.importorskip("differences")
    did_cal = sys.modules["differences.models.did.did_cal"]
    patched = _pscore_mle_final_hessian(did_cal.pscore_mle)
    with mock.patch.object(did_cal, "pscore_mle", patched):
        peer = _differences_cells(_differences_fit(cfg))
    _assert_cells(_ours_cells(_ours_cached(cfg)), peer)


def test_differences_ipw_spelling_has_no_panel_estimator() -> None:
    # R did's "ipw" is DRDID::std_ipw_did_panel = differences' "std_ipw". differences maps its own
    # "ipw" to ("ipw", "mle", "panel"), which is commented out of did_cal_funcs.
    model = _differences_model(Cfg("A"))
    with _quiet(), pytest.raises(KeyError, match="ipw"):
        model.fit("y", est_method="ipw", progress_bar=False)


def test_csdid_analytic_se_uses_population_variance() -> None:
    # csdid < 0.4 used np.std(ddof=1) (csdid PR #76): every SE inflated by sqrt(n / (n - 1)).
    # 0.4.3 uses the population variance, as R did and we do; the inflation would be 3.3e-3
    # relative on panel A (n = 150), far above what we allow.
    cfg = Cfg("A")
    ours = _ours_cached(cfg)
    ratio = _csdid_cells(_csdid_cached(cfg))["std_error"].to_numpy() / ours.se_analytic
    n = ours.n_units
    assert np.nanmax(np.abs(ratio - 1)) < 1e-12
    assert np.sqrt(n / (n - 1)) - 1 > 1e-3


# ----------------------------------------------------------------- aggregations (aggte)
def _csdid_agg(model: Any, typec: str) -> dict[str, Any]:
    with _quiet():
        model.aggte(typec=typec, bstrap=False, cband=False)
    return model.atte


@pytest.mark.parametrize("agg", list(AGG_TYPES))
@pytest.mark.parametrize("cfg", AGG_CFGS, ids=str)
def test_aggte_matches_peers(cfg: Cfg, agg: str) -> None:
    """Estimates to ATOL_ATT and analytic SEs to ATOL_SE (overall and per label), both peers.

    All three include the estimated-weights term of the influence function. The ``group``
    overall SE is where R did has a bug (``test_r_did_group_overall_se_bug``): both peers
    compute the correct value, i.e. ours.
    """
    c_type, d_type = AGG_TYPES[agg]
    ours = cm.aggte(_ours_cached(cfg), cast(AggType, agg), bstrap=False, cband=False)

    cs = _csdid_agg(_csdid_cached(cfg), c_type)
    assert ours.overall_estimate == pytest.approx(cs["overall_att"], abs=ATOL_ATT)
    assert ours.overall_std_error == pytest.approx(cs["overall_se"], abs=ATOL_SE)

    model = _differences_cached(cfg)
    with _quiet():
        by = _flat(model.aggregate(d_type))
        overall = by if agg == "simple" else _flat(model.aggregate(d_type, overall=True))
    assert ours.overall_estimate == pytest.approx(overall["ATT"].iloc[0], abs=ATOL_ATT)
    assert ours.overall_std_error == pytest.approx(overall["std_error"].iloc[0], abs=ATOL_SE)

    if agg == "simple":
        return
    # csdid: egt / att_egt / se_egt; differences: index = event time, cohort or time.
    peers = {
        "csdid": (
            np.asarray(cs["egt"], float),
            np.asarray(cs["att_egt"], float),
            np.asarray(cs["se_egt"], float).ravel(),
        ),
        "differences": (
            by.index.to_numpy(float),
            by["ATT"].to_numpy(float),
            by["std_error"].to_numpy(float),
        ),
    }
    for name, (labels, est, se) in peers.items():
        np.testing.assert_array_equal(labels, ours.labels, err_msg=name)
        np.testing.assert_allclose(est, ours.estimate, rtol=0, atol=ATOL_ATT, err_msg=name)
        # Universal base: the e = -1 reference effect is exactly 0 with an undefined SE.
        np.testing.assert_array_equal(np.isnan(se), np.isnan(ours.std_error), err_msg=name)
        np.testing.assert_allclose(se, ours.std_error, rtol=0, atol=ATOL_SE, err_msg=name)


def _wif(pg: np.ndarray, w: np.ndarray, unit_group: np.ndarray, group: np.ndarray) -> np.ndarray:
    """R did's ``wif(keepers = 1:K, pg, weights.ind, G, group)``: IF of estimated weights."""
    ind = w[:, None] * (unit_group[:, None] == group[None, :]) - pg[None, :]
    return ind / pg.sum() - np.outer(ind.sum(axis=1), pg / pg.sum() ** 2)


def test_r_did_group_overall_se_bug() -> None:
    """R did's ``aggte(type = "group")`` overall SE passes the *cell-level* group vector to wif.

    R: ``wif(keepers = 1:length(glist), pg = pgg, ..., group = group)`` where ``group`` has one
    entry per ATT(g, t) cell, so ``group[k]`` for ``k <= K`` is (mostly) the first cohort: the
    weight-estimation term uses the wrong indicator. With ``group = glist`` (csdid 0.4.3,
    differences, us) the overall SE is the correct delta-method one. On mpdta R prints 0.0124153
    vs the correct 0.0124461 (tested against R's own output in test_r_did_mpdta.py).
    """
    cfg = Cfg("A")
    model = _csdid_cached(cfg)
    at = _csdid_agg(model, "group")
    dp = model.dp
    first = dp["data"][dp["data"][dp["tname"]] == dp["tlist"][0]]
    w = first["w1"].to_numpy(float)
    unit_group = first[dp["gname"]].to_numpy(float)
    glist = np.asarray(at["egt"], float)
    pgg = np.array([np.mean(w * (unit_group == g)) for g in glist])
    inf_g = np.asarray(at["inf_function"]["selective_inf_func_g"], float)  # n x K, psi scale
    att_g = np.asarray(at["att_egt"], float)
    n = inf_g.shape[0]

    def overall_se(group: np.ndarray) -> float:
        psi = inf_g @ (pgg / pgg.sum()) + _wif(pgg, w, unit_group, group) @ att_g
        return float(np.sqrt(np.mean(psi**2) / n))

    cells_group = np.asarray(model.MP["group"], float)  # R's argument: one entry per cell
    correct, r_buggy = overall_se(glist), overall_se(cells_group[: glist.size])
    ours = cm.aggte(_ours_cached(cfg), "group", bstrap=False, cband=False).overall_std_error
    assert correct == pytest.approx(at["overall_se"], abs=1e-12)
    assert correct == pytest.approx(ours, abs=1e-12)
    assert abs(r_buggy - correct) > 1e-4 * correct  # the R value is a different number


# ----------------------------------------------------------------- weights and trimming
def _weighted_frame(cfg: Cfg) -> pd.DataFrame:
    df = _frame_for(cfg)
    rng = np.random.default_rng(5)
    w_unit = rng.uniform(0.2, 3.0, df["unit"].nunique())  # time-invariant sampling weights
    df["w"] = w_unit[df["unit"].to_numpy()]
    return df


@pytest.mark.parametrize(
    "cfg",
    [Cfg("A"), Cfg("A", "notyettreated", "universal")]
    + [Cfg("A", "nevertreated", "varying", em, "~ x") for em in ("dr", "reg", "ipw")],
    ids=str,
)
def test_sampling_weights_match_peers(cfg: Cfg) -> None:
    # csdid < 0.4 ignored user weights and silently dropped R's spelling ``weightsname``
    # (pitfall 16); 0.4.3 honours both ``weights_name`` and the alias.
    df = _weighted_frame(cfg)
    ours = _ours_cells(_ours(cfg, df, weightsname="w"))
    _assert_cells(ours, _csdid_cells(_csdid_fit(cfg, df, weights_name="w")))
    _assert_cells(ours, _csdid_cells(_csdid_fit(cfg, df, weightsname="w")))
    rtol = RTOL_SE_STALE_HESSIAN if cfg.xformla and cfg.est_method != "reg" else 0.0
    _assert_cells(
        ours,
        _differences_cells(_differences_fit(cfg, df, weights_column="w")),
        atol_se=0.0 if rtol else ATOL_SE,
        rtol_se=rtol,
    )


def _trimming_frame() -> pd.DataFrame:
    """Two never-treated units with propensity scores in [0.995, 0.999) in cohort 3's cells.

    DRDID gives comparison units with p >= 0.995 zero weight; R did refuses a cell only when the
    preliminary logit's max p >= 0.999, so these cells are estimated by everyone.
    """
    from causalmem._numerics.drdid import logit_fit

    sim = cm.simulate_panel(
        cohorts=(3, 5), units_per_cohort=(60, 40), n_never=60, steps=range(1, 7), seed=7
    )
    df = sim.frame.copy()
    coh = df.groupby("unit")["cohort"].first().fillna(0).to_numpy()
    rng = np.random.default_rng(7)
    base = rng.normal(0.0, 1.0, coh.size) + np.where(coh == 3, 2.0, 0.0)
    outliers = np.flatnonzero(coh == 0)[:2]
    cell = (coh == 3) | (coh == 0)
    d = (coh[cell] == 3).astype(float)
    for level in np.linspace(2.0, 8.0, 61):
        x = base.copy()
        x[outliers] = level
        p = logit_fit(d, np.c_[np.ones(d.size), x[cell]], np.ones(d.size)).p
        if ((p >= 0.995) & (d == 0)).any() and p.max() < 0.999:
            df["x"] = x[df["unit"].to_numpy()]
            return df
    raise AssertionError("could not build a panel with trimmed comparison units")


@pytest.mark.parametrize("est_method", ["dr", "ipw"])
def test_pscore_trimming_matches_csdid_not_differences(est_method: str) -> None:
    cfg = Cfg("T", est_method=est_method, xformla="~ x")
    df = _trimming_frame()
    ours = _ours_cells(_ours(cfg, df))
    _assert_cells(ours, _csdid_cells(_csdid_fit(cfg, df)))
    # differences does not trim (it caps p at 1 - 1e-16), so the two comparison units with odds
    # ~200 dominate cohort 3's comparison mean: its estimates differ by ~0.5.
    peer = _differences_cells(_differences_fit(cfg, df))
    g3 = ours.index.get_level_values("group") == 3
    assert (np.abs(ours["estimate"] - peer["estimate"])[g3] > 0.05).all()
    np.testing.assert_allclose(ours["estimate"][~g3], peer["estimate"][~g3], atol=ATOL_ATT)
    # ... and trimming is the whole difference: without it we agree with differences.
    drdid = sys.modules["causalmem._numerics.drdid"]
    with mock.patch.object(drdid, "TRIM_LEVEL", 2.0):
        untrimmed = _ours_cells(_ours(cfg, df))
    _assert_cells(untrimmed, peer, atol_se=0.0, rtol_se=RTOL_SE_STALE_HESSIAN)


# ----------------------------------------------------------------------- clustered SEs
def _clustered_frame(kind: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Panel A with a time-invariant cluster ``cl``; returns the frame and unit -> cluster.

    ``equal``: clusters of 5 nested in cohorts; ``unequal``: nested, sizes 1 and 9 alternating
    (structured engine); ``crossing``: 12 random clusters spanning cohorts (dense engine).
    """
    df = _frame("A", False).copy()
    coh = df.groupby("unit")["cohort"].first().fillna(0).to_numpy()
    cl = np.empty(coh.size, dtype=np.int64)
    if kind == "crossing":
        cl[:] = np.random.default_rng(1).integers(0, 12, coh.size)
    else:
        nxt = 0
        for c in np.unique(coh):
            idx = np.flatnonzero(coh == c)
            sizes = [5] if kind == "equal" else [1, 9]
            pos, k = 0, 0
            while pos < idx.size:
                size = sizes[k % len(sizes)]
                cl[idx[pos : pos + size]] = nxt
                nxt, pos, k = nxt + 1, pos + size, k + 1
    df["cl"] = cl[df["unit"].to_numpy()]
    return df, cl


@pytest.mark.parametrize("kind", ["equal", "unequal", "crossing"])
def test_clustered_analytic_se_matches_csdid(kind: str) -> None:
    # Both: se = sqrt(sum_c S_c^2) / n with S_c the cluster sum of the unit IF (R did >= 2.5's
    # cluster-sum form, Callaway & Sant'Anna 2021 Remark 10). R did itself only clusters with
    # the bootstrap; csdid and we also cluster the analytic SE.
    df, _ = _clustered_frame(kind)
    cfg = Cfg("A")
    ours = _ours_cells(_ours(cfg, df, clustervars="cl"))
    _assert_cells(ours, _csdid_cells(_csdid_fit(cfg, df, clustervar="cl")))
    unclustered = _ours_cells(_ours_cached(cfg))
    assert np.nanmax(np.abs(ours["std_error"] / unclustered["std_error"] - 1)) > 0.01


def test_differences_cannot_cluster_in_fit() -> None:
    # differences 0.3.0 + pandas 2: a string cluster_var reaches find_time_varying_covars as a
    # Series (AttributeError), a list is used as a column key (TypeError). Its analytic path
    # (boot_iterations=0) would ignore clusters anyway (get_std_errors_from_if has no cluster).
    df, _ = _clustered_frame("unequal")
    for cluster_var in ("cl", ["cl"]):
        with pytest.raises((AttributeError, TypeError)):
            _differences_fit(Cfg("A"), df, cluster_var=cluster_var)


@pytest.mark.parametrize("kind", ["equal", "unequal"])
def test_differences_cluster_formula_is_mean_not_sum(kind: str) -> None:
    """Pitfall 6: differences' clustered bootstrap averages the IF within clusters.

    Its draws are ``sqrt(C) mean_c(v_c m_c)`` with ``m_c`` the cluster *mean* of the unit IF and
    ``se = sigma / sqrt(C)``, i.e. ``se = sqrt(sum_c m_c^2) / C`` (old R did). R did >= 2.5 and we
    use cluster *sums*: ``sqrt(sum_c S_c^2) / n``. They agree for equal-sized clusters only; with
    unequal clusters the mean form weights a 1-unit cluster like a 9-unit one, which is not the
    variance of the unit-level estimator. Verdict: ours (= R did >= 2.5) is right. We feed
    differences' own IF and cluster codes to its own ``mboot`` (fit cannot cluster, see above).
    """
    pytest.importorskip("differences")
    from differences.models.attgt.mboot import mboot, mean_inf_func_by_cluster
    from differences.models.attgt.utility_ntl import stack_influence_funcs

    df, cl = _clustered_frame(kind)
    cfg = Cfg("A")
    ours = _ours(cfg, df, clustervars="cl").se_analytic
    model = _differences_cached(cfg)
    inf = np.asarray(stack_influence_funcs(model._result_dict["full_sample"]["ATTgt_ntl"]))
    entities = model._data_matrix.index.get_level_values(0).unique().to_numpy()
    codes = pd.factorize(cl[entities], sort=True)[0]  # unit ids are 0..n-1 in _frame
    means = mean_inf_func_by_cluster(codes, inf)
    mean_form = np.sqrt((means**2).sum(axis=0)) / means.shape[0]
    ratio = mean_form / ours
    if kind == "equal":
        np.testing.assert_allclose(ratio, 1.0, rtol=1e-12)
    else:
        assert np.median(ratio) > 1.5
    with _quiet():
        boot = mboot(
            inf,
            cluster_groups=codes,
            boot_iterations=2000,
            random_state=1234,
            boot_n_jobs=1,
            progress_bar=False,
        )
    # 34-60 clusters: the IQR-based bootstrap SE is noisy, so compare medians over the cells.
    assert np.median(boot["se"] / mean_form) == pytest.approx(1.0, abs=0.15)


# --------------------------------------------------------------- R did's overlap rule
def _overlap_frame() -> pd.DataFrame:
    """Cohort 3 is nearly separated by ``x`` from the never treated (max p > 0.999)."""
    df = cm.simulate_panel(
        cohorts=(3, 5), units_per_cohort=(60, 40), n_never=60, steps=range(1, 7), seed=7
    ).frame.copy()
    coh = df.groupby("unit")["cohort"].first().fillna(0).to_numpy()
    x = np.random.default_rng(7).normal(0.0, 1.0, coh.size) + np.where(coh == 3, 3.0, 0.0)
    df["x"] = x[df["unit"].to_numpy()]
    return df


@pytest.mark.parametrize("est_method", ["dr", "ipw", "reg"])
def test_overlap_violation_cells_are_na_as_in_r_did(est_method: str) -> None:
    # R did (compute.att_gt, every version incl. faster_mode) fits a preliminary unweighted logit
    # per dr/ipw cell and returns NA ("overlap condition violated") when its max p >= 0.999;
    # "reg" has no propensity score and is estimated. csdid 0.4.3 does the same. causalmem
    # follows since b8a1807 (before, it estimated these cells with trimming: this was an xfail).
    cfg = Cfg("O", est_method=est_method, xformla="~ x")
    df = _overlap_frame()
    peer = _csdid_cells(_csdid_fit(cfg, df))
    refused = peer["estimate"].isna()
    assert refused.any() == (est_method != "reg")  # precondition: cohort 3's cells are refused
    _assert_cells(_ours_cells(_ours(cfg, df)), peer)  # same NaN cells, same other cells
