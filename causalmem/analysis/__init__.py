"""Profile-level analysis: memorisation profiles, comparisons across models, prediction, power.

Reads results (never fits the panel-level estimators itself except through ``aggte`` for a
profile's path); presentation and workflows sit above it.
"""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "MemorisationProfile",
    "ProfileComparison",
    "ProfilePrediction",
    "breakdown_value",
    "check_power",
    "compare_profiles",
    "fit_variance",
    "honest_did",
    "plan_sample_size",
    "power",
    "predict_profile",
    "pretrends_power",
    "required_n",
    "slope_for_power",
    "to_memorisation",
]

_WHERE = {
    "MemorisationProfile": "profile",
    "to_memorisation": "profile",
    "ProfileComparison": "compare",
    "compare_profiles": "compare",
    "ProfilePrediction": "predict",
    "predict_profile": "predict",
    "plan_sample_size": "power",
    "required_n": "power",
    "power": "power",
    "check_power": "power",
    "fit_variance": "power",
    "honest_did": "sensitivity",
    "breakdown_value": "sensitivity",
    "pretrends_power": "pretrends",
    "slope_for_power": "pretrends",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
