"""Estimators: specification -> fit -> immutable result."""

from causalmem.estimators.aggte import aggte
from causalmem.estimators.att_gt import att_gt
from causalmem.estimators.bayes import bayes_did
from causalmem.estimators.event_study import event_study
from causalmem.estimators.twfe import twfe

__all__ = ["aggte", "att_gt", "bayes_did", "event_study", "twfe"]
