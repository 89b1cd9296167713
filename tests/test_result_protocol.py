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

A second parametrised test, over the same :data:`FACTORIES`, checks ``plot()``: an Altair chart
whose ``to_dict()`` has the encodings of :data:`PLOT_ENCODINGS` and that renders to PNG and SVG
with vl-convert (results without a chart are listed in :data:`NO_PLOT`); :data:`PLOT_KINDS`
covers the other kinds, and ``BayesDidResult.plot`` is checked on stand-in summaries.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from causalmem._types import AggType
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


def _finetune_parts(tmp: Path) -> Any:
    import pandas as pd

    from causalmem.lab.finetune import FinetuneConfig, FinetunedRun
    from causalmem.workflows.finetune_memorisation import MethodProfile

    ft = FinetuneConfig(method="full", seq_len=16, batch_size=4, steps=4, checkpoint_every=2)
    hist = pd.DataFrame({"step": [1, 2, 3, 4], "loss": [3.0, 2.5, 2.2, 2.0]})
    run = FinetunedRun(tmp / "run", ft, tmp / "base", (0, 2, 4), hist, n_trainable=100)
    cell = {"estimate": [0.5, 0.3], "std_error": [0.1, 0.1], "conf_low": [0.3, 0.1],
            "conf_high": [0.7, 0.5]}  # fmt: skip
    inst = pd.DataFrame({"group": [2.0, 4.0], "time": [2.0, 4.0], **cell,
                         "lr_mean": [1e-3, 5e-4], "lr_end": [9e-4, 1e-4]})  # fmt: skip
    pers = pd.DataFrame({"event_time": [0.0, 2.0], **cell})
    resid = pd.DataFrame({"group": [2.0, 4.0], "time": [4.0, 4.0], **cell})
    sched = pd.DataFrame({"step": [1, 2, 3, 4], "lr": [1e-3, 1e-3, 5e-4, 1e-4]})
    return MethodProfile("full", run, None, None, None, inst, pers, resid, sched, {})  # type: ignore[arg-type]


def _finetune_memorisation(tmp: Path) -> Any:
    from causalmem.workflows.finetune_memorisation import (
        FinetuneMemorisation,
        FinetuneMemorisationConfig,
    )

    m = _finetune_parts(tmp)
    cfg = FinetuneMemorisationConfig(methods={"full": m.run.config}, n_heldout=4, n_validation=2)
    return FinetuneMemorisation(tmp, cfg, {"n_train": 16, "n_validation": 4}, {"full": m})


def _finetune_ground_truth(tmp: Path) -> Any:
    import pandas as pd

    from causalmem.workflows.finetune_memorisation import FinetuneGroundTruth

    m = _finetune_parts(tmp)
    truth = pd.DataFrame({"group": [2.0, 2.0, 4.0, 4.0], "time": [2.0, 4.0, 2.0, 4.0],
                          "n": 2, "truth_raw": [0.4, 0.2, 0.0, 0.35], "control_shift": 0.0,
                          "truth_adjusted": [0.4, 0.2, 0.0, 0.35],
                          "estimate": [0.5, 0.3, 0.05, 0.3], "conf_low": [0.3, 0.1, -0.1, 0.1],
                          "conf_high": [0.7, 0.5, 0.2, 0.5],
                          "post": [True, True, False, True]})  # fmt: skip
    return FinetuneGroundTruth("full", m.run, truth)


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


def _sensitivity() -> Any:
    import numpy as np

    from causalmem.analysis.sensitivity import honest_did

    return honest_did(
        betahat=np.array([0.01, -0.02, 0.0, 0.3, 0.35]),
        sigma=np.eye(5) * 1e-3,
        num_pre=3,
        m_grid=[0.0, 0.05, 0.1],
    )


def _imputation() -> Any:
    from causalmem.estimators.imputation import did_imputation

    return did_imputation(_frame(), "y", "step", "unit", "cohort", horizon=True, pretrends=True)


def _two_stage() -> Any:
    from causalmem.estimators.imputation import did2s

    return did2s(_frame(), "y", "step", "unit", "cohort", horizon=True)


def _att_gt_rc() -> Any:
    from causalmem.estimators.att_gt_rc import att_gt_rc

    return att_gt_rc(_frame(), "y", "step", "cohort", biters=50, seed=0)


def _compare_estimators() -> Any:
    from causalmem.presentation.compare_estimators import compare_estimators

    return compare_estimators(_frame(), "y", "step", "unit", "cohort")


def _pretrends() -> Any:
    import numpy as np

    from causalmem.analysis.pretrends import pretrends_power

    return pretrends_power(
        np.array([0.02, -0.01, 0.0, 0.1, 0.12]),
        np.diag([0.01, 0.008, 0.006, 0.005, 0.007]),
        event_time=np.array([-3.0, -2.0, 0.0, 1.0, 2.0]),
        slope=0.05,
    )


def _bacon() -> Any:
    from causalmem.estimators.diagnostics import bacon_decomposition

    return bacon_decomposition(_frame(), "y", "step", "unit", "cohort")


def _twfe_weights() -> Any:
    from causalmem.estimators.diagnostics import twfe_weights

    return twfe_weights(_frame(), "y", "step", "unit", "cohort")


@functools.cache
def _reexposure() -> Any:
    from causalmem.estimators.reexposure import reexposure_att
    from causalmem.panel.simulate_reexposure import simulate_reexposure

    return reexposure_att(simulate_reexposure(n_per_cohort=30, n_never=5).frame, "y", biters=99)


def _reexposure_aggregate() -> Any:
    return _reexposure().aggregate("event")


def _bayes_sensitivity() -> Any:
    """Built from stand-in summaries (a fit costs a sampler compilation; fits are tested in
    tests/causalmem/estimators/test_bayes_sensitivity.py)."""
    from causalmem.results.bayes import BayesSensitivityResult, BayesSensitivitySpec

    spec = BayesSensitivitySpec(
        scales=(0.0, 0.1),
        targets=("instantaneous",),
        alp=0.05,
        include_pre=True,
        pooling="rw",
        cohort_decay=None,
        draws=10,
        tune=10,
        chains=2,
        target_accept=0.9,
        seed=1,
        sampler="pymc",
        shrinkage=None,
        yname="y",
    )
    diag = {"max_r_hat": [1.0, 1.01], "min_ess_bulk": [400.0, 380.0], "divergences": [0, 0]}
    table = pd.DataFrame(
        {
            "target": ["instantaneous"] * 2,
            "scale": [0.0, 0.1],
            "m_equivalent": [0.0, 0.196],
            "event_time": [0.0, 0.0],
            "mean": [-2.0, -2.1],
            "sd": [0.1, 0.2],
            "lower": [-2.2, -2.5],
            "upper": [-1.8, -1.7],
            "alp": [0.05, 0.05],
            **diag,
        }
    )
    fits = pd.DataFrame({"scale": [0.0, 0.1], **diag, "sample_s": [1.0, 1.2]})
    return BayesSensitivityResult(spec=spec, table=table, fits=fits)


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
    ("AttGtResult-rc", _att_gt_rc),
    ("ImputationResult-imputation", _imputation),
    ("ImputationResult-two_stage", _two_stage),
    ("BaconDecomposition", _bacon),
    ("ReexposureResult", _reexposure),
    ("ReexposureAggregate", _reexposure_aggregate),
    ("TwfeWeights", _twfe_weights),
    # causalmem analysis
    ("MemorisationProfile", _profile),
    ("ProfileComparison", _comparison),
    ("ProfilePrediction", _prediction),
    ("VarianceModel", _variance),
    ("SensitivityResult", _sensitivity),
    ("PretrendsPower", _pretrends),
    ("BayesSensitivityResult", _bayes_sensitivity),
    # causalmem presentation
    ("EstimatorComparison", _compare_estimators),
    # causalmem lab and workflows
    ("GroundTruth", _ground_truth),
    ("EstimatorValidation", _estimator_validation),
    ("MethodProfile", _finetune_parts),
    ("FinetuneMemorisation", _finetune_memorisation),
    ("FinetuneGroundTruth", _finetune_ground_truth),
    ("FamilyAnalysis", _family_analysis),
    # steer
    *[(name, _steer(name)) for name in STEER_RESULTS],
]


@pytest.mark.parametrize("factory", [f for _, f in FACTORIES], ids=[n for n, _ in FACTORIES])
def test_result_honours_the_protocol(factory: Callable[..., Any], tmp_path: Path) -> None:
    wants_folder = "tmp" in inspect.signature(factory).parameters
    check_result(factory(tmp_path) if wants_folder else factory())


# ----------------------------------------------------------------------------- plots
def _aggte_of(kind: AggType) -> Callable[[], Any]:
    def make() -> Any:
        import causalmem as cm

        return cm.aggte(_att_gt(), kind)

    return make


def _encodings(spec: Any) -> set[tuple[str, str]]:
    """Every ``(channel, field)`` pair of a Vega-Lite spec (all layers, facets and panels)."""
    found: set[tuple[str, str]] = set()
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key in ("encoding", "facet") and isinstance(value, dict):
                if "field" in value:  # a facet's own field
                    found.add((key, value["field"]))
                for channel, enc in value.items():
                    if isinstance(enc, dict) and "field" in enc:
                        found.add((channel, enc["field"]))
            found |= _encodings(value)
    elif isinstance(spec, list):
        for item in spec:
            found |= _encodings(item)
    return found


_ESTIMATE = {("y", "estimate"), ("y", "conf_low"), ("y2", "conf_high")}
_PATH = {("x", "e"), *_ESTIMATE}
# (channel, field) pairs each default ``plot()`` must encode; a result type not named here (or
# in NO_PLOT) fails the test, so a new plot gets its expectations written down.
PLOT_ENCODINGS: dict[str, set[tuple[str, str]]] = {
    "AttGtResult": {("facet", "group"), ("x", "time"), ("color", "phase"), *_ESTIMATE},
    "AggteResult": _PATH,
    "TwfeResult": {("y", "term"), ("x", "estimate"), ("x", "conf_low"), ("x2", "conf_high")},
    "EventStudyResult-twfe": _PATH,
    "EventStudyResult-sunab": _PATH,
    "EventStudyResult-diff": _PATH,
    "AttGtResult-rc": {("facet", "group"), ("x", "time"), ("color", "phase"), *_ESTIMATE},
    "ImputationResult-imputation": _PATH,
    "ImputationResult-two_stage": _PATH,
    "MethodProfile": {
        ("x", "group"),
        ("x", "event_time"),
        ("y", "lr"),
        ("color", "method"),
        *_ESTIMATE,
    },
    "FinetuneMemorisation": {("x", "group"), ("x", "event_time"), ("color", "method"), *_ESTIMATE},
    "FinetuneGroundTruth": {("x", "truth_adjusted"), ("y", "estimate"), ("y2", "conf_high")},
    "BayesSensitivityResult": {("x", "M"), ("y", "mean"), ("y", "lower"), ("y2", "upper")},
    "ReexposureResult": _PATH,
    "ReexposureAggregate": _PATH,
    "SensitivityResult": {("x", "x"), ("y", "lower"), ("y2", "upper"), ("color", "kind")},
    "PretrendsPower": {
        ("x", "event_time"),
        ("y", "value"),
        ("color", "series"),
        ("y", "conf_low"),
        ("y2", "conf_high"),
    },
    "BaconDecomposition": {("x", "weight"), ("y", "estimate"), ("color", "type")},
    "TwfeWeights": {("x", "time"), ("y", "cohort"), ("color", "weight")},
    "EstimatorComparison": {
        ("x", "x"),
        ("y", "conf_low"),
        ("y2", "conf_high"),
        ("y", "estimate"),
        ("color", "label"),
        ("shape", "label"),
    },
    "MemorisationProfile": {("x", "time"), ("y", "group"), ("color", "estimate")},
    "ProfileComparison": {("x", "model_a"), ("y", "model_b"), ("color", "rho")},
    "ProfilePrediction": {("x", "predicted"), ("y", "observed"), ("color", "method")},
    "FactorAnalysis": {("x", "factor"), ("y", "explained"), ("color", "slot_name")},
    "Highlight": {("x", "label"), ("y", "delta"), ("color", "sign")},
    "Evaluation": {("facet", "metric_label"), ("x", "value"), *_ESTIMATE},
    "TransferFidelity": {("x", "logit_corr")},
    "ScorerCard": {("x", "scorer"), ("y", "auroc"), ("y", "lo"), ("y2", "hi"), ("color", "scorer")},
    "DetoxEvaluation": {("x", "ppl"), ("y", "tox"), ("color", "method"), ("column", "prompt_set")},
}
NO_PLOT = {
    "VarianceModel",
    "GroundTruth",
    "EstimatorValidation",
    "FamilyAnalysis",
    "SteerFit",
    "EmbeddingMap",
    "ContextMap",
}
# Other kinds of chart of the same results: (id, factory, plot options, expected encodings).
PLOT_KINDS: list[tuple[str, Callable[..., Any], dict[str, Any], set[tuple[str, str]]]] = [
    ("AttGtResult-heatmap", _att_gt, {"kind": "heatmap"}, {("x", "time"), ("y", "group")}),
    ("AggteResult-group", _aggte_of("group"), {}, {("x", "group"), *_ESTIMATE}),
    ("PretrendsPower-power", _pretrends, {"kind": "power"}, {("x", "slope"), ("y", "power")}),
    ("AggteResult-calendar", _aggte_of("calendar"), {}, {("x", "time"), *_ESTIMATE}),
    ("AggteResult-simple", _aggte_of("simple"), {}, {("x", "term"), *_ESTIMATE}),
    ("MemorisationProfile-path", _profile, {"kind": "path"}, _PATH),
    ("MemorisationProfile-persistent", _profile, {"kind": "persistent"}, {("x", "event_time")}),
    ("MemorisationProfile-residual", _profile, {"kind": "residual"}, {("x", "group")}),
    (
        "FactorAnalysis-loadings",
        _steer("FactorAnalysis"),
        {"kind": "loadings"},
        {("x", "loading"), ("y", "label"), ("facet", "factor")},
    ),  # fmt: skip
]


def _check_chart(chart: Any, expected: set[tuple[str, str]], name: str) -> None:
    """Assert the chart is an Altair chart with ``expected`` encodings that renders offline."""
    import altair as alt
    import vl_convert as vlc

    from lmecon.charts import chart_svg

    assert isinstance(chart, alt.TopLevelMixin), f"{name}.plot() is not an Altair chart"
    spec = chart.to_dict()
    missing = expected - _encodings(spec)
    assert not missing, f"{name}.plot() lacks encodings {sorted(missing)}"
    png = vlc.vegalite_to_png(spec, scale=1, allowed_base_urls=[])
    assert png[:4] == b"\x89PNG", f"{name}.plot() did not render to PNG"
    assert chart_svg(chart).lstrip().startswith("<svg"), f"{name}.plot() did not render to SVG"


@pytest.mark.parametrize("factory", [f for _, f in FACTORIES], ids=[n for n, _ in FACTORIES])
def test_result_plots_an_altair_chart(
    factory: Callable[..., Any], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip("altair")
    pytest.importorskip("vl_convert")
    name = request.node.callspec.id
    result = factory(tmp_path) if "tmp" in inspect.signature(factory).parameters else factory()
    if not hasattr(result, "plot"):
        assert name in NO_PLOT, f"{name} has no plot(): add one, or list it in NO_PLOT"
        return
    assert name in PLOT_ENCODINGS, f"{name}.plot() exists: write its encodings in PLOT_ENCODINGS"
    _check_chart(result.plot(), PLOT_ENCODINGS[name], name)


@pytest.mark.parametrize(
    ("factory", "options", "expected"),
    [case[1:] for case in PLOT_KINDS],
    ids=[case[0] for case in PLOT_KINDS],
)
def test_result_plots_other_kinds(
    factory: Callable[[], Any], options: dict[str, Any], expected: set[tuple[str, str]]
) -> None:
    pytest.importorskip("altair")
    pytest.importorskip("vl_convert")
    _check_chart(factory().plot(**options), expected, type(factory()).__name__)


def test_bayes_result_plots_its_posterior() -> None:
    """``BayesDidResult.plot`` on stand-in summaries (a real fit is in tests of the sampler)."""
    pytest.importorskip("altair")
    pytest.importorskip("vl_convert")
    from types import SimpleNamespace

    from causalmem.results.bayes import BayesDidResult

    path = pd.DataFrame(
        {
            "event_time": [-1.0, 0.0, 1.0, 2.0],
            "estimate": [0.0, 1.0, 0.6, 0.3],
            "conf_low": [-0.2, 0.7, 0.3, -0.1],
            "conf_high": [0.2, 1.3, 0.9, 0.7],
        }
    )
    cells = path.assign(group=3.0, time=path["event_time"] + 3.0)
    fake = SimpleNamespace(
        spec=SimpleNamespace(yname="y"),
        profile=lambda hdi_prob: path,
        tidy=lambda hdi_prob: cells,
    )
    chart = BayesDidResult.plot(fake, hdi_prob=0.8)  # type: ignore[arg-type]
    _check_chart(chart, _PATH, "BayesDidResult")
    assert "80% HDI" in chart.to_dict()["title"]
    _check_chart(BayesDidResult.plot(fake, kind="heatmap"), {("x", "time")}, "BayesDidResult")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        BayesDidResult.plot(fake, kind="nope")  # type: ignore[arg-type]


def test_walkthrough_notebook_is_valid() -> None:
    """``docs/walkthrough.ipynb`` is nbformat 4 JSON whose code cells compile and call plot()."""
    import ast
    import json

    nb = json.loads((Path(__file__).parents[1] / "docs" / "walkthrough.ipynb").read_text("utf-8"))
    assert nb["nbformat"] == 4 and nb["cells"]
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in code:
        ast.parse(cell)
    text = "\n".join(code)
    assert all(step in text for step in ("simulate_panel", "att_gt", "aggte", "etable", ".plot("))
