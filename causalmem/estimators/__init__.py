"""Estimators: specification -> fit -> immutable result."""

from causalmem.estimators.aggte import aggte
from causalmem.estimators.att_gt import att_gt
from causalmem.estimators.att_gt_rc import att_gt_rc
from causalmem.estimators.bayes import bayes_did
from causalmem.estimators.diagnostics import bacon_decomposition, twfe_weights
from causalmem.estimators.event_study import event_study
from causalmem.estimators.imputation import did2s, did_imputation
from causalmem.estimators.ray_engine import att_gt_ray
from causalmem.estimators.reexposure import reexposure_att
from causalmem.estimators.streaming import att_gt_stream
from causalmem.estimators.twfe import twfe

__all__ = [
    "reexposure_att",
    "att_gt_ray",
    "att_gt_stream",
    "bacon_decomposition",
    "twfe_weights",
    "aggte",
    "att_gt",
    "att_gt_rc",
    "bayes_did",
    "did2s",
    "did_imputation",
    "event_study",
    "twfe",
]
