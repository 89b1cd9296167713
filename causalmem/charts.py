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

if TYPE_CHECKING:
    import altair as alt

__all__ = [
    "correlation_matrix",
    "event_path",
    "instantaneous_vs_lr",
    "persistent_memorisation",
    "profile_heatmap",
    "residual_lollipop",
    "significant",
]


def _alt() -> Any:
    try:
        import altair as alt
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError("charts need altair: pip install 'altair>=5.3'") from exc
    return alt


def _need(frame: pd.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise KeyError(f"{what} needs tidy columns {missing}; got {list(frame.columns)}.")


def significant(frame: pd.DataFrame) -> pd.Series:
    """Boolean Series: the interval ``[conf_low, conf_high]`` excludes zero."""
    return (frame["conf_low"] > 0) | (frame["conf_high"] < 0)


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
    df["significant"] = np.where(significant(df), "significant", "not significant")
    df["group"] = df["group"].astype(int)
    df["time"] = df["time"].astype(int)
    lim = float(np.nanmax(np.abs(df["estimate"]))) if len(df) else 1.0
    steps = sorted(set(df["time"]).union(df["group"]))
    return (
        alt.Chart(df, title=title)
        .mark_rect()
        .encode(
            x=alt.X("time:O", title="checkpoint step c", sort=steps),
            y=alt.Y("group:O", title="treatment step g", sort="descending"),
            color=alt.Color(
                "estimate:Q",
                title=value_title,
                scale=alt.Scale(scheme="redblue", reverse=True, domain=[-lim, lim]),
            ),
            opacity=alt.Opacity(
                "significant:N",
                title="95% band",
                scale=alt.Scale(domain=["significant", "not significant"], range=[1.0, 0.25]),
            ),
            tooltip=[
                alt.Tooltip("group:O", title="g"),
                alt.Tooltip("time:O", title="c"),
                alt.Tooltip("estimate:Q", format=".3f"),
                alt.Tooltip("conf_low:Q", format=".3f"),
                alt.Tooltip("conf_high:Q", format=".3f"),
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
        tooltip=[
            alt.Tooltip("step:Q", title="g"),
            alt.Tooltip("estimate:Q", format=".3f"),
            alt.Tooltip("conf_low:Q", format=".3f"),
            alt.Tooltip("conf_high:Q", format=".3f"),
        ],
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
    band = base.mark_area(opacity=0.25, color="#2c7fb8").encode(
        x=xe, y=alt.Y("conf_low:Q", title=value_title), y2="conf_high:Q"
    )
    line = base.mark_line(color="#2c7fb8").encode(x=xe, y="estimate:Q")
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
        tooltip=[
            alt.Tooltip("e:Q", title="c − g"),
            alt.Tooltip("estimate:Q", format=".3f"),
            alt.Tooltip("conf_low:Q", format=".3f"),
            alt.Tooltip("conf_high:Q", format=".3f"),
        ],
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="black").encode(y="y:Q")
    start = (
        alt.Chart(pd.DataFrame({"x": [0.0]}))
        .mark_rule(color="black", strokeDash=[3, 3])
        .encode(x="x:Q")
    )
    return alt.layer(band, line, pts, zero, start, title=title).properties(width=420, height=260)


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
    _need(path, ("event_time", "estimate", "conf_low", "conf_high"), "persistent_memorisation")
    df = path[["event_time", "estimate", "conf_low", "conf_high"]].copy()
    df = df[np.isfinite(df["event_time"].to_numpy(dtype=float)) & (df["event_time"] >= 0)]
    df["significant"] = np.where(significant(df), "significant", "not significant")
    scale = alt.Scale(type="sqrt") if sqrt_axes else alt.Scale()
    xe = alt.X("event_time:Q", title="steps since training (c − g)", scale=scale)
    base = alt.Chart(df)
    band = base.mark_area(opacity=0.2, color="#d95f02").encode(
        x=xe, y=alt.Y("conf_low:Q", title=value_title), y2="conf_high:Q"
    )
    line = base.mark_line(color="#d95f02").encode(x=xe, y="estimate:Q")
    pts = base.mark_point(filled=True, size=30).encode(
        x=xe,
        y="estimate:Q",
        opacity=alt.Opacity(
            "significant:N",
            scale=alt.Scale(domain=["significant", "not significant"], range=[1.0, 0.25]),
            title="interval",
        ),
        tooltip=["event_time:Q", alt.Tooltip("estimate:Q", format=".3f")],
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="black").encode(y="y:Q")
    return alt.layer(band, line, pts, zero, title=title).properties(width=420, height=260)


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
    df["significant"] = np.where(significant(df), "significant", "not significant")
    df["zero"] = 0.0
    opacity = alt.Opacity(
        "significant:N",
        scale=alt.Scale(domain=["significant", "not significant"], range=[1.0, 0.3]),
        title="interval",
    )
    xg = alt.X("group:Q", title="treatment step g")
    stem = (
        alt.Chart(df)
        .mark_rule(color="#1b9e77")
        .encode(x=xg, y=alt.Y("zero:Q", title=value_title), y2="estimate:Q", opacity=opacity)
    )
    head = (
        alt.Chart(df)
        .mark_point(filled=True, size=40, color="#1b9e77")
        .encode(
            x=xg,
            y="estimate:Q",
            opacity=opacity,
            tooltip=["group:Q", alt.Tooltip("estimate:Q", format=".3f")],
        )
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
