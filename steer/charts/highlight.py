"""Altair chart of a highlight (re-exported from :mod:`steer.core.charts`).

- :func:`delta_chart` reads :meth:`steer.highlighting.Highlight.tidy`.

The builders live in :mod:`steer.core.charts`, below the result classes, so that results can
draw themselves (``plot()``) without importing this higher layer; there is one implementation.
"""

from __future__ import annotations

from steer.core.charts import delta_chart

__all__ = ["delta_chart"]
