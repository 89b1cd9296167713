"""Shared helper of the steer charts."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from lmecon.charts import need_columns


def _need(frame: pd.DataFrame, cols: Sequence[str], what: str) -> pd.DataFrame:
    """Check that ``frame`` has ``cols`` (naming the chart ``what``) and return a copy."""
    need_columns(frame, cols, what)
    return frame.copy()
