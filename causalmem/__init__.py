"""causalmem: causal estimation of memorisation profiles of language models.

Callaway & Sant'Anna group-time DiD over training checkpoints (Lesci et al., ACL 2024), with
R ``did`` vocabulary: ``att_gt`` -> ``AttGtResult`` -> ``aggte``. Nothing runs at import time:
the names below are imported on first use, so ``import causalmem`` loads no numerics, torch,
PyMC or Altair.

Layers, lowest first (a module never imports a higher layer; ``docs/architecture.md``,
enforced by ``tests/test_layering.py``): ``_numerics`` -> ``panel`` -> ``instances`` ->
``results`` -> ``estimators`` (which build results) -> ``analysis`` (profile, compare, predict,
power) -> ``presentation`` (charts, tables, report) -> ``scoring`` and ``lab`` (which produce
panels) -> ``workflows`` (the applications) -> ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from causalmem import errors
from lmecon.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from causalmem.analysis.compare import ProfileComparison, compare_profiles
    from causalmem.analysis.power import plan_sample_size
    from causalmem.analysis.predict import ProfilePrediction, predict_profile
    from causalmem.analysis.pretrends import pretrends_power, slope_for_power
    from causalmem.analysis.profile import MemorisationProfile
    from causalmem.analysis.sensitivity import breakdown_value, honest_did
    from causalmem.estimators.aggte import aggte
    from causalmem.estimators.att_gt import att_gt
    from causalmem.estimators.att_gt_rc import att_gt_rc
    from causalmem.estimators.bayes import bayes_did, bayes_sensitivity
    from causalmem.estimators.diagnostics import bacon_decomposition, twfe_weights
    from causalmem.estimators.event_study import event_study
    from causalmem.estimators.imputation import did2s, did_imputation
    from causalmem.estimators.ray_engine import att_gt_ray
    from causalmem.estimators.reexposure import reexposure_att
    from causalmem.estimators.streaming import att_gt_stream
    from causalmem.estimators.twfe import twfe
    from causalmem.panel.checks import validate_long
    from causalmem.panel.io import read_panel, write_panel
    from causalmem.panel.panel import Panel
    from causalmem.panel.schema import PanelSchema
    from causalmem.panel.simulate import SimulatedPanel, simulate_panel
    from causalmem.panel.simulate_reexposure import simulate_reexposure
    from causalmem.presentation.compare_estimators import EstimatorComparison, compare_estimators
    from causalmem.presentation.tables import Table, etable
    from causalmem.results.aggte import AggteResult
    from causalmem.results.attgt import AttGtResult
    from causalmem.results.bayes import BayesDidResult, BayesSensitivityResult
    from causalmem.results.diagnostics import BaconDecomposition, PretrendsPower, TwfeWeights
    from causalmem.results.imputation import ImputationResult
    from causalmem.results.reexposure import ReexposureResult
    from causalmem.results.sensitivity import SensitivityResult
    from causalmem.results.twfe import TwfeResult
    from causalmem.workflows.estimator_validation import (
        EstimatorValidation,
        validate_estimators,
        validation_section,
    )
    from causalmem.workflows.family import (
        FamilyConfig,
        analyse_family,
        build_family,
        fit_family,
        load_family,
    )
    from causalmem.workflows.report import build_report

__all__ = [
    "bayes_sensitivity",
    "BayesSensitivityResult",
    "reexposure_att",
    "simulate_reexposure",
    "ReexposureResult",
    "att_gt_stream",
    "att_gt_ray",
    "pretrends_power",
    "slope_for_power",
    "bacon_decomposition",
    "twfe_weights",
    "PretrendsPower",
    "BaconDecomposition",
    "TwfeWeights",
    "honest_did",
    "breakdown_value",
    "SensitivityResult",
    "att_gt_rc",
    "did2s",
    "did_imputation",
    "ImputationResult",
    "compare_estimators",
    "EstimatorComparison",
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
    "EstimatorValidation",
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
    "validate_estimators",
    "validate_long",
    "validation_section",
    "write_panel",
]

_WHERE = {
    "bayes_sensitivity": "causalmem.estimators.bayes",
    "BayesSensitivityResult": "causalmem.results.bayes",
    "reexposure_att": "causalmem.estimators.reexposure",
    "simulate_reexposure": "causalmem.panel.simulate_reexposure",
    "ReexposureResult": "causalmem.results.reexposure",
    "att_gt_stream": "causalmem.estimators.streaming",
    "att_gt_ray": "causalmem.estimators.ray_engine",
    "pretrends_power": "causalmem.analysis.pretrends",
    "slope_for_power": "causalmem.analysis.pretrends",
    "bacon_decomposition": "causalmem.estimators.diagnostics",
    "twfe_weights": "causalmem.estimators.diagnostics",
    "PretrendsPower": "causalmem.results.diagnostics",
    "BaconDecomposition": "causalmem.results.diagnostics",
    "TwfeWeights": "causalmem.results.diagnostics",
    "honest_did": "causalmem.analysis.sensitivity",
    "breakdown_value": "causalmem.analysis.sensitivity",
    "SensitivityResult": "causalmem.results.sensitivity",
    "att_gt_rc": "causalmem.estimators.att_gt_rc",
    "did2s": "causalmem.estimators.imputation",
    "did_imputation": "causalmem.estimators.imputation",
    "ImputationResult": "causalmem.results.imputation",
    "compare_estimators": "causalmem.presentation.compare_estimators",
    "EstimatorComparison": "causalmem.presentation.compare_estimators",
    "ProfileComparison": "causalmem.analysis.compare",
    "compare_profiles": "causalmem.analysis.compare",
    "plan_sample_size": "causalmem.analysis.power",
    "ProfilePrediction": "causalmem.analysis.predict",
    "predict_profile": "causalmem.analysis.predict",
    "MemorisationProfile": "causalmem.analysis.profile",
    "aggte": "causalmem.estimators.aggte",
    "att_gt": "causalmem.estimators.att_gt",
    "bayes_did": "causalmem.estimators.bayes",
    "event_study": "causalmem.estimators.event_study",
    "twfe": "causalmem.estimators.twfe",
    "read_panel": "causalmem.panel.io",
    "write_panel": "causalmem.panel.io",
    "Panel": "causalmem.panel.panel",
    "PanelSchema": "causalmem.panel.schema",
    "SimulatedPanel": "causalmem.panel.simulate",
    "simulate_panel": "causalmem.panel.simulate",
    "validate_long": "causalmem.panel.checks",
    "build_report": "causalmem.workflows.report",
    "Table": "causalmem.presentation.tables",
    "etable": "causalmem.presentation.tables",
    "AggteResult": "causalmem.results.aggte",
    "AttGtResult": "causalmem.results.attgt",
    "BayesDidResult": "causalmem.results.bayes",
    "TwfeResult": "causalmem.results.twfe",
    "FamilyConfig": "causalmem.workflows.family",
    "analyse_family": "causalmem.workflows.family",
    "build_family": "causalmem.workflows.family",
    "fit_family": "causalmem.workflows.family",
    "load_family": "causalmem.workflows.family",
    "EstimatorValidation": "causalmem.workflows.estimator_validation",
    "validate_estimators": "causalmem.workflows.estimator_validation",
    "validation_section": "causalmem.workflows.estimator_validation",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)

__version__ = "0.1.0"
