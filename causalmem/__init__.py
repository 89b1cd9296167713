"""causalmem: causal estimation of memorisation profiles of language models.

Callaway & Sant'Anna group-time DiD over training checkpoints (Lesci et al., ACL 2024), with
R ``did`` vocabulary: ``att_gt`` -> ``AttGtResult`` -> ``aggte``. Nothing runs at import time.
"""

from __future__ import annotations

from causalmem import errors
from causalmem.compare import ProfileComparison, compare_profiles
from causalmem.estimators import aggte, att_gt, bayes_did, event_study, twfe
from causalmem.family import (
    FamilyConfig,
    analyse_family,
    build_family,
    fit_family,
    load_family,
)
from causalmem.panel import (
    Panel,
    PanelSchema,
    SimulatedPanel,
    read_panel,
    simulate_panel,
    validate_long,
    write_panel,
)
from causalmem.power import plan_sample_size
from causalmem.predict import ProfilePrediction, predict_profile
from causalmem.profile import MemorisationProfile
from causalmem.report import build_report
from causalmem.results import AggteResult, AttGtResult, BayesDidResult, TwfeResult
from causalmem.tables import Table, etable
from causalmem.validation import ValidationResult, validate, validation_section

__all__ = [
    "AggteResult",
    "AttGtResult",
    "BayesDidResult",
    "FamilyConfig",
    "MemorisationProfile",
    "Panel",
    "PanelSchema",
    "ProfileComparison",
    "ProfilePrediction",
    "SimulatedPanel",
    "Table",
    "TwfeResult",
    "ValidationResult",
    "aggte",
    "analyse_family",
    "att_gt",
    "bayes_did",
    "build_family",
    "build_report",
    "compare_profiles",
    "errors",
    "etable",
    "event_study",
    "fit_family",
    "load_family",
    "plan_sample_size",
    "predict_profile",
    "read_panel",
    "simulate_panel",
    "twfe",
    "validate",
    "validate_long",
    "validation_section",
    "write_panel",
]

__version__ = "0.1.0"
