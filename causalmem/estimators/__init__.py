"""Estimators: specification -> fit -> immutable result."""

from causalmem.estimators.aggte import aggte
from causalmem.estimators.att_gt import att_gt

__all__ = ["aggte", "att_gt"]
