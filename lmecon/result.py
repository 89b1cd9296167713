"""The Result protocol every result of ``causalmem`` and ``steer`` implements.

A result is an immutable value (a frozen dataclass) that records the call that made it
(``spec``: a frozen value, e.g. a frozen dataclass or a read-only mapping) and its provenance
(library versions, creation time, seed, ...), and offers:

``tidy()``
    a long :class:`pandas.DataFrame` with snake_case columns (``term, estimate, std_error,
    statistic, p_value, conf_low, conf_high`` where they apply);
``glance()``
    a one-row :class:`pandas.DataFrame` of model-level facts;
``summary()``
    a printable ``str``;
``to_latex()`` / ``to_markdown()`` / ``_repr_html_()``
    the main table rendered (display labels are applied only here);
``plot(**options)`` (optional)
    an Altair chart of the result, as R users get from ``ggdid()`` / ``iplot()``: built by the
    package's chart functions from the result's tidy frames (``options`` go to that function;
    some results take a ``kind``). Charts render offline to PNG/SVG with vl-convert
    (:func:`lmecon.charts.save_chart`, :func:`lmecon.charts.chart_svg`). Not every result has
    one, so :func:`check_result` does not require it; the chart builders live in a layer the
    results may import (``causalmem.results._charts``, ``steer.core.charts``) and are
    re-exported by the presentation modules (``causalmem.presentation.charts``,
    ``steer.charts``).

:class:`ResultMixin` derives the three renderings from one method, ``_table()`` (default:
``tidy()``), so a result only writes ``tidy``, ``glance`` and ``summary``.
:func:`check_result` is what the package's parametrised protocol test asserts.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import pandas as pd

__all__ = ["Result", "ResultMixin", "check_result", "frozen_mapping", "render_table"]


@runtime_checkable
class Result(Protocol):
    """What every result offers (see the module docstring)."""

    @property
    def spec(self) -> Any:
        """The frozen record of the call that made the result."""
        ...

    @property
    def provenance(self) -> Mapping[str, Any]:
        """Library versions, time, seed and other facts about how the result was made."""
        ...

    def tidy(self) -> pd.DataFrame:
        """Long frame with snake_case columns."""
        ...

    def glance(self) -> pd.DataFrame:
        """One row of model-level facts."""
        ...

    def summary(self) -> str:
        """Return a printable summary."""
        ...

    def to_latex(self) -> str:
        """Return the main table as LaTeX (booktabs)."""
        ...

    def to_markdown(self) -> str:
        """Return the main table as Markdown."""
        ...

    def _repr_html_(self) -> str:
        """Return the main table as HTML (Jupyter)."""
        ...


def frozen_mapping(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return a read-only view of a copy of ``data`` (nested dicts are frozen too)."""
    return MappingProxyType(
        {k: frozen_mapping(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    )


def render_table(frame: pd.DataFrame, fmt: str, digits: int = 4, caption: str | None = None) -> str:
    """Render a frame as ``"latex"`` (booktabs), ``"markdown"`` or ``"html"``."""
    if fmt == "latex":
        sty = frame.style.format(precision=digits, na_rep="").hide(axis="index")
        return str(sty.to_latex(hrules=True, caption=caption, position_float="centering"))
    if fmt == "markdown":
        text = frame.to_markdown(index=False, floatfmt=f".{digits}f")
        return f"{caption}\n\n{text}" if caption else text
    if fmt == "html":
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        body = frame.to_html(index=False, border=0, float_format=lambda v: f"{v:.{digits}g}")
        return body.replace(">", ">" + cap, 1) if cap else body
    raise ValueError(f"fmt={fmt!r}; use 'latex', 'markdown' or 'html'.")


class ResultMixin:
    """Default ``to_latex`` / ``to_markdown`` / ``_repr_html_`` from ``self._table()``."""

    def _table(self) -> pd.DataFrame:
        return self.tidy()  # type: ignore[attr-defined, no-any-return]

    def _caption(self) -> str | None:
        return None

    def to_latex(self, digits: int = 4) -> str:
        """Return the main table as LaTeX (booktabs)."""
        return render_table(self._table(), "latex", digits, self._caption())

    def to_markdown(self, digits: int = 4) -> str:
        """Return the main table as Markdown."""
        return render_table(self._table(), "markdown", digits, self._caption())

    def _repr_html_(self) -> str:
        return render_table(self._table(), "html", 4, self._caption())


def _is_frozen(value: Any) -> bool:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        params = getattr(type(value), "__dataclass_params__", None)
        return bool(params is not None and params.frozen)
    if isinstance(value, MappingProxyType | tuple | str | int | float | frozenset):
        return True
    return value is None


def check_result(result: Any) -> None:
    """Assert that ``result`` honours the Result protocol (used by the protocol test).

    Checks: every method exists and returns the right type, ``glance()`` has one row, ``tidy()``
    columns are snake_case strings, ``spec`` is frozen, ``provenance`` is a mapping, and the
    result itself is a frozen dataclass.
    """
    name = type(result).__name__
    assert isinstance(result, Result), f"{name} lacks part of the Result protocol"
    assert _is_frozen(result), f"{name} is not a frozen dataclass"
    assert _is_frozen(result.spec), f"{name}.spec is not frozen: {type(result.spec).__name__}"
    assert isinstance(result.provenance, Mapping), f"{name}.provenance is not a mapping"
    tidy = result.tidy()
    assert isinstance(tidy, pd.DataFrame), f"{name}.tidy() is not a DataFrame"
    bad = [c for c in tidy.columns if not (isinstance(c, str) and c == c.lower() and " " not in c)]
    assert not bad, f"{name}.tidy() has columns that are not snake_case: {bad}"
    glance = result.glance()
    assert isinstance(glance, pd.DataFrame) and len(glance) == 1, f"{name}.glance() is not 1 row"
    for method in ("summary", "to_latex", "to_markdown", "_repr_html_"):
        out = getattr(result, method)()
        assert isinstance(out, str) and out, f"{name}.{method}() did not return text"
