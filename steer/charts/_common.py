"""Shared helper of the steer charts (implemented in :mod:`steer.core.charts`)."""

from __future__ import annotations

from steer.core.charts import _need_copy as _need

__all__ = ["_need"]
