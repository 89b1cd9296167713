"""Altair charts of a factor analysis (re-exported from :mod:`steer.core.charts`).

- :func:`scree_chart` reads :meth:`steer.factors.FactorAnalysis.scree`;
- :func:`loadings_chart` reads :meth:`steer.factors.FactorAnalysis.tidy`.

The builders live in :mod:`steer.core.charts`, below the result classes, so that results can
draw themselves (``plot()``) without importing this higher layer; there is one implementation.
"""

from __future__ import annotations

from steer.core.charts import loadings_chart, scree_chart

__all__ = ["loadings_chart", "scree_chart"]
