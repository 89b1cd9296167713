"""causalmem: causal estimation of memorisation profiles of language models.

Callaway & Sant'Anna group-time DiD over training checkpoints (Lesci et al., ACL 2024), with
R ``did`` vocabulary: ``att_gt`` -> ``AttGtResult`` -> ``aggte``. Nothing runs at import time.
"""

from __future__ import annotations

from causalmem import errors
from causalmem.compare import ProfileComparison, compare_profiles
from causalmem.estimators import aggte, att_gt, bayes_did, event_study, twfe
from causalmem.panel import (
    Panel,
    PanelSchema,
    SimulatedPanel,
    read_panel,
    simulate_panel,
    validate_long,
    write_panel,
)
from causalmem.profile import MemorisationProfile
from causalmem.results import AggteResult, AttGtResult, BayesDidResult, TwfeResult
from causalmem.tables import Table, etable

__all__ = [
    "AggteResult",
    "AttGtResult",
    "BayesDidResult",
    "MemorisationProfile",
    "ProfileComparison",
    "Table",
    "TwfeResult",
    "Panel",
    "PanelSchema",
    "SimulatedPanel",
    "aggte",
    "att_gt",
    "bayes_did",
    "compare_profiles",
    "errors",
    "etable",
    "event_study",
    "read_panel",
    "simulate_panel",
    "twfe",
    "validate_long",
    "write_panel",
]

__version__ = "0.1.0"
