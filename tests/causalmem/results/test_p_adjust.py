"""Multiple-testing control across the ATT(g, t) cells (statsmodels ``multipletests``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from causalmem import att_gt, simulate_panel
from causalmem.results.attgt import AttGtResult
from causalmem.results.base import adjust_pvalues


@pytest.fixture(scope="module")
def res() -> AttGtResult:
    sim = simulate_panel(seed=3)
    return att_gt(sim.frame, "y", "step", "unit", "cohort", biters=100, seed=1)


def _r_bh(p: np.ndarray) -> np.ndarray:
    """R ``p.adjust(p, "BH")`` written out: ``min_{j >= i} p_(j) m / j``, capped at 1."""
    m = p.size
    order = np.argsort(p)
    raw = p[order] * m / np.arange(1, m + 1)
    adj = np.minimum.accumulate(raw[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def _r_holm(p: np.ndarray) -> np.ndarray:
    m = p.size
    order = np.argsort(p)
    raw = p[order] * (m - np.arange(m))
    adj = np.maximum.accumulate(raw)
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def test_adjust_pvalues_matches_r_p_adjust() -> None:
    p = np.array([0.001, 0.01, 0.02, 0.04, 0.3, 0.8, np.nan])
    ok = np.isfinite(p)
    assert np.allclose(adjust_pvalues(p, "BH")[ok], _r_bh(p[ok]), rtol=1e-12)
    assert np.allclose(adjust_pvalues(p, "fdr")[ok], _r_bh(p[ok]), rtol=1e-12)
    assert np.allclose(adjust_pvalues(p, "holm")[ok], _r_holm(p[ok]), rtol=1e-12)
    assert np.allclose(adjust_pvalues(p, "bonferroni")[ok], np.minimum(p[ok] * 6, 1.0))
    by = adjust_pvalues(p, "BY")[ok]
    assert np.allclose(by, np.minimum(_r_bh(p[ok]) * np.sum(1.0 / np.arange(1, 7)), 1.0))
    assert np.isnan(adjust_pvalues(p, "BH")[-1])
    assert np.array_equal(adjust_pvalues(p, "none")[ok], p[ok])
    assert np.isnan(adjust_pvalues(np.array([np.nan]), "holm")).all()
    with pytest.raises(ValueError, match="p_adjust"):
        adjust_pvalues(p, "sidak")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["holm", "BH", "BY"])
def test_tidy_adds_adjusted_pvalues(res: AttGtResult, method: str) -> None:
    plain = res.tidy()
    adj = res.tidy(p_adjust=method)  # type: ignore[arg-type]
    assert list(adj.columns) == [*plain.columns, "p_value_adj", "p_adjust"]
    pd.testing.assert_frame_equal(adj[plain.columns], plain)
    assert (adj["p_adjust"] == method).all()
    ok = adj["p_value"].notna()
    assert ok.sum() > 10 and adj.loc[~ok, "p_value_adj"].isna().all()
    assert (adj.loc[ok, "p_value_adj"] >= adj.loc[ok, "p_value"] - 1e-15).all()
    want = adjust_pvalues(plain.loc[ok, "p_value"].to_numpy(), method)  # type: ignore[arg-type]
    assert np.allclose(adj.loc[ok, "p_value_adj"], want)
    assert "p_value_adj" not in res.tidy()  # the default is unchanged


def test_family_heatmap_masks_by_adjusted_pvalues(res: AttGtResult) -> None:
    pytest.importorskip("altair")
    from causalmem.presentation.charts import family_heatmap

    cells = res.tidy(p_adjust="holm")
    band = family_heatmap(cells, mask="hide").to_dict()
    holm = family_heatmap(cells, mask="hide", significance="p_value_adj").to_dict()

    def n_rows(spec: dict) -> int:  # type: ignore[type-arg]
        data = spec.get("datasets", {})
        return sum(len(v) for v in data.values())

    post = cells[cells["time"] >= cells["group"]]
    assert n_rows(holm) == int((post["p_value_adj"] < 0.05).sum())
    assert n_rows(band) >= 1
    assert "p_value_adj < 0.05" in str(family_heatmap(cells, significance="p_value_adj").to_dict())
    with pytest.raises(ValueError, match="needs columns"):
        family_heatmap(res.tidy(), significance="p_value_adj")


def test_profile_heatmap_masks_by_an_adjusted_p_value() -> None:
    import pandas as pd

    from causalmem.results._charts import profile_heatmap

    cells = pd.DataFrame(
        {
            "group": [2, 2, 3],
            "time": [2, 3, 3],
            "estimate": [1.0, 0.5, 0.2],
            "conf_low": [0.5, 0.1, -0.1],
            "conf_high": [1.5, 0.9, 0.5],
            "p_value_adj": [0.001, 0.2, 0.03],
        }
    )
    band = profile_heatmap(cells).to_dict()
    adj = profile_heatmap(cells, significance="p_value_adj", alp=0.05).to_dict()

    def flags(spec: dict) -> list[str]:
        rows = next(iter(spec["datasets"].values()))
        return [r["significant"] for r in rows]

    assert flags(band) == ["significant", "significant", "not significant"]
    assert flags(adj) == ["significant", "not significant", "significant"]
