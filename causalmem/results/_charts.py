"""Altair charts of single results, built only from tidy frames (returned, never saved).

The chart builders that results reach through their ``plot()`` method live here, in the results
layer, so that a result can draw itself without importing :mod:`causalmem.presentation` (a
higher layer); :mod:`causalmem.presentation.charts` re-exports them beside the family charts.
There is one implementation of each chart.

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

from lmecon.charts import alt as _alt
from lmecon.charts import need_columns as _need

if TYPE_CHECKING:
    import altair as alt

__all__ = [
    "coefficient_plot",
    "cohort_panels",
    "correlation_matrix",
    "event_path",
    "persistent_memorisation",
    "point_range",
    "prediction_scatter",
    "profile_heatmap",
    "residual_lollipop",
    "significant",
]


def significant(frame: pd.DataFrame) -> pd.Series:
    """Boolean Series: the interval ``[conf_low, conf_high]`` excludes zero."""
    return (frame["conf_low"] > 0) | (frame["conf_high"] < 0)


def _significance(frame: pd.DataFrame) -> np.ndarray:
    """``"significant"`` / ``"not significant"`` per row (the opacity field of the charts)."""
    return np.where(significant(frame), "significant", "not significant")


def _significance_opacity(alt: Any, faint: float, title: str) -> Any:
    """Opacity by the ``significant`` column: opaque when significant, ``faint`` otherwise."""
    return alt.Opacity(
        "significant:N",
        title=title,
        scale=alt.Scale(domain=["significant", "not significant"], range=[1.0, faint]),
    )


def _interval_tooltip(alt: Any) -> list[Any]:
    """Tooltips of the estimate and its interval."""
    return [
        alt.Tooltip("estimate:Q", format=".3f"),
        alt.Tooltip("conf_low:Q", format=".3f"),
        alt.Tooltip("conf_high:Q", format=".3f"),
    ]


def _estimate_colour(alt: Any, frame: pd.DataFrame, title: str) -> Any:
    """Diverging red-blue colour of ``estimate``, symmetric about zero."""
    lim = float(np.nanmax(np.abs(frame["estimate"]))) if len(frame) else 1.0
    return alt.Color(
        "estimate:Q",
        title=title,
        scale=alt.Scale(scheme="redblue", reverse=True, domain=[-lim, lim]),
    )


def _zero_rule(alt: Any) -> Any:
    """Horizontal black rule at y = 0."""
    return alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="black").encode(y="y:Q")


def _start_rule(alt: Any) -> Any:
    """Dashed vertical rule at x = 0 (the treatment time)."""
    return (
        alt.Chart(pd.DataFrame({"x": [0.0]}))
        .mark_rule(color="black", strokeDash=[3, 3])
        .encode(x="x:Q")
    )


def _event_rows(
    path: pd.DataFrame, cols: tuple[str, ...], what: str, *, after_only: bool = False
) -> pd.DataFrame:
    """Copy of ``cols`` of ``path`` with a finite ``event_time`` (and ``>= 0`` if asked)."""
    _need(path, cols, what)
    df = path[list(cols)].copy()
    keep = np.isfinite(df["event_time"].to_numpy(dtype=float))
    if after_only:
        keep &= df["event_time"] >= 0
    return df[keep]


def _band_and_line(
    alt: Any,
    base: Any,
    x: Any,
    value_title: str,
    *,
    band_opacity: float,
    colour: Any = None,
    point: bool = False,
    tooltip: list[Any] | None = None,
) -> tuple[Any, Any]:
    """Build the interval band ``[conf_low, conf_high]`` and the estimate line over ``x``.

    ``colour`` is a fixed colour (a string), a colour encoding (one line per model) or None.
    """
    mark: dict[str, Any] = {"color": colour} if isinstance(colour, str) else {}
    enc: dict[str, Any] = {} if colour is None or isinstance(colour, str) else {"color": colour}
    band = base.mark_area(opacity=band_opacity, **mark).encode(
        x=x, y=alt.Y("conf_low:Q", title=value_title), y2="conf_high:Q", **enc
    )
    line_mark: dict[str, Any] = {"point": True} if point else {}
    line_enc = dict(enc, tooltip=tooltip) if tooltip is not None else enc
    line = base.mark_line(**line_mark, **mark).encode(x=x, y="estimate:Q", **line_enc)
    return band, line


def _persistent_layers(
    alt: Any,
    df: pd.DataFrame,
    *,
    value_title: str,
    sqrt_axes: bool,
    band_opacity: float,
    colour: Any,
    tooltip: list[Any],
) -> list[Any]:
    """Build the band, line, significance-marked points and zero rule of θ(e), ``e >= 0``."""
    scale = alt.Scale(type="sqrt") if sqrt_axes else alt.Scale()
    x = alt.X("event_time:Q", title="steps since training (c − g)", scale=scale)
    base = alt.Chart(df)
    band, line = _band_and_line(alt, base, x, value_title, band_opacity=band_opacity, colour=colour)
    enc: dict[str, Any] = {} if isinstance(colour, str) else {"color": colour}
    pts = base.mark_point(filled=True, size=30).encode(
        x=x,
        y="estimate:Q",
        **enc,
        opacity=_significance_opacity(alt, 0.25, "interval"),
        tooltip=tooltip,
    )
    return [band, line, pts, _zero_rule(alt)]


def _lollipop_layers(alt: Any, data: Any, value_title: str, tooltip: list[Any]) -> tuple[Any, Any]:
    """Build the stem (0 to ``estimate``) and head of a residual lollipop per cohort.

    ``data`` is the frame (with ``zero`` and ``significant``), or None to take the data of the
    enclosing layer.
    """
    opacity = _significance_opacity(alt, 0.3, "interval")
    xg = alt.X("group:Q", title="treatment step g")
    chart = (lambda: alt.Chart()) if data is None else (lambda: alt.Chart(data))
    stem = (
        chart()
        .mark_rule(color="#1b9e77")
        .encode(x=xg, y=alt.Y("zero:Q", title=value_title), y2="estimate:Q", opacity=opacity)
    )
    head = (
        chart()
        .mark_point(filled=True, size=40, color="#1b9e77")
        .encode(x=xg, y="estimate:Q", opacity=opacity, tooltip=tooltip)
    )
    return stem, head


def mask_by(frame: pd.DataFrame, column: str | None, alp: float) -> np.ndarray:
    """Return the significance field: band excludes zero, or ``frame[column] < alp``."""
    if column is None:
        return _significance(frame)
    sig = frame[column].to_numpy(dtype=float) < alp  # NaN: not significant
    return np.where(sig, "significant", "not significant")


def profile_heatmap(
    cells: pd.DataFrame,
    *,
    title: str = "Memorisation profile",
    value_title: str = "memorisation",
    post_only: bool = False,
    significance: str | None = None,
    alp: float = 0.05,
) -> alt.Chart:
    """Heat-map of ATT(g, c): x = checkpoint, y = treatment cohort, colour = estimate.

    Non-significant cells are drawn faint (opacity 0.25) and significant ones opaque: the
    significance mask. Cells with a missing estimate are left out.

    Parameters
    ----------
    cells
        Tidy ATT(g, t) rows (``group, time, estimate, conf_low, conf_high``; e.g.
        ``AttGtResult.tidy()`` on the memorisation scale).
    title, value_title
        Chart and colour-legend titles.
    post_only
        Show only cells with ``time >= group``.
    significance
        ``None`` (default): a cell is significant when its band excludes zero. Or the name of
        a p-value column, e.g. ``"p_value_adj"`` from ``AttGtResult.tidy(p_adjust="BH")``
        (multiple-testing control across the cells): significant when it is below ``alp``.
    alp
        Threshold for ``significance``.

    Returns
    -------
    altair.Chart
    """
    alt = _alt()
    _need(cells, ("group", "time", "estimate", "conf_low", "conf_high"), "profile_heatmap")
    keep = ["group", "time", "estimate", "conf_low", "conf_high"]
    if significance is not None:
        _need(cells, (significance,), "profile_heatmap")
        keep.append(significance)
    df = cells.loc[np.isfinite(cells["estimate"].to_numpy(dtype=float)), keep].copy()
    if post_only:
        df = df[df["time"] >= df["group"]]
    df["significant"] = mask_by(df, significance, alp)
    df["group"] = df["group"].astype(int)
    df["time"] = df["time"].astype(int)
    steps = sorted(set(df["time"]).union(df["group"]))
    return (
        alt.Chart(df, title=title)
        .mark_rect()
        .encode(
            x=alt.X("time:O", title="checkpoint step c", sort=steps),
            y=alt.Y("group:O", title="treatment step g", sort="descending"),
            color=_estimate_colour(alt, df, value_title),
            opacity=_significance_opacity(alt, 0.25, "95% band"),
            tooltip=[
                alt.Tooltip("group:O", title="g"),
                alt.Tooltip("time:O", title="c"),
                *_interval_tooltip(alt),
            ],
        )
        .properties(width=420, height=320)
    )


def event_path(
    path: pd.DataFrame,
    *,
    x: str = "event_time",
    title: str = "Memorisation path by steps since training",
    value_title: str = "memorisation",
    x_title: str = "steps since training (c − g)",
) -> alt.LayerChart:
    """Event-time path θ(e) with its interval band, a zero line and the treatment time.

    Parameters
    ----------
    path
        Tidy aggregation rows with ``x`` (event time), ``estimate``, ``conf_low``,
        ``conf_high`` (e.g. ``aggte(res, "dynamic").tidy()`` on the memorisation scale); rows
        with a missing event time (the ``overall`` row) are dropped.
    x
        Event-time column.
    title, value_title, x_title
        Titles.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    _need(path, (x, "estimate", "conf_low", "conf_high"), "event_path")
    df = path[[x, "estimate", "conf_low", "conf_high"]].copy()
    df = df[np.isfinite(df[x].to_numpy(dtype=float))].rename(columns={x: "e"})
    df["phase"] = np.where(df["e"] >= 0, "after training", "before (placebo)")
    base = alt.Chart(df)
    xe = alt.X("e:Q", title=x_title)
    band, line = _band_and_line(alt, base, xe, value_title, band_opacity=0.25, colour="#2c7fb8")
    pts = base.mark_point(filled=True, size=35).encode(
        x=xe,
        y="estimate:Q",
        color=alt.Color(
            "phase:N",
            title=None,
            scale=alt.Scale(
                domain=["before (placebo)", "after training"], range=["#7f7f7f", "#2c7fb8"]
            ),
        ),
        tooltip=[alt.Tooltip("e:Q", title="c − g"), *_interval_tooltip(alt)],
    )
    return alt.layer(band, line, pts, _zero_rule(alt), _start_rule(alt), title=title).properties(
        width=420, height=260
    )


def persistent_memorisation(
    path: pd.DataFrame,
    *,
    title: str = "Persistent memorisation by steps since training",
    value_title: str = "memorisation",
    sqrt_axes: bool = True,
) -> alt.LayerChart:
    """Chart persistent memorisation theta(e) for ``e >= 0`` (the paper's Fig. 4).

    Parameters
    ----------
    path
        Tidy event-time rows on the memorisation scale with ``event_time``, ``estimate``,
        ``conf_low``, ``conf_high`` (e.g. ``MemorisationProfile.persistent()``).
    title, value_title
        Titles.
    sqrt_axes
        Square-root x axis, as in the paper (the early steps carry most of the change).

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    cols = ("event_time", "estimate", "conf_low", "conf_high")
    df = _event_rows(path, cols, "persistent_memorisation", after_only=True)
    df["significant"] = _significance(df)
    layers = _persistent_layers(
        alt,
        df,
        value_title=value_title,
        sqrt_axes=sqrt_axes,
        band_opacity=0.2,
        colour="#d95f02",
        tooltip=["event_time:Q", alt.Tooltip("estimate:Q", format=".3f")],
    )
    return alt.layer(*layers, title=title).properties(width=420, height=260)


def residual_lollipop(
    residual: pd.DataFrame,
    *,
    at: float | None = None,
    value_title: str = "memorisation",
) -> alt.LayerChart:
    """Residual memorisation tau(g, T) per cohort as a lollipop (the paper's Fig. 5).

    Parameters
    ----------
    residual
        Tidy cells on the memorisation scale with ``group``, ``estimate``, ``conf_low``,
        ``conf_high`` (e.g. ``MemorisationProfile.residual(at=T)``); opacity marks significance.
    at
        The checkpoint T, for the title.
    value_title
        Y-axis title.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    _need(residual, ("group", "estimate", "conf_low", "conf_high"), "residual_lollipop")
    df = residual[["group", "estimate", "conf_low", "conf_high"]].copy()
    df["significant"] = _significance(df)
    df["zero"] = 0.0
    stem, head = _lollipop_layers(
        alt, df, value_title, ["group:Q", alt.Tooltip("estimate:Q", format=".3f")]
    )
    title = "Residual memorisation" + (f" at step {at:,.0f}" if at is not None else "")
    return alt.layer(stem, head, title=title).properties(width=420, height=240)


def correlation_matrix(
    correlations: pd.DataFrame, *, title: str = "Correlation of memorisation profiles"
) -> alt.LayerChart:
    """Pairwise profile correlations with their intervals (the paper's Fig. 6, with uncertainty).

    Parameters
    ----------
    correlations
        ``compare_profiles(...).tidy()``: ``term`` ``"A~B"``, ``estimate``, ``conf_low``,
        ``conf_high``; the matrix is filled symmetrically with 1 on the diagonal.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    _need(correlations, ("term", "estimate", "conf_low", "conf_high"), "correlation_matrix")
    rows = []
    models: list[str] = []
    for r in correlations.itertuples(index=False):
        a, b = str(r.term).split("~", 1)
        for m in (a, b):
            if m not in models:
                models.append(m)
        label = f"{r.estimate:.2f}\n[{r.conf_low:.2f}, {r.conf_high:.2f}]"
        rows += [(a, b, r.estimate, label), (b, a, r.estimate, label)]
    rows += [(m, m, 1.0, "1") for m in models]
    df = pd.DataFrame(rows, columns=["model_a", "model_b", "rho", "label"])
    enc = {
        "x": alt.X("model_a:N", sort=models, title=None),
        "y": alt.Y("model_b:N", sort=models, title=None),
    }
    tiles = (
        alt.Chart(df)
        .mark_rect()
        .encode(
            **enc,
            color=alt.Color(
                "rho:Q", scale=alt.Scale(domain=[-1, 1], scheme="redblue", reverse=True), title="ρ"
            ),
        )
    )
    text = alt.Chart(df).mark_text(fontSize=10, lineBreak="\n").encode(**enc, text="label:N")
    return alt.layer(tiles, text, title=title).properties(
        width=60 * len(models) + 120, height=60 * len(models) + 80
    )


def prediction_scatter(
    cells: pd.DataFrame, *, title: str = "Predicted vs estimated profile (held-out cohorts)"
) -> alt.LayerChart:
    """Held-out cells: the target's estimate against each method's prediction, with y = x.

    Parameters
    ----------
    cells
        ``ProfilePrediction.cells`` (``split``, ``observed`` and the method columns).
    title
        Chart title.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    _need(cells, ("split", "observed", "linear"), "prediction_scatter")
    test = cells[cells["split"] == "test"]
    methods = [m for m in ("linear", "event_mean", "nearest") if m in test.columns]
    long = test.melt(
        id_vars=["group", "time", "observed"],
        value_vars=methods,
        var_name="method",
        value_name="predicted",
    )
    lo = float(np.nanmin(long[["observed", "predicted"]].to_numpy()))
    hi = float(np.nanmax(long[["observed", "predicted"]].to_numpy()))
    pts = (
        alt.Chart(long)
        .mark_point(filled=True, size=35, opacity=0.8)
        .encode(
            x=alt.X("predicted:Q", title="predicted memorisation"),
            y=alt.Y("observed:Q", title="estimated memorisation (target)"),
            color=alt.Color("method:N", sort=methods),
            tooltip=["method:N", "group:Q", "time:Q", alt.Tooltip("predicted:Q", format=".3f")],
        )
    )
    diag = (
        alt.Chart(pd.DataFrame({"a": [lo, hi], "b": [lo, hi]}))
        .mark_line(color="black", strokeDash=[4, 3])
        .encode(x="a:Q", y="b:Q")
    )
    return alt.layer(pts, diag, title=title).properties(width=340, height=300)


# ----------------------------------------------------------------------------- result plots
def cohort_panels(
    cells: pd.DataFrame,
    *,
    title: str = "Group-time average treatment effects",
    value_title: str = "ATT(g, t)",
    columns: int = 3,
    width: int = 220,
    height: int = 140,
) -> alt.FacetChart:
    """One panel per cohort g: ATT(g, t) with its interval by period, pre and post coloured.

    The layout of R ``did``'s ``ggdid()`` of an ``att_gt`` result: x = period, points with
    interval bars, grey before treatment and red after, a zero line in each panel.

    Parameters
    ----------
    cells
        Tidy ATT(g, t) rows (``group, time, estimate, conf_low, conf_high``; e.g.
        ``AttGtResult.tidy()``); cells with a missing estimate are left out.
    title, value_title
        Chart and y-axis titles.
    columns
        Panels per row.
    width, height
        Size of one panel.

    Returns
    -------
    altair.FacetChart
    """
    alt = _alt()
    cols = ("group", "time", "estimate", "conf_low", "conf_high")
    _need(cells, cols, "cohort_panels")
    df = cells.loc[np.isfinite(cells["estimate"].to_numpy(dtype=float)), list(cols)].copy()
    df["phase"] = np.where(df["time"] >= df["group"], "post", "pre")
    x = alt.X("time:Q", title="period t")
    colour = alt.Color(
        "phase:N", title=None, scale=alt.Scale(domain=["pre", "post"], range=["#7f7f7f", "#c0392b"])
    )
    base = alt.Chart()
    bars = base.mark_rule().encode(
        x=x, y=alt.Y("conf_low:Q", title=value_title), y2="conf_high:Q", color=colour
    )
    pts = base.mark_point(filled=True, size=35).encode(
        x=x,
        y="estimate:Q",
        color=colour,
        tooltip=[
            alt.Tooltip("group:Q", title="g"),
            alt.Tooltip("time:Q", title="t"),
            *_interval_tooltip(alt),
        ],
    )
    zero = (
        base.transform_aggregate(n="count()", groupby=["group"])
        .mark_rule(color="black")
        .encode(y=alt.datum(0.0))
    )
    return (
        alt.layer(bars, pts, zero, data=df)
        .properties(width=width, height=height)
        .facet(facet=alt.Facet("group:O", title="cohort g"), columns=columns, title=title)
    )


def _range_layers(alt: Any, df: pd.DataFrame, pos: Any, value: str, value_title: str) -> list[Any]:
    """Interval bars and significance-marked points of ``df`` at position ``pos``.

    ``value`` is the estimate's axis channel, ``"x"`` (horizontal ranges) or ``"y"``.
    """
    other = "y" if value == "x" else "x"
    channel = alt.X if value == "x" else alt.Y
    base = alt.Chart(df)
    bars = base.mark_rule(color="#2c7fb8").encode(
        **{other: pos, value: channel("conf_low:Q", title=value_title), f"{value}2": "conf_high:Q"}
    )
    pts = base.mark_point(filled=True, size=45, color="#2c7fb8").encode(
        **{other: pos, value: "estimate:Q"},
        opacity=_significance_opacity(alt, 0.35, "interval"),
        tooltip=[pos.shorthand, *_interval_tooltip(alt)],
    )
    zero = alt.Chart(pd.DataFrame({"v": [0.0]})).mark_rule(color="black")
    return [bars, pts, zero.encode(**{value: "v:Q"})]


def point_range(
    frame: pd.DataFrame,
    x: str,
    *,
    title: str = "Average treatment effects",
    value_title: str = "estimate",
    x_title: str | None = None,
) -> alt.LayerChart:
    """Estimates with their intervals at each value of ``x`` (ordinal axis), with a zero line.

    The ``ggdid()`` of R ``did``'s group and calendar aggregations (and of the single overall
    effect); rows with a missing ``x`` (the ``overall`` row of a by-group table) are left out.
    Non-significant points are drawn faint.

    Parameters
    ----------
    frame
        Tidy rows with ``x``, ``estimate``, ``conf_low``, ``conf_high`` (e.g.
        ``aggte(res, "group").tidy()``).
    x
        The column on the x axis (``group``, ``time``, ``term``, ...).
    title, value_title, x_title
        Titles (``x_title`` defaults to ``x``).

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    _need(frame, (x, "estimate", "conf_low", "conf_high"), "point_range")
    df = frame.loc[frame[x].notna(), [x, "estimate", "conf_low", "conf_high"]].copy()
    df["significant"] = _significance(df)
    pos = alt.X(f"{x}:O", title=x_title or x, axis=alt.Axis(labelAngle=0))
    layers = _range_layers(alt, df, pos, "y", value_title)
    return alt.layer(*layers, title=title).properties(width=max(120, 40 * len(df)), height=260)


def coefficient_plot(
    coefficients: pd.DataFrame,
    *,
    title: str = "Coefficients",
    value_title: str = "estimate",
) -> alt.LayerChart:
    """Coefficient plot: one row per term, the estimate with its interval, a zero line.

    Parameters
    ----------
    coefficients
        Tidy coefficient rows (``term, estimate, conf_low, conf_high``; e.g.
        ``TwfeResult.tidy()``), drawn in their order.
    title, value_title
        Chart and x-axis titles.

    Returns
    -------
    altair.LayerChart
    """
    alt = _alt()
    _need(coefficients, ("term", "estimate", "conf_low", "conf_high"), "coefficient_plot")
    df = coefficients[["term", "estimate", "conf_low", "conf_high"]].copy()
    df["significant"] = _significance(df)
    pos = alt.Y("term:N", title=None, sort=list(df["term"]))
    layers = _range_layers(alt, df, pos, "x", value_title)
    return alt.layer(*layers, title=title).properties(width=360, height=max(60, 22 * len(df)))
