"""Altair chart of a transfer's fidelity (re-exported from :mod:`steer.core.charts`).

- :func:`fidelity_chart` reads :meth:`steer.crossmodel.fidelity.TransferFidelity.tidy`.

The builders live in :mod:`steer.core.charts`, below the result classes, so that results can
draw themselves (``plot()``) without importing this higher layer; there is one implementation.
"""

from __future__ import annotations

from steer.core.charts import fidelity_chart

__all__ = ["fidelity_chart"]
