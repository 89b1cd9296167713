"""Applications built on the library: the demos, the family study and the validation study.

Only workflows, ``analyses/`` and the CLI choose paths and write files.
"""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "FamilyConfig",
    "SimulatedDemoConfig",
    "EstimatorValidation",
    "build_report",
    "load_panels",
    "analyse_family",
    "build_family",
    "fit_family",
    "load_family",
    "run_demo",
    "run_lab_demo",
    "validate_estimators",
    "validation_section",
]

_WHERE = {
    "run_lab_demo": "lab_demo",
    "SimulatedDemoConfig": "simulated_demo",
    "run_demo": "simulated_demo",
    "FamilyConfig": "family",
    "build_family": "family",
    "load_family": "family",
    "fit_family": "family",
    "analyse_family": "family",
    "EstimatorValidation": "estimator_validation",
    "build_report": "report",
    "load_panels": "report",
    "validate_estimators": "estimator_validation",
    "validation_section": "estimator_validation",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
