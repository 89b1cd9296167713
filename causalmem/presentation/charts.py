"""Altair charts of memorisation profiles, built only from tidy frames (returned, never saved).

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
    "family_heatmap",
    "family_instantaneous_lr",
    "family_paths",
    "family_persistent",
    "family_residual",
    "prediction_scatter",
    "correlation_matrix",
    "event_path",
    "instantaneous_vs_lr",
    "persistent_memorisation",
    "profile_heatmap",
    "residual_lollipop",
    "significant",
]


def significant(frame: pd.DataFrame) -> pd.Series:
    """Boolean Series: the interval ``[conf_low, conf_high]`` excludes zero."""
    return (frame["conf_low"] > 0) | (frame["conf_high"] < 0)


# ----------------------------------------------------------------------------- shared layers
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


def profile_heatmap(
    cells: pd.DataFrame,
    *,
    title: str = "Memorisation profile",
    value_title: str = "memorisation",
    post_only: bool = False,
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

    Returns
    -------
    altair.Chart
    """
    alt = _alt()
    _need(cells, ("group", "time", "estimate", "conf_low", "conf_high"), "profile_heatmap")
    df = cells.loc[
        np.isfinite(cells["estimate"].to_numpy(dtype=float)),
        ["group", "time", "estimate", "conf_low", "conf_high"],
    ].copy()
    if post_only:
        df = df[df["time"] >= df["group"]]
    df["significant"] = _significance(df)
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

    Returns
    -------
    altair.FacetChart
    """
    alt = _alt()
    _need(cells, ("group", "time", "estimate", "conf_low", "conf_high"), "family_heatmap")
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
        d = d[["model", "group", "time", "estimate", "conf_low", "conf_high"]].copy()
        d["time0"] = _tile_edges(d["time"])
        d["group0"] = _tile_edges(d["group"])
        parts.append(d)
    df = pd.concat(parts, ignore_index=True) if parts else df
    df["significant"] = _significance(df)
    if mask == "hide":
        df = df[df["significant"] == "significant"]
    base = alt.Chart()
    rect = base.mark_rect().encode(
        x=alt.X("time0:Q", title="checkpoint step c"),
        x2="time:Q",
        y=alt.Y("group0:Q", title="treatment step g", scale=alt.Scale(reverse=True)),
        y2="group:Q",
        color=_estimate_colour(alt, df, value_title),
        opacity=_significance_opacity(alt, 0.25, "95% band"),
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
