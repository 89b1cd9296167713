"""Keyed multiplier bootstrap: multipliers are a pure function of (seed, unit id, draw).

References: the Rademacher law (mean 0, variance 1, P(+1) = 1/2, independent draws) and the
analytic influence-function SE that a multiplier bootstrap estimates (Callaway & Sant'Anna 2021,
Theorem 3); tolerances are Monte Carlo bounds stated at each assertion.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import causalmem as cm
from causalmem._numerics.keyed import (
    bootstrap_key,
    hash_ids,
    keyed_chunks,
    keyed_multipliers,
)
from causalmem._numerics.structured import StructuredIF
from causalmem.errors import CausalmemWarning


def _panel(seed: int = 0, **kw: object) -> pd.DataFrame:
    args = dict(cohorts=(3, 4, 6), units_per_cohort=40, n_never=60, steps=range(1, 8), seed=seed)
    args.update(kw)
    return cm.simulate_panel(**args).frame  # type: ignore[arg-type]


def test_hash_is_by_value_not_dtype() -> None:
    a = hash_ids(np.array([1, 2, 30], dtype=np.int32))
    assert (a == hash_ids([1, 2, 30])).all()
    assert (a == hash_ids(np.array([1.0, 2.0, 30.0]))).all()
    assert (a == hash_ids(pa.array([1, 2, 30], type=pa.int16()))).all()
    assert (a == hash_ids(pd.Series([1, 2, 30], dtype="Int64"))).all()
    s = hash_ids(np.array(["1", "2", "30"], dtype=object))
    assert (s == hash_ids(pa.array(["1", "2", "30"]))).all()
    assert not (s == a).any()  # "1" and 1 are different units


def test_rows_do_not_depend_on_order_batches_or_draw_blocks() -> None:
    ids = hash_ids(np.arange(1000) * 7 + 3)
    full = keyed_multipliers(ids, 11, 0, 300)
    perm = np.random.default_rng(0).permutation(1000)
    assert np.array_equal(keyed_multipliers(ids[perm], 11, 0, 300), full[perm])
    assert np.array_equal(keyed_multipliers(ids[:10], 11, 0, 300), full[:10])
    assert np.array_equal(keyed_multipliers(ids, 11, 64, 300), full[:, 64:])
    chunks = np.hstack(list(keyed_chunks(ids, 11, 300, dtype=np.float64)))
    assert np.array_equal(chunks, full)
    assert not np.array_equal(keyed_multipliers(ids, 12, 0, 300), full)  # the key matters


def test_multipliers_are_rademacher() -> None:
    v = keyed_multipliers(hash_ids(np.arange(4000)), bootstrap_key(5), 0, 500)
    assert set(np.unique(v)) == {-1.0, 1.0}
    n = v.size
    # P(+1) = 1/2: the share of +1 is within 5 binomial SDs (0.5 / sqrt(n)) of 0.5.
    assert abs((v > 0).mean() - 0.5) < 5 * 0.5 / np.sqrt(n)
    # Independent draws and units: correlations between columns (and rows) are ~N(0, 1/n).
    c = np.corrcoef(v[:, :50], rowvar=False)[np.triu_indices(50, 1)]
    assert np.abs(c).max() < 5 / np.sqrt(v.shape[0])
    r = np.corrcoef(v[:50], rowvar=True)[np.triu_indices(50, 1)]
    assert np.abs(r).max() < 5 / np.sqrt(v.shape[1])
    # Consecutive ids (1, 2, 3, ...) are not correlated either.
    assert abs(np.mean(v[:-1] * v[1:])) < 5 / np.sqrt(n)


def test_bootstrap_se_matches_analytic_se() -> None:
    df = _panel(1, units_per_cohort=200, n_never=300)
    res = cm.att_gt(df, "y", "step", "unit", "cohort", biters=2000, seed=3)
    ok = ~res.cells.reference
    ratio = res.se[ok] / res.se_analytic[ok]
    # IQR-based SE from 2000 draws: relative Monte Carlo SD ~ 1.1 / sqrt(2000) = 2.5 %.
    assert abs(np.median(ratio) - 1) < 0.03
    assert np.all(np.abs(ratio - 1) < 0.15)


def test_draws_do_not_depend_on_unit_order_or_other_units() -> None:
    """A unit's multipliers depend on its id only: relabelling others leaves its draws."""
    df = _panel(2)
    a = cm.att_gt(df, "y", "step", "unit", "cohort", biters=200, seed=9)
    b = cm.att_gt(
        df.sample(frac=1.0, random_state=1), "y", "step", "unit", "cohort", biters=200, seed=9
    )
    assert a.draws is not None and b.draws is not None
    np.testing.assert_allclose(a.draws.cells, b.draws.cells, rtol=1e-12, atol=1e-14)
    # The multiplier of unit u is keyed by u: with only never-treated units renamed, the draws
    # of the treated-cohort sums (omega block sums) of treated cohorts are unchanged.
    never = df["cohort"].isna()
    c = cm.att_gt(
        df.assign(unit=np.where(never, df["unit"] + 10_000, df["unit"])),
        "y",
        "step",
        "unit",
        "cohort",
        biters=200,
        seed=9,
    )
    assert c.draws is not None
    np.testing.assert_array_equal(a.draws.omega[:-1], c.draws.omega[:-1])
    assert not np.array_equal(a.draws.omega[-1], c.draws.omega[-1])


def test_seed_generator_and_int_are_reproducible() -> None:
    df = _panel(3)
    a = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=4)
    b = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=4)
    np.testing.assert_array_equal(a.se, b.se)
    g1 = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=np.random.default_rng(8))
    g2 = cm.att_gt(df, "y", "step", "unit", "cohort", biters=100, seed=np.random.default_rng(8))
    np.testing.assert_array_equal(g1.se, g2.se)


@pytest.mark.parametrize("cluster", ["cl_nested", "cl_cross"])
def test_cluster_multipliers_are_keyed_by_cluster_value(cluster: str) -> None:
    df = _panel(4)
    coh = df["cohort"].astype("Float64").fillna(-1).astype(float)
    df = df.assign(cl_nested=(coh * 100 + df["unit"] % 5).astype(int), cl_cross=df["unit"] % 9)
    a = cm.att_gt(df, "y", "step", "unit", "cohort", clustervars=cluster, biters=200, seed=2)
    # Recoding the cluster values by an order-preserving map changes the keys -> new draws;
    # re-labelling units (not clusters) keeps every cluster's multiplier.
    b = cm.att_gt(
        df.assign(unit=df["unit"] + 5000),
        "y",
        "step",
        "unit",
        "cohort",
        clustervars=cluster,
        biters=200,
        seed=2,
    )
    np.testing.assert_allclose(a.se, b.se, rtol=1e-6, equal_nan=True)


def test_dense_engine_uses_keyed_multipliers() -> None:
    """Unbalanced panels (dense engine) draw the same multipliers for the same unit ids."""
    df = _panel(5, unbalanced_fraction=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        a = cm.att_gt(
            df, "y", "step", "unit", "cohort", allow_unbalanced_panel=True, biters=200, seed=1
        )
        b = cm.att_gt(
            df.iloc[::-1],
            "y",
            "step",
            "unit",
            "cohort",
            allow_unbalanced_panel=True,
            biters=200,
            seed=1,
        )
    np.testing.assert_allclose(a.se, b.se, rtol=1e-6, equal_nan=True)
    assert a.band == "uniform" and np.isfinite(a.crit_val)


@pytest.mark.parametrize("control_group", ["nevertreated", "notyettreated"])
def test_float64_draws_equal_the_structured_engine_with_the_same_multipliers(
    control_group: Any,
) -> None:
    """The reduced-sum algebra (keyed.cell_draws) against StructuredIF.draws (float32)."""
    from causalmem.estimators.att_gt import keyed_bootstrap

    df = _panel(6)
    res = cm.att_gt(df, "y", "step", "unit", "cohort", bstrap=False, control_group=control_group)
    eng = res.engine
    zb, om = keyed_bootstrap(eng, 300, 77)
    assert isinstance(eng, StructuredIF)
    v = keyed_chunks(hash_ids(eng.rows.keys), 77, 300)
    ref, om_ref = eng.draws(v, 300)
    scale = np.nanmax(np.abs(ref))
    # float32 reference: agreement to float32 rounding (~1e-7 relative, 1e-5 with sums).
    assert np.nanmax(np.abs(zb - ref)) < 1e-5 * scale
    np.testing.assert_array_equal(np.isnan(zb), np.isnan(ref))
    np.testing.assert_allclose(om, om_ref, rtol=1e-5)


def test_streamed_engine_has_no_unit_rows(tmp_path: object) -> None:
    from causalmem.estimators.streaming import att_gt_stream

    df = _panel(7).sort_values(["unit", "step"])
    res = att_gt_stream(df, "y", "step", "unit", "cohort", bstrap=False)
    with pytest.raises(AttributeError, match="per-unit rows"):
        getattr(res.engine, "rows")  # noqa: B009
    assert not hasattr(res.engine, "rows")


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"base_period": "universal"},
        {"anticipation": 1},
        {"weightsname": "w"},
        {"control_group": "notyettreated"},
        {"_difference": True},
    ],
)
def test_cell_draws_equal_the_unit_level_influence_functions_times_the_multipliers(
    kw: dict[str, Any],
) -> None:
    """keyed_bootstrap (per-cohort sums, the never-treated fast path included) against an
    independent route: the explicit r-scale IF matrix of the cells (``engine.combine`` with
    identity weights, built from per-block coefficients) times the float64 keyed multipliers.
    Exact algebra both ways, so they agree to float64 rounding (1e-12 relative)."""
    import importlib

    import scipy.sparse as sp

    mod = importlib.import_module("causalmem.estimators.att_gt")
    df = _panel(8)
    units = df["unit"].to_numpy()
    df = df.assign(w=1.0 + (units % 7) / 3.0)  # time-invariant weights
    res = mod._att_gt(
        **{
            **dict(
                data=df,
                yname="y",
                tname="step",
                idname="unit",
                gname="cohort",
                xformla=None,
                control_group="nevertreated",
                anticipation=0,
                base_period="varying",
                est_method="dr",
                allow_unbalanced_panel=False,
                clustervars=None,
                weightsname=None,
                bstrap=False,
                biters=1000,
                cband=True,
                alp=0.05,
                seed=None,
                drop_always_treated=False,
                panel=True,
            ),
            **kw,
        }
    )
    eng = res.engine
    assert isinstance(eng, StructuredIF)
    n_cells, kb = res.cells.n_cells, eng.rows.n_blocks
    zb, om = mod.keyed_bootstrap(eng, 300, 5)  # 300 draws: two draw blocks (256 + 44)
    r = eng.combine(sp.identity(n_cells, format="csr"), np.zeros((kb, n_cells)))
    v = keyed_multipliers(hash_ids(eng.rows.keys), 5, 0, 300)
    ref = r.T @ v
    fin = np.isfinite(res.att)
    assert np.array_equal(np.isfinite(zb).all(axis=1), fin)
    scale = np.abs(ref[fin]).max()
    assert np.abs(zb[fin] - ref[fin]).max() < 1e-12 * scale
    if "base_period" in kw:
        assert np.all(zb[res.cells.reference] == 0.0)
    block = np.repeat(np.arange(kb), np.diff(eng.rows.block))
    om_ref = np.stack(
        [(eng.rows.omega[block == k, None] * v[block == k]).sum(0) for k in range(kb)]
    )
    np.testing.assert_allclose(om, om_ref, rtol=0, atol=1e-12 * np.abs(om_ref).max())


@pytest.mark.parametrize("n_draws", [10, 11, 999, 1000, 1001])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bootstrap_quartiles_are_rs_type_1_order_statistics(n_draws: int, dtype: Any) -> None:
    """summarise_draws' two single-kth selections give R's ``quantile(type = 1)`` exactly."""
    from causalmem._numerics.inference import _order_stats, _type1_index

    x = np.random.default_rng(n_draws).standard_normal((37, n_draws)).astype(dtype)
    x[3] = 1.0  # ties
    lo, hi = _type1_index(0.25, n_draws), _type1_index(0.75, n_draws)
    q_lo, q_hi = _order_stats(x.copy(), lo, hi)
    ref = np.quantile(x, [0.25, 0.75], axis=1, method="inverted_cdf")
    assert q_lo.dtype == dtype and q_hi.dtype == dtype
    np.testing.assert_array_equal(q_lo, ref[0])
    np.testing.assert_array_equal(q_hi, ref[1])
    np.testing.assert_array_equal(q_lo, np.sort(x, axis=1)[:, lo])
