"""Every result type honours the Result protocol (:func:`lmecon.result.check_result`).

One parametrised test over small fitted instances: frozen dataclass, frozen ``spec``,
``provenance`` mapping, snake_case ``tidy()``, one-row ``glance()``, and ``summary()``,
``to_latex()``, ``to_markdown()`` and ``_repr_html_()`` returning text. The panels are tiny
simulations, so the whole file runs in seconds.

Both packages' results are here: causalmem's estimators, analysis and workflow results, the
lab's ground truth, and steer's results (built with the tiny models of ``tests/steer``). To add
a result type, append a ``(name, factory)`` pair to :data:`FACTORIES`.

``BayesDidResult`` is checked with the same :func:`check_result` in
``tests/causalmem/estimators/test_bayes.py`` on that file's shared short fit: a ``bayes_did``
fit costs about a minute of sampler compilation, which that file already pays once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lmecon.result import check_result
from tests.steer.conftest import RESULT_TYPES as STEER_RESULTS

# ----------------------------------------------------------------------------- shared fits


@functools.cache
def _frame() -> pd.DataFrame:
    from causalmem.panel.simulate import simulate_panel

    sim = simulate_panel(
        cohorts=(3, 4, 5, 6), units_per_cohort=8, n_never=12, steps=range(1, 8), seed=1
    )
    f = sim.frame
    g = f["cohort"].astype("Float64").astype(float).fillna(float("inf"))
    # A second "model" scoring the same instances (for compare / predict).
    return f.assign(treated=(f["step"] >= g).astype(float), y2=0.7 * f["y"] + 0.1 * f["step"])


@functools.cache
def _att_gt(yname: str = "y") -> Any:
    import causalmem as cm

    return cm.att_gt(_frame(), yname, "step", "unit", "cohort", biters=50, seed=0)


def _aggte() -> Any:
    import causalmem as cm

    return cm.aggte(_att_gt(), "dynamic")


def _twfe() -> Any:
    import causalmem as cm

    return cm.twfe("y ~ treated | unit + step", _frame())


def _event_study(estimator: Any) -> Callable[[], Any]:
    def make() -> Any:
        import causalmem as cm

        return cm.event_study(_frame(), "y", "step", "unit", "cohort", estimator=estimator)

    return make


def _profile() -> Any:
    from causalmem.analysis.profile import MemorisationProfile

    return MemorisationProfile.from_result(_att_gt(), metric="acc", sign=1)


@functools.cache
def _comparison() -> Any:
    from causalmem.analysis.compare import compare_profiles

    return compare_profiles({"a": _att_gt("y"), "b": _att_gt("y2")}, biters=50, seed=0)


def _prediction() -> Any:
    from causalmem.analysis.predict import predict_profile

    return predict_profile(_comparison(), "b", ["a"])


def _variance() -> Any:
    from causalmem.analysis.power import fit_variance
    from causalmem.panel.simulate import simulate_panel

    sim = simulate_panel(cohorts=(2, 3), units_per_cohort=10, n_never=10, steps=range(1, 5), seed=2)
    return fit_variance(sim.to_panel(), "y")


def _ground_truth() -> Any:
    from tests.causalmem.builders import fake_truth

    return fake_truth(1, n=10)


def _estimator_validation() -> Any:
    from causalmem.workflows.estimator_validation import validate_estimators
    from tests.causalmem.builders import fake_truth

    return validate_estimators([fake_truth(1, n=10)], estimators=["cs_never", "twfe"])


def _family_analysis(tmp: Path) -> Any:
    from causalmem.workflows.family import analyse_family, build_family, load_family
    from tests.causalmem.builders import family_frame, write_family_files

    frame = family_frame(n_per=6, n_never=20, seed=3)
    toml = write_family_files(tmp, frame, biters=49)
    from causalmem.workflows.family import FamilyConfig

    build_family(FamilyConfig.from_toml(toml), tmp / "fam")
    return analyse_family(load_family(tmp / "fam"), "logprob", biters=49, seed=0)


def _steer(name: str) -> Callable[[], Any]:
    def make() -> Any:
        from tests.steer import _tiny
        from tests.steer.conftest import tiny_result

        return tiny_result(name, _tiny.tokenizer())

    return make


# ----------------------------------------------------------------------------- the list
FACTORIES: list[tuple[str, Callable[..., Any]]] = [
    # causalmem estimators and results
    ("AttGtResult", _att_gt),
    ("AggteResult", _aggte),
    ("TwfeResult", _twfe),
    ("EventStudyResult-twfe", _event_study("twfe")),
    ("EventStudyResult-sunab", _event_study("sunab")),
    ("EventStudyResult-diff", _event_study("diff")),
    # causalmem analysis
    ("MemorisationProfile", _profile),
    ("ProfileComparison", _comparison),
    ("ProfilePrediction", _prediction),
    ("VarianceModel", _variance),
    # causalmem lab and workflows
    ("GroundTruth", _ground_truth),
    ("EstimatorValidation", _estimator_validation),
    ("FamilyAnalysis", _family_analysis),
    # steer
    *[(name, _steer(name)) for name in STEER_RESULTS],
]


@pytest.mark.parametrize("factory", [f for _, f in FACTORIES], ids=[n for n, _ in FACTORIES])
def test_result_honours_the_protocol(factory: Callable[..., Any], tmp_path: Path) -> None:
    wants_folder = "tmp" in inspect.signature(factory).parameters
    check_result(factory(tmp_path) if wants_folder else factory())
