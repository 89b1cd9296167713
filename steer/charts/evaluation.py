"""Altair charts of steer evaluations (re-exported from :mod:`steer.core.charts`).

- :func:`epsilon_curves`: metric against the steer value with +-1.96 SE bands (the paper's
  Fig. 4a), one panel per metric, one colour per prompt set;
- :func:`composition_grid`: a heatmap of one metric over two steers' values (Fig. 4b).

The builders live in :mod:`steer.core.charts`, below the result classes, so that results can
draw themselves (``plot()``) without importing this higher layer; there is one implementation.
"""

from __future__ import annotations

from steer.core.charts import METRIC_LABELS, composition_grid, epsilon_curves

__all__ = ["METRIC_LABELS", "composition_grid", "epsilon_curves"]
