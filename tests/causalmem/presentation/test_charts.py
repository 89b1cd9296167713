"""Charts are built only from tidy frames, never mutate them, and encode what they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

alt = pytest.importorskip("altair")

from causalmem import aggte, att_gt, simulate_panel  # noqa: E402
from causalmem.presentation.charts import (  # noqa: E402
    event_path,
    instantaneous_vs_lr,
    profile_heatmap,
    significant,
)


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    sim = simulate_panel(seed=3)
    res = att_gt(sim.frame, "y", "step", "unit", "cohort", biters=100, seed=1)
    return res.tidy(), res.instantaneous(), aggte(res, "dynamic").tidy()


def test_profile_heatmap(fitted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    cells, _, _ = fitted
    before = cells.copy()
    cells_nan = cells.copy()
    cells_nan.loc[0, "estimate"] = np.nan
    chart = profile_heatmap(cells_nan, title="t")
    pd.testing.assert_frame_equal(cells, before)  # not mutated
    spec = chart.to_dict()
    assert spec["mark"]["type"] == "rect"
    enc = spec["encoding"]
    assert enc["x"]["field"] == "time" and enc["y"]["field"] == "group"
    assert enc["color"]["field"] == "estimate" and enc["opacity"]["field"] == "significant"
    data = chart.data
    assert len(data) == len(cells) - 1  # the NaN cell is left out
    sig = significant(cells.iloc[1:]).to_numpy()
    assert (data["significant"].eq("significant").to_numpy() == sig).all()
    post = profile_heatmap(cells, post_only=True).data
    assert (post["time"] >= post["group"]).all()


def test_instantaneous_vs_lr(fitted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    _, inst, _ = fitted
    lr = pd.DataFrame({"step": np.arange(1, 11), "lr": np.linspace(1e-3, 1e-4, 10)})
    chart = instantaneous_vs_lr(inst, lr)
    spec = chart.to_dict()
    assert spec["resolve"]["scale"]["y"] == "independent"
    assert len(spec["layer"]) == 2
    with pytest.raises(KeyError, match="lr"):
        instantaneous_vs_lr(inst, lr.rename(columns={"lr": "rate"}))


def test_event_path(fitted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    _, _, dyn = fitted
    chart = event_path(dyn)
    spec = chart.to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks[:3] == ["area", "line", "point"] and marks.count("rule") == 2
    assert len(chart.layer[0].data) == dyn["event_time"].notna().sum()  # 'overall' dropped
    with pytest.raises(KeyError, match="event_time"):
        event_path(dyn.drop(columns=["event_time"]))


def test_png_and_html_render(fitted: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    pytest.importorskip("vl_convert")
    import io

    cells, _, dyn = fitted
    buf = io.BytesIO()
    event_path(dyn).save(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    html = io.StringIO()
    profile_heatmap(cells).save(html, format="html", inline=True)
    assert "vega" in html.getvalue().lower()


def test_issue5_charts_have_the_expected_encodings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import causalmem as cm
    from causalmem.presentation import charts

    sim = cm.simulate_panel(
        cohorts=(3, 4, 5),
        units_per_cohort=40,
        n_never=80,
        steps=range(1, 8),
        outcome="sup_seq",
        seed=2,
    )
    res = cm.att_gt(sim.frame, "sup_seq", "step", "unit", "cohort", biters=100, seed=0)
    prof = cm.MemorisationProfile.from_result(res)
    ch = charts.persistent_memorisation(prof.persistent()).to_dict()
    layers = ch["layer"]
    assert layers[1]["encoding"]["x"]["field"] == "event_time"
    assert layers[1]["encoding"]["x"]["scale"]["type"] == "sqrt"
    assert layers[2]["encoding"]["opacity"]["field"] == "significant"
    lol = charts.residual_lollipop(prof.residual(at=7), at=7).to_dict()
    assert lol["layer"][0]["mark"]["type"] == "rule"
    assert lol["layer"][0]["encoding"]["y2"]["field"] == "estimate"
    assert lol["title"] == "Residual memorisation at step 7"
    sim2 = sim.frame.assign(sup_b=sim.frame["sup_seq"] * 1.1)
    rb = cm.att_gt(sim2, "sup_b", "step", "unit", "cohort", bstrap=False)
    comp = cm.compare_profiles({"small": res, "large": rb}, biters=100, seed=1)
    mat = charts.correlation_matrix(comp.tidy())
    d = mat.to_dict()
    assert d["layer"][0]["encoding"]["color"]["field"] == "rho"
    data = pd.DataFrame(list(d["datasets"].values())[0])
    assert len(data) == 4 and set(data["model_a"]) == {"small", "large"}
    mat.save(str(tmp_path / "corr.png"))
    assert (tmp_path / "corr.png").stat().st_size > 1000


def _family_fit():  # type: ignore[no-untyped-def]
    """A two-model family (shared units) fitted once; tidy frames with a ``model`` column."""
    import causalmem as cm
    from causalmem.workflows.family import Family, ModelRun, fit_family, pythia_lr_schedule

    sim = cm.simulate_panel(
        cohorts=(3, 4, 5),
        units_per_cohort=30,
        n_never=60,
        steps=range(1, 8),
        outcome="logprob",
        seed=5,
    )
    frame = sim.frame.assign(logprob=lambda f: -f["logprob"])
    runs = []
    for k, name in enumerate(("small", "large")):
        f = frame.assign(logprob=frame["logprob"] * (1 + k))
        panel = cm.Panel.from_frame(
            f, unit="unit", step="step", cohort="cohort", outcomes="logprob"
        )
        runs.append(
            ModelRun(
                name=name,
                panel=panel,
                lr=pythia_lr_schedule(1e-3 / (1 + k), total_steps=7, every=1),
                n_params=float(10 ** (k + 1)),
                max_lr=1e-3 / (1 + k),
                epoch_end=6.0,
                source="test",
                path="",
            )
        )
    return fit_family(Family(models=tuple(runs)), "logprob", biters=50, seed=0)


def test_family_charts_have_the_expected_encodings() -> None:
    from causalmem.presentation import charts

    fit = _family_fit()
    cells = fit.cells()
    h = charts.family_heatmap(cells, epoch_end=5).to_dict()
    assert h["facet"]["field"] == "model" and h["facet"]["sort"] == ["small", "large"]
    rect, vline, hline = h["spec"]["layer"]
    enc = rect["encoding"]
    assert (enc["x"]["field"], enc["x2"]["field"]) == ("time0", "time")
    assert (enc["y"]["field"], enc["y2"]["field"]) == ("group0", "group")
    assert enc["opacity"]["field"] == "significant" and enc["color"]["field"] == "estimate"
    assert vline["encoding"]["x"]["datum"] == 5.0 and hline["encoding"]["y"]["datum"] == 5.0
    assert vline["mark"]["strokeDash"] == [5, 4]
    data = pd.DataFrame(list(h["datasets"].values())[0])
    assert (data["time"] >= data["group"]).all()  # post_only
    # a tile spans the macro-batch (previous checkpoint, c]
    assert ((data["time"] - data["time0"]) == 1).all() and (
        (data["group"] - data["group0"]) == 1
    ).all()
    hidden = charts.family_heatmap(cells, mask="hide").to_dict()
    kept = pd.DataFrame(list(hidden["datasets"].values())[0])
    assert set(kept["significant"]) == {"significant"} and len(hidden["spec"]["layer"]) == 1
    with pytest.raises(ValueError, match="mask"):
        charts.family_heatmap(cells, mask="x")

    p = charts.family_paths(fit.path()).to_dict()
    assert p["layer"][1]["encoding"]["color"]["field"] == "model"
    assert p["layer"][0]["encoding"]["y2"]["field"] == "conf_high"

    lr = charts.family_instantaneous_lr(
        fit.instantaneous(), fit.family.lr_table(), sqrt_y=True
    ).to_dict()
    assert len(lr["vconcat"]) == 2
    first = lr["vconcat"][0]
    assert first["title"].startswith("small: peak LR 1.0e-03")
    assert first["layer"][1]["encoding"]["y"]["field"] == "lr"
    assert first["layer"][0]["layer"][0]["encoding"]["y"]["scale"]["type"] == "sqrt"
    with pytest.raises(KeyError, match="learning-rate schedule"):
        lr_small = fit.family.lr_table().query("model == 'small'")
        charts.family_instantaneous_lr(fit.instantaneous(), lr_small)

    r = charts.family_residual(fit.residual()).to_dict()
    assert r["facet"]["row"]["field"] == "model" and r["spec"]["layer"][0]["mark"]["type"] == "rule"
    assert r["spec"]["layer"][0]["encoding"]["y2"]["field"] == "estimate"

    pe = charts.family_persistent(fit.persistent(), significant_only=True).to_dict()
    assert pe["layer"][0]["encoding"]["x"]["scale"]["type"] == "sqrt"
    pdata = pd.DataFrame(list(pe["datasets"].values())[0])
    assert (pdata["estimate"] > 0).all() and (pdata["event_time"] >= 0).all()


def test_prediction_scatter_encodings() -> None:
    from causalmem.analysis.predict import predict_profile
    from causalmem.presentation import charts

    w = pd.DataFrame(
        {
            "group": [1, 1, 2, 2, 3, 3, 4, 4],
            "time": [1, 2, 2, 3, 3, 4, 4, 5],
            "a": [1.0, 0.5, 2.0, 1.0, 3.0, 1.5, 4.0, 2.0],
        }
    )
    w["b"] = 1 + 2 * w["a"]
    ch = charts.prediction_scatter(predict_profile(w, "b", ["a"]).cells).to_dict()
    data = pd.DataFrame(list(ch["datasets"].values())[0])
    assert set(data["method"]) == {"linear", "event_mean", "nearest"}
    assert len(data) == 3 * 4  # 4 held-out cells (cohorts 2 and 4) x 3 methods
    assert ch["layer"][0]["encoding"]["x"]["field"] == "predicted"
