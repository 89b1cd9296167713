"""Altair charts of memorisation profiles, built only from tidy frames (returned, never saved).

The single-result charts (heat-map, event path, persistent and residual memorisation,
correlation matrix, prediction scatter, and the ``plot()`` charts of the results) are built in
:mod:`causalmem.results._charts`, so that results can draw themselves without importing this
higher layer, and are re-exported here; the multi-model (family) charts and the
learning-rate overlay are built here.

Every function reads columns of a tidy frame (``estimate``, ``conf_low``, ``conf_high`` and
``group`` / ``time`` / ``event_time``) and returns an Altair chart; nothing is saved, themed or
mutated here (the caller's frame is copied). Put estimates on the memorisation scale *before*
charting (for surprisal-like outcomes negate ``estimate`` and swap the bounds; see
:class:`causalmem.MemorisationProfile`, which does it). A cell is *significant* when its interval
excludes zero (R ``did``'s convention).

Save with ``chart.save("x.png")`` (needs ``vl-convert-python``) or ``chart.save("x.html",
inline=True)``. Altair is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem.results._charts import (
    _band_and_line,
    _estimate_colour,
    _event_rows,
    _interval_tooltip,
    _lollipop_layers,
    _persistent_layers,
    _significance,
    _significance_opacity,
    _start_rule,
    _zero_rule,
    coefficient_plot,
    cohort_panels,
    correlation_matrix,
    event_path,
    mask_by,
    persistent_memorisation,
    point_range,
    prediction_scatter,
    profile_heatmap,
    residual_lollipop,
    significant,
)
from lmecon.charts import alt as _alt
from lmecon.charts import need_columns as _need

if TYPE_CHECKING:
    import altair as alt

__all__ = [
    "coefficient_plot",
    "cohort_panels",
    "correlation_matrix",
    "event_path",
    "family_heatmap",
    "family_instantaneous_lr",
    "family_paths",
    "family_persistent",
    "family_residual",
    "instantaneous_vs_lr",
    "persistent_memorisation",
    "point_range",
    "prediction_scatter",
    "profile_heatmap",
    "residual_lollipop",
    "significant",
]


def instantaneous_vs_lr(
    instantaneous: pd.DataFrame,
    lr: pd.DataFrame,
    *,
    title: str = "Instantaneous memorisation and the learning rate",
    value_title: str = "instantaneous memorisation τ(g, g)",
    lr_column: str = "lr",
    step_column: str = "step",
) -> alt.LayerChart:
    """τ(g, g) with its interval by cohort (left axis) over the LR schedule (right axis).

    Parameters
    ----------
    instantaneous
        Tidy rows with ``group, estimate, conf_low, conf_high`` (one per cohort).
    lr
        Learning-rate schedule: ``step_column`` and ``lr_column``.
    title, value_title
        Titles.
    lr_column, step_column
        Column names of ``lr``.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    _need(instantaneous, ("group", "estimate", "conf_low", "conf_high"), "instantaneous_vs_lr")
    _need(lr, (step_column, lr_column), "instantaneous_vs_lr (lr)")
    inst = instantaneous[["group", "estimate", "conf_low", "conf_high"]].copy()
    inst = inst[np.isfinite(inst["estimate"].to_numpy(dtype=float))]
    sched = lr[[step_column, lr_column]].rename(columns={step_column: "step", lr_column: "lr"})
    x = alt.X("step:Q", title="training step")
    line = (
        alt.Chart(sched)
        .mark_line(color="#999999", strokeDash=[4, 3])
        .encode(x=x, y=alt.Y("lr:Q", title="learning rate", axis=alt.Axis(format=".1e")))
    )
    base = alt.Chart(inst.rename(columns={"group": "step"}))
    bars = base.mark_rule(color="#c0392b").encode(
        x=x, y=alt.Y("conf_low:Q", title=value_title), y2="conf_high:Q"
    )
    pts = base.mark_point(color="#c0392b", filled=True, size=45).encode(
        x=x,
        y=alt.Y("estimate:Q", title=value_title),
        tooltip=[alt.Tooltip("step:Q", title="g"), *_interval_tooltip(alt)],
    )
    return (
        alt.layer(bars + pts, line, title=title)
        .resolve_scale(y="independent")
        .properties(width=420, height=260)
    )


# ----------------------------------------------------------------------------- families
def _model_colour(alt: Any, frame: pd.DataFrame) -> Any:
    """One colour per model, in the frame's order of appearance."""
    return alt.Color("model:N", sort=list(dict.fromkeys(frame["model"])), title="model")


def _model_tooltip(alt: Any, x: str) -> list[Any]:
    """Model, ``x`` and estimate tooltips of the family charts."""
    return ["model:N", x, alt.Tooltip("estimate:Q", format=".3f")]


def _tile_edges(values: pd.Series) -> pd.Series:
    """Previous grid point of each value (the tile's lower edge); the first gets 0 or its gap."""
    grid = np.unique(values.to_numpy(dtype=float))
    prev = np.concatenate(
        [[grid[0] - (grid[1] - grid[0]) if grid.size > 1 else grid[0] - 1], grid[:-1]]
    )
    prev[0] = max(prev[0], 0.0) if grid[0] > 0 else prev[0]
    return pd.Series(np.interp(values.to_numpy(dtype=float), grid, prev), index=values.index)


def family_heatmap(
    cells: pd.DataFrame,
    *,
    epoch_end: float | None = None,
    mask: str = "opacity",
    post_only: bool = True,
    columns: int = 3,
    title: str = "Memorisation profiles by model",
    value_title: str = "memorisation",
    width: int = 260,
    height: int = 220,
    significance: str | None = None,
    alp: float = 0.05,
) -> alt.FacetChart:
    """Profile heat-maps faceted by model (the paper's Figs 1 and 2).

    Each tile spans one cohort × one checkpoint interval: x from the previous checkpoint to
    ``c``, y from the previous cohort to ``g`` (the macro-batch ``(c_{k-1}, c_k]``), so the axes
    are in steps and a dashed line can mark the end of the first epoch.

    Parameters
    ----------
    cells
        Tidy ATT(g, c) rows on the memorisation scale with ``model, group, time, estimate,
        conf_low, conf_high`` (e.g. ``FamilyFit.cells()``); a frame without ``model`` is one
        facet.
    epoch_end
        Draw dashed lines at this step on both axes (the paper: 95,000); None: no line.
    mask
        ``"opacity"``: non-significant cells faint; ``"hide"``: significant cells only (Fig. 2).
    post_only
        Keep only ``c >= g`` (the paper's profiles).
    columns
        Facets per row.
    title, value_title, width, height
        Titles and facet size.
    significance
        ``None`` (default): a cell is significant when its band excludes zero. Or the name of
        a p-value column, e.g. ``"p_value_adj"`` from ``AttGtResult.tidy(p_adjust="BH")``
        (multiple-testing control across the cells): significant when it is below ``alp``.
    alp
        Threshold for ``significance`` (the package's one name for the significance level).

    Returns
    -------
    altair.FacetChart
    """
    alt = _alt()
    _need(cells, ("group", "time", "estimate", "conf_low", "conf_high"), "family_heatmap")
    if significance is not None:
        _need(cells, (significance,), "family_heatmap")
    if mask not in ("opacity", "hide"):
        raise ValueError(f"mask={mask!r}; use 'opacity' or 'hide'.")
    df = cells.copy()
    if "model" not in df:
        df["model"] = "model"
    df = df[np.isfinite(df["estimate"].to_numpy(dtype=float))]
    if post_only:
        df = df[df["time"] >= df["group"]]
    models = list(dict.fromkeys(df["model"]))
    parts = []
    for _, d in df.groupby("model", sort=False):
        keep = ["model", "group", "time", "estimate", "conf_low", "conf_high"]
        d = d[keep + ([significance] if significance is not None else [])].copy()
        d["time0"] = _tile_edges(d["time"])
        d["group0"] = _tile_edges(d["group"])
        parts.append(d)
    df = pd.concat(parts, ignore_index=True) if parts else df
    df["significant"] = mask_by(df, significance, alp)
    if mask == "hide":
        df = df[df["significant"] == "significant"]
    legend = "95% band" if significance is None else f"{significance} < {alp:g}"
    base = alt.Chart()
    rect = base.mark_rect().encode(
        x=alt.X("time0:Q", title="checkpoint step c"),
        x2="time:Q",
        y=alt.Y("group0:Q", title="treatment step g", scale=alt.Scale(reverse=True)),
        y2="group:Q",
        color=_estimate_colour(alt, df, value_title),
        opacity=_significance_opacity(alt, 0.25, legend),
        tooltip=[
            "model:N",
            alt.Tooltip("group:Q", title="g"),
            alt.Tooltip("time:Q", title="c"),
            *_interval_tooltip(alt),
        ],
    )
    layers: list[Any] = [rect]
    if epoch_end is not None:
        one = base.transform_aggregate(n="count()", groupby=["model"])
        style = {"color": "black", "strokeDash": [5, 4], "strokeWidth": 1.5}
        layers.append(one.mark_rule(**style).encode(x=alt.datum(float(epoch_end))))
        layers.append(one.mark_rule(**style).encode(y=alt.datum(float(epoch_end))))
    return (
        alt.layer(*layers, data=df)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("model:N", sort=models, title=None), columns=columns, title=title)
    )


def family_paths(
    path: pd.DataFrame,
    *,
    title: str = "Memorisation path by model",
    value_title: str = "memorisation",
    x_title: str = "steps since training (c − g)",
) -> alt.LayerChart:
    """Event-time paths θ(e) of several models, one colour each, with their interval bands.

    Parameters
    ----------
    path
        Tidy rows with ``model, event_time, estimate, conf_low, conf_high`` (e.g.
        ``FamilyFit.path()``); rows without an event time are dropped.
    title, value_title, x_title
        Titles.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    cols = ("model", "event_time", "estimate", "conf_low", "conf_high")
    df = _event_rows(path, cols, "family_paths")
    band, line = _band_and_line(
        alt,
        alt.Chart(df),
        alt.X("event_time:Q", title=x_title),
        value_title,
        band_opacity=0.18,
        colour=_model_colour(alt, df),
        point=True,
        tooltip=_model_tooltip(alt, "event_time:Q"),
    )
    return alt.layer(band, line, _zero_rule(alt), _start_rule(alt), title=title).properties(
        width=460, height=280
    )


def family_instantaneous_lr(
    instantaneous: pd.DataFrame,
    lr: pd.DataFrame,
    *,
    significant_only: bool = False,
    sqrt_y: bool = False,
    title: str = "Instantaneous memorisation and each model's learning rate",
    value_title: str = "τ(g, g)",
) -> alt.VConcatChart:
    """One panel per model: τ(g, g) by cohort over that model's own LR schedule (Fig. 3).

    Parameters
    ----------
    instantaneous
        Tidy rows with ``model, group, estimate, conf_low, conf_high`` (``FamilyFit
        .instantaneous()``).
    lr
        Schedules with ``model, step, lr`` (``Family.lr_table()``): each model's real peak LR
        (pitfall 13), not one schedule for all.
    significant_only
        Keep only cohorts whose interval excludes zero (the paper's Fig. 3).
    sqrt_y
        Square-root y axis (the paper's Fig. 3).
    title, value_title
        Titles.

    Returns
    -------
    altair.VConcatChart
    """
    alt = _alt()
    _need(
        instantaneous,
        ("model", "group", "estimate", "conf_low", "conf_high"),
        "family_instantaneous_lr",
    )
    _need(lr, ("model", "step", "lr"), "family_instantaneous_lr (lr)")
    panels = []
    for model in dict.fromkeys(instantaneous["model"]):
        inst = instantaneous[instantaneous["model"] == model]
        if significant_only:
            inst = inst[significant(inst)]
        sched = lr[lr["model"] == model]
        if sched.empty:
            raise KeyError(f"No learning-rate schedule for model {model!r} in lr.")
        ch = instantaneous_vs_lr(
            inst,
            sched,
            title=f"{model}: peak LR {float(sched['lr'].max()):.1e}",
            value_title=value_title,
        )
        if sqrt_y:
            ch.layer[0].layer[0].encoding.y.scale = alt.Scale(type="sqrt")
        panels.append(ch.properties(width=420, height=180))
    return alt.vconcat(*panels, title=title).resolve_scale(x="shared")


def family_residual(
    residual: pd.DataFrame,
    *,
    value_title: str = "residual memorisation τ(g, T)",
    title: str = "Residual memorisation at the end of the first epoch",
) -> alt.FacetChart:
    """Residual memorisation τ(g, T) per cohort, one lollipop row per model (Fig. 5).

    Parameters
    ----------
    residual
        Tidy rows with ``model, group, estimate, conf_low, conf_high`` (and ``at``, T), e.g.
        ``FamilyFit.residual()``; opacity marks significance.
    value_title, title
        Titles.

    Returns
    -------
    altair.FacetChart
    """
    alt = _alt()
    _need(residual, ("model", "group", "estimate", "conf_low", "conf_high"), "family_residual")
    df = residual[["model", "group", "estimate", "conf_low", "conf_high"]].copy()
    df["significant"] = _significance(df)
    df["zero"] = 0.0
    models = list(dict.fromkeys(df["model"]))
    stem, head = _lollipop_layers(alt, None, value_title, _model_tooltip(alt, "group:Q"))
    return (
        alt.layer(stem, head, data=df)
        .properties(width=440, height=130)
        .facet(row=alt.Row("model:N", sort=models, title=None), title=title)
    )


def family_persistent(
    path: pd.DataFrame,
    *,
    sqrt_axes: bool = True,
    significant_only: bool = False,
    title: str = "Persistent memorisation by model",
    value_title: str = "memorisation θ(e)",
) -> alt.LayerChart:
    """Chart persistent memorisation θ(e), ``e >= 0``, one colour per model (Fig. 4).

    Parameters
    ----------
    path
        Tidy rows with ``model, event_time, estimate, conf_low, conf_high`` (``FamilyFit
        .persistent()``).
    sqrt_axes
        Square-root x axis (the paper).
    significant_only
        Keep only positive, significant points (the paper's Fig. 4); otherwise opacity marks them.
    title, value_title
        Titles.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    cols = ("model", "event_time", "estimate", "conf_low", "conf_high")
    df = _event_rows(path, cols, "family_persistent", after_only=True)
    df["significant"] = _significance(df)
    if significant_only:
        df = df[(df["significant"] == "significant") & (df["estimate"] > 0)]
    layers = _persistent_layers(
        alt,
        df,
        value_title=value_title,
        sqrt_axes=sqrt_axes,
        band_opacity=0.15,
        colour=_model_colour(alt, df),
        tooltip=_model_tooltip(alt, "event_time:Q"),
    )
    return alt.layer(*layers, title=title).properties(width=460, height=280)
