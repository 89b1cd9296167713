"""Altair plumbing shared by the chart modules: lazy import, tidy-column checks, saving.

Chart builders read tidy frames and return charts; only workflows and analysis scripts save
them, through :func:`save_chart` (atomic, PNG/SVG via vl-convert, HTML with Vega inlined).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lmecon.atomic import atomic_path

__all__ = ["MissingColumnsError", "alt", "chart_svg", "need_columns", "save_chart"]


class MissingColumnsError(KeyError, ValueError):
    """A chart was given a frame without the tidy columns it reads."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def alt() -> Any:
    """Import and return :mod:`altair`, with an install hint when it is missing."""
    try:
        import altair
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError(
            "charts need altair and vl-convert: pip install 'causalmem[report]'"
        ) from exc
    return altair


def need_columns(frame: pd.DataFrame, cols: Sequence[str], what: str, hint: str = "") -> None:
    """Raise :class:`MissingColumnsError` naming the columns ``frame`` lacks of ``cols``."""
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        where = f" ({hint})" if hint else ""
        raise MissingColumnsError(
            f"{what} needs columns {missing}{where}; got {list(frame.columns)}."
        )


def save_chart(
    chart: Any, stem: str | os.PathLike[str], formats: Sequence[str] = ("png", "svg", "html")
) -> list[Path]:
    """Save an Altair chart as ``stem.<fmt>`` for each format, atomically (PNG/SVG: vl-convert).

    PNG is rendered at scale factor 2; HTML is saved with the Vega libraries inlined
    (``inline=True``), so it opens offline. Returns the written paths.
    """
    base = Path(stem)
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = base.with_suffix(f".{fmt}")
        kwargs: dict[str, Any] = {}
        if fmt == "png":
            kwargs["scale_factor"] = 2.0
        elif fmt == "html":
            kwargs["inline"] = True
        with atomic_path(target) as tmp:
            chart.save(str(tmp), format=fmt, **kwargs)
        out.append(target)
    return out


def chart_svg(chart: Any) -> str:
    """Render an Altair chart to an SVG string with vl-convert (no network access)."""
    try:
        import vl_convert as vlc
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError("the report needs vl-convert: pip install vl-convert-python") from exc
    svg = vlc.vegalite_to_svg(chart.to_dict(), allowed_base_urls=[])
    return str(svg)
