"""Presentation: Altair charts, tables (etable) and the render-only HTML report.

Reads tidy frames and fitted results; fits nothing.
"""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "Table",
    "ReportContent",
    "render_report",
    "etable",
    "read_section",
]

_WHERE = {
    "etable": "tables",
    "Table": "tables",
    "read_section": "report",
    "ReportContent": "report",
    "render_report": "report",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
