"""One-call analysis of a family: fit, correlate both variants, predict the largest, conclude."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from causalmem.results.base import provenance
from causalmem.workflows.family.build import _MANIFEST, Family, load_family
from causalmem.workflows.family.findings import family_findings, findings_markdown
from causalmem.workflows.family.fit import FamilyFit, fit_family
from lmecon.result import ResultMixin, frozen_mapping

__all__ = ["AnalysisConfig", "FamilyAnalysis", "analyse_family"]


@dataclass(frozen=True, eq=False)
class FamilyAnalysis(ResultMixin):
    """Everything the family analyses report: fit, both correlation variants, prediction, findings.

    ``comparisons`` maps ``"all"`` (every non-reference cell: the reference repository's Fig. 6)
    and ``"post_first_epoch"`` (``c >= g`` and ``g, c <= T``) to a
    :class:`~causalmem.analysis.compare.ProfileComparison`; ``prediction`` predicts the largest
    model from the smaller ones (None with fewer than two models). ``spec`` records the call's
    settings (a read-only mapping), ``provenance`` the library versions and creation time.
    """

    fit: FamilyFit
    comparisons: Mapping[str, Any]
    prediction: Any
    findings: dict[str, Any] | None
    epoch_end: float
    spec: Mapping[str, Any] = field(default_factory=dict, repr=False)
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", frozen_mapping(dict(self.spec)))

    def tidy(self) -> pd.DataFrame:
        """Return :meth:`correlations`: both correlation variants, one row per model pair."""
        return self.correlations()

    def glance(self) -> pd.DataFrame:
        """One row: outcome, models, T and whether each of findings (i)-(iii) holds."""
        f = self.findings or {}
        row: dict[str, Any] = {
            "outcome": self.fit.outcome,
            "n_models": len(self.fit.family.models),
            "epoch_end": self.epoch_end,
        }
        for key in ("finding_i", "finding_ii", "finding_iii"):
            row[f"{key}_holds"] = f[key]["holds"] if key in f else None
        return pd.DataFrame([row])

    def summary(self) -> str:
        """Return the findings as Markdown (:func:`findings_markdown`), or a line without them."""
        if self.findings is not None:
            return findings_markdown(self.findings)
        names = ", ".join(self.fit.family.names)
        return f"Family analysis of {self.fit.outcome} over {names} (T = {self.epoch_end:g})."

    def correlations(self) -> pd.DataFrame:
        """Both correlation variants in one tidy frame (``cells`` tells them apart)."""
        if not self.comparisons:
            return pd.DataFrame()
        out = pd.concat([c.tidy() for c in self.comparisons.values()], ignore_index=True)
        out["reproduces_paper_fig6"] = out["cells"] == "all"
        return out


def _compare_and_predict(
    fit: FamilyFit, t_end: float, *, biters: int, alp: float, seed: int, holdout: str
) -> tuple[dict[str, Any], Any]:
    """Both correlation variants and the prediction of the largest model from the others."""
    from causalmem.analysis.compare import compare_profiles
    from causalmem.analysis.predict import predict_profile

    names = fit.family.names
    comps: dict[str, Any] = {}
    for cells in ("all", "post_first_epoch"):
        comps[cells] = compare_profiles(
            fit.results,
            cells=cells,  # type: ignore[arg-type]
            epoch_end=t_end,
            biters=biters,
            alp=alp,
            seed=seed,
        )
    pred = predict_profile(
        comps["post_first_epoch"],
        names[-1],
        list(names[:-1]),
        holdout=holdout,  # type: ignore[arg-type]
        sign=fit.sign,
        alp=alp,
    )
    return comps, pred


def analyse_family(
    family: Family,
    outcome: str,
    *,
    biters: int = 1000,
    alp: float = 0.05,
    seed: int = 1234,
    holdout: str = "alternate",
    epoch_end: float | None = None,
    findings: bool = True,
) -> FamilyAnalysis:
    """Fit every model, correlate the profiles (both variants), predict the largest, conclude.

    Parameters
    ----------
    family
        Models on shared instances, smallest first.
    outcome
        Outcome column.
    biters, alp, seed
        Bootstrap settings (per model and joint).
    holdout
        Cohort split of the prediction.
    epoch_end
        T for the post-first-epoch cells (default: the smallest of the models' epoch ends).
    findings
        Also evaluate findings (i)-(iii) (needs at least two models).

    Returns
    -------
    FamilyAnalysis
    """
    fit = fit_family(family, outcome, biters=biters, alp=alp, seed=seed)
    t_end = float(epoch_end if epoch_end is not None else min(m.epoch_end for m in family.models))
    comps: dict[str, Any] = {}
    pred = None
    found = None
    if len(family.models) >= 2:
        comps, pred = _compare_and_predict(
            fit, t_end, biters=biters, alp=alp, seed=seed, holdout=holdout
        )
        if findings:
            found = family_findings(fit, comps, pred)
            found["epoch_end"] = t_end
    spec = {
        "outcome": outcome,
        "biters": biters,
        "alp": alp,
        "seed": seed,
        "holdout": holdout,
        "epoch_end": epoch_end,
        "findings": findings,
        "models": family.names,
    }
    return FamilyAnalysis(
        fit=fit,
        comparisons=comps,
        prediction=pred,
        findings=found,
        epoch_end=t_end,
        spec=spec,
        provenance=provenance(**spec),
    )


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of the family analyses (``analyses/03_*`` … ``07_*``): the ``[analysis]`` table.

    Attributes
    ----------
    family
        Folder written by :func:`~causalmem.workflows.family.build_family`
        (``analyses/02_family``).
    outcome
        Outcome (default: the one recorded in ``family.json``).
    metrics
        Outcomes of the appendix profiles (the scoring stage writes ``logprob``, ``sup_seq``,
        ``acc_seq``, ``entr_seq``, ``avg_rank``).
    biters, alp, seed
        Bootstrap settings.
    epoch_end
        T (default: the family's recorded epoch ends).
    holdout
        Cohort split of the prediction (``alternate`` or ``last``).
    """

    family: str = "out/02_family"
    outcome: str | None = None
    metrics: tuple[str, ...] = ("sup_seq", "acc_seq", "entr_seq", "avg_rank")
    biters: int = 1000
    alp: float = 0.05
    seed: int = 1234
    epoch_end: float | None = None
    holdout: str = "alternate"

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> AnalysisConfig:
        """Read the ``[analysis]`` table; unknown keys are an error."""
        data = dict(tomllib.loads(Path(path).read_text()).get("analysis", {}))
        known = {f.name for f in fields(cls)}
        bad = sorted(set(data) - known)
        if bad:
            raise ValueError(f"{path}: unknown [analysis] keys {bad}; known: {sorted(known)}.")
        if "metrics" in data:
            data["metrics"] = tuple(data["metrics"])
        return cls(**data)

    def run(self, family_dir: str | os.PathLike[str] | None = None) -> FamilyAnalysis:
        """Load the family and analyse its headline outcome with these settings."""
        d = Path(family_dir or self.family)
        fam = load_family(d)
        recorded = json.loads((d / _MANIFEST).read_text()).get("outcome")
        return analyse_family(
            fam,
            self.outcome or recorded or "logprob",
            biters=self.biters,
            alp=self.alp,
            seed=self.seed,
            holdout=self.holdout,
            epoch_end=self.epoch_end,
        )
