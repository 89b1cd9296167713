"""A family of models scored on the same instances: train (or load), fit, compare, conclude.

Lesci et al. (2024) compare memorisation profiles across the Pythia suite (Figs 2-6). Here a
*family* is a set of models whose panels share units: either mini-Pythia sizes trained by the
lab (:func:`causalmem.workflows.lab_demo.run_lab_demo`) on the same corpus, tokenizer, recorded
data order and sampled instances, with only the shape and the peak learning rate changing; or
panels of real models given as files (parquet written by causalmem, or plain parquet / CSV with
named columns), each with its size, peak LR and epoch boundary.

Flow::

    FamilyConfig.from_toml(...)  ->  build_family(cfg, out_dir)  ->  family.json + models/<name>/
    load_family(out_dir)         ->  Family (panels, LR schedules, sizes)
    fit_family(family, outcome)  ->  FamilyFit (att_gt per model, profiles, tidy views)
    family_findings(...)         ->  the paper's findings (i)-(iii) with numbers, not forced

The lab members record their own LR schedules (pitfall 13: one schedule per size); file members
use Pythia's cosine schedule (1% warm-up, floor 0.1 x max, ``total_steps``) with their own max LR
(:func:`causalmem.panel.pythia.pythia_lr_schedule`).

Modules: ``config`` (members and settings), ``build`` (build / load a family), ``fit``
(:class:`FamilyFit`), ``findings`` (findings (i)-(iii) and their Markdown), ``analysis``
(:func:`analyse_family`, :class:`AnalysisConfig`).
"""

from __future__ import annotations

from causalmem.panel.pythia import PYTHIA_MAX_LR as PYTHIA_MAX_LR
from causalmem.panel.pythia import pythia_lr_schedule
from causalmem.workflows.family.analysis import AnalysisConfig, FamilyAnalysis, analyse_family
from causalmem.workflows.family.build import _MANIFEST as _MANIFEST
from causalmem.workflows.family.build import Family, ModelRun, build_family, load_family
from causalmem.workflows.family.build import Log as Log
from causalmem.workflows.family.build import _check_shared_units as _check_shared_units
from causalmem.workflows.family.build import _load as _load
from causalmem.workflows.family.build import _read_member_panel as _read_member_panel
from causalmem.workflows.family.config import FamilyConfig, FamilyMember
from causalmem.workflows.family.findings import family_findings, findings_markdown
from causalmem.workflows.family.fit import FamilyFit, fit_family
from causalmem.workflows.family.fit import _cohort_mean_lr as _cohort_mean_lr

__all__ = [
    "Family",
    "FamilyConfig",
    "FamilyFit",
    "FamilyMember",
    "ModelRun",
    "build_family",
    "AnalysisConfig",
    "FamilyAnalysis",
    "analyse_family",
    "family_findings",
    "findings_markdown",
    "fit_family",
    "load_family",
    "pythia_lr_schedule",
]
