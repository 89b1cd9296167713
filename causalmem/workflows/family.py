"""A family of models scored on the same instances: train (or load), fit, compare, conclude.

Lesci et al. (2024) compare memorisation profiles across the Pythia suite (Figs 2-6). Here a
*family* is a set of models whose panels share units: either mini-Pythia sizes trained by the
lab (:func:`causalmem.workflows.lab_demo.run_lab_demo`) on the same corpus, tokenizer, recorded data order
and sampled instances, with only the shape and the peak learning rate changing; or panels of
real models given as files (parquet written by causalmem, or plain parquet / CSV with named
columns), each with its size, peak LR and epoch boundary.

Flow::

    FamilyConfig.from_toml(...)  ->  build_family(cfg, out_dir)  ->  family.json + models/<name>/
    load_family(out_dir)         ->  Family (panels, LR schedules, sizes)
    fit_family(family, outcome)  ->  FamilyFit (att_gt per model, profiles, tidy views)
    family_findings(...)         ->  the paper's findings (i)-(iii) with numbers, not forced

The lab members record their own LR schedules (pitfall 13: one schedule per size); file members
use Pythia's cosine schedule (1% warm-up, floor 0.1 x max, ``total_steps``) with their own max LR.
"""

from __future__ import annotations

import json
import os
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causalmem.analysis.profile import MemorisationProfile, metric_sign
from causalmem.panel.panel import Panel
from causalmem.results.attgt import AttGtResult
from lmecon.atomic import atomic_write_parquet, atomic_write_text

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

Log = Callable[[str], None]

#: Pythia's peak learning rates by model size (pythia README; memorisation.md 1A.2).
PYTHIA_MAX_LR: Mapping[str, float] = {
    "70m": 1e-3,
    "160m": 6e-4,
    "410m": 3e-4,
    "1.4b": 2e-4,
    "2.8b": 1.6e-4,
    "6.9b": 1.2e-4,
    "12b": 1.2e-4,
}

_MANIFEST = "family.json"


def pythia_lr_schedule(
    max_lr: float,
    total_steps: int = 143_000,
    warmup_frac: float = 0.01,
    min_lr_ratio: float = 0.1,
    *,
    every: int | None = None,
) -> pd.DataFrame:
    """Pythia's learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_ratio``.

    Parameters
    ----------
    max_lr
        Peak learning rate of the model (e.g. :data:`PYTHIA_MAX_LR`).
    total_steps, warmup_frac, min_lr_ratio
        Pythia: 143,000 steps, 1% warm-up, floor at 0.1 x max (pitfall 13: the reference repo's
        overlay used 1e-3 for every size).
    every
        Step spacing of the returned grid (the last step is always included); default about
        1,430 points (every 100 steps for Pythia).

    Returns
    -------
    pandas.DataFrame
        ``step``, ``lr``.

    Examples
    --------
    >>> s = pythia_lr_schedule(1e-3, total_steps=1000, every=10)
    >>> float(s.lr.max()), round(float(s.lr.iloc[-1]), 6)
    (0.001, 0.0001)
    """
    if max_lr <= 0 or total_steps < 1:
        raise ValueError("need max_lr > 0 and total_steps >= 1.")
    every = max(total_steps // 1430, 1) if every is None else int(every)
    steps = np.unique(np.append(np.arange(every, total_steps + 1, every), total_steps))
    w = max(int(round(warmup_frac * total_steps)), 1)
    prog = np.clip((steps - w) / max(total_steps - w, 1), 0.0, 1.0)
    cos = max_lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + np.cos(np.pi * prog)))
    lr = np.where(steps < w, max_lr * steps / w, cos)
    return pd.DataFrame({"step": steps.astype(np.int64), "lr": lr})


def _cohort_mean_lr(schedule: pd.DataFrame, groups: np.ndarray, steps: np.ndarray) -> pd.DataFrame:
    """Mean LR over each macro-batch ``(c_{k-1}, c_k]`` of the checkpoint grid."""
    grid = np.unique(np.append(steps.astype(float), 0.0))
    s = schedule["step"].to_numpy(dtype=float)
    lr = schedule["lr"].to_numpy(dtype=float)
    rows = []
    for g in np.unique(groups):
        k = int(np.searchsorted(grid, g))
        lo = grid[k - 1] if k > 0 else 0.0
        sel = (s > lo) & (s <= g)
        if sel.any():
            val = float(lr[sel].mean())
        else:
            val = float(np.interp(g, s, lr)) if s.size else float("nan")
        rows.append({"group": float(g), "lr_mean": val})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class FamilyMember:
    """One model of the family: a lab size to train, or a panel file to read.

    Attributes
    ----------
    name
        Label used in tables and charts (unique).
    n_layer, d_model, n_head, lr
        Lab member: GPT-NeoX shape and peak learning rate (other settings from
        :attr:`FamilyConfig.lab`).
    panel
        File member: a causalmem panel parquet, or a plain parquet / CSV file with the columns
        ``unit``, ``step``, ``cohort`` (never-trained: empty / NaN / inf) and outcomes. A
        relative path is resolved against the TOML file's folder.
    unit, step, cohort
        Column names of a plain file.
    n_params
        Model size (parameters) for ordering and the findings; lab members compute it.
    max_lr, total_steps, warmup_frac, min_lr_ratio
        File member's LR schedule (Pythia cosine); ``max_lr`` defaults from the name when it
        contains a Pythia size (``70m`` ... ``12b``).
    epoch_end
        End of the first epoch T for this model (default: the family's).
    """

    name: str
    n_layer: int | None = None
    d_model: int | None = None
    n_head: int | None = None
    lr: float | None = None
    panel: str | None = None
    unit: str = "unit"
    step: str = "step"
    cohort: str = "cohort"
    n_params: float | None = None
    max_lr: float | None = None
    total_steps: int = 143_000
    warmup_frac: float = 0.01
    min_lr_ratio: float = 0.1
    epoch_end: float | None = None

    def __post_init__(self) -> None:
        lab = [self.n_layer, self.d_model, self.n_head]
        if self.panel is None and any(v is None for v in lab):
            raise ValueError(
                f"family member {self.name!r}: give either panel = 'file' or all of n_layer, "
                "d_model and n_head (a lab size)."
            )
        if self.panel is not None and any(v is not None for v in lab):
            raise ValueError(
                f"family member {self.name!r}: panel and a lab shape are exclusive; keep one."
            )

    @property
    def is_lab(self) -> bool:
        """Whether this member is trained by the lab."""
        return self.panel is None


@dataclass(frozen=True)
class FamilyConfig:
    """A family of models and the estimation settings shared by the analyses.

    Attributes
    ----------
    models
        The members (at least two; three or more for the paper's findings).
    lab
        Shared :class:`~causalmem.workflows.lab_demo.LabConfig` settings of the lab members (a
        mapping of its fields; the data order, seed and sampled instances are shared, so the
        units are the same across sizes).
    outcome
        Headline outcome (``logprob`` for the lab; ``sup_seq`` for the paper's panels).
    epoch_end
        End of the first epoch T (residual memorisation, post-first-epoch correlations);
        default: the last checkpoint. The paper uses 95,000 (pitfall 9: make it a parameter).
    biters, alp, seed
        Multiplier bootstrap (per-model bands and the joint bootstrap across models).
    holdout
        Cohort split of the prediction (``alternate`` or ``last``).
    """

    models: tuple[FamilyMember, ...]
    lab: Mapping[str, Any] = field(default_factory=dict)
    outcome: str = "logprob"
    epoch_end: float | None = None
    biters: int = 1000
    alp: float = 0.05
    seed: int = 1234
    holdout: str = "alternate"
    base_dir: str = "."

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if len(names) < 2:
            raise ValueError("A family needs at least two models ([[family.models]] tables).")
        if len(set(names)) != len(names):
            raise ValueError(f"Model names must be unique; got {names}.")
        from causalmem.lab.config import LabConfig

        known = {f.name for f in fields(LabConfig)}
        bad = sorted(set(self.lab) - known)
        if bad:
            raise ValueError(f"unknown [family.lab] keys {bad}; known: {sorted(known)}.")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> FamilyConfig:
        """Read the ``[family]`` table (with ``[family.lab]`` and ``[[family.models]]``)."""
        p = Path(path)
        data = dict(tomllib.loads(p.read_text()).get("family", {}))
        if not data:
            raise ValueError(f"{p}: no [family] table.")
        models = data.pop("models", [])
        member_keys = {f.name for f in fields(FamilyMember)}
        members = []
        for m in models:
            bad = sorted(set(m) - member_keys)
            if bad:
                raise ValueError(
                    f"{p}: unknown [[family.models]] keys {bad}; known: {sorted(member_keys)}."
                )
            members.append(FamilyMember(**m))
        known = {f.name for f in fields(cls)} - {"models", "base_dir"}
        bad = sorted(set(data) - known)
        if bad:
            raise ValueError(f"{p}: unknown [family] keys {bad}; known: {sorted(known)}.")
        return cls(models=tuple(members), base_dir=str(p.parent), **data)

    def lab_config(self, member: FamilyMember) -> Any:
        """Return the :class:`~causalmem.workflows.lab_demo.LabConfig` of a lab member."""
        from causalmem.lab.config import LabConfig

        base = LabConfig(**dict(self.lab))
        over: dict[str, Any] = {
            "n_layer": member.n_layer,
            "d_model": member.d_model,
            "n_head": member.n_head,
            "outcome": self.outcome,
        }
        if member.lr is not None:
            over["lr"] = member.lr
        return replace(base, **over)


# ----------------------------------------------------------------------------- the family
@dataclass(frozen=True, eq=False)
class ModelRun:
    """One member's data: its panel, LR schedule, size and epoch boundary."""

    name: str
    panel: Panel
    lr: pd.DataFrame
    n_params: float
    max_lr: float
    epoch_end: float
    source: str
    path: str
    manifest: Mapping[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class Family:
    """Models scored on shared instances, ordered by size (smallest first)."""

    models: tuple[ModelRun, ...]
    out_dir: Path | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Model names, smallest first."""
        return tuple(m.name for m in self.models)

    def __getitem__(self, name: str) -> ModelRun:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"Unknown model {name!r}; the family has {list(self.names)}.")

    def tidy(self) -> pd.DataFrame:
        """One row per model: size, peak LR, epoch boundary, panel shape and source."""
        return pd.DataFrame(
            [
                {
                    "model": m.name,
                    "n_params": m.n_params,
                    "max_lr": m.max_lr,
                    "epoch_end": m.epoch_end,
                    "n_units": m.panel.n_units,
                    "n_never": m.panel.n_never,
                    "n_steps": int(m.panel.steps.size),
                    "n_cohorts": int(m.panel.cohorts.size),
                    "outcomes": ",".join(m.panel.schema.outcomes),
                    "source": m.source,
                    "path": m.path,
                }
                for m in self.models
            ]
        )

    def lr_table(self) -> pd.DataFrame:
        """Every model's LR schedule: ``model``, ``step``, ``lr``."""
        return pd.concat(
            [m.lr.assign(model=m.name)[["model", "step", "lr"]] for m in self.models],
            ignore_index=True,
        )

    def duplicate_checkpoints(self) -> pd.DataFrame:
        """Checkpoints whose weights hash repeats within a model (pitfall 10); may be empty."""
        rows = []
        for m in self.models:
            if not m.manifest:
                continue
            seen: dict[str, int] = {}
            for c in m.manifest.get("checkpoints", []):
                h, s = c.get("weights_hash"), int(c["checkpoint"]["step"])
                if h in seen:
                    rows.append({"model": m.name, "step": s, "same_as_step": seen[h]})
                else:
                    seen[h] = s
        return pd.DataFrame(rows, columns=["model", "step", "same_as_step"])


def _read_member_panel(member: FamilyMember, base: Path) -> Panel:
    from causalmem.panel.io import read_panel

    path = Path(member.panel or "")
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise FileNotFoundError(f"family member {member.name!r}: panel file {path} not found.")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(path).metadata or {}
        if any(k.startswith(b"causalmem") for k in md):
            return read_panel(path)
        frame = pd.read_parquet(path)
    elif path.suffix in (".csv", ".gz"):
        frame = pd.read_csv(path)
    else:
        raise ValueError(
            f"family member {member.name!r}: {path.name} is neither .parquet nor .csv."
        )
    cols = {member.unit, member.step, member.cohort}
    missing = sorted(cols - set(frame.columns))
    if missing:
        raise KeyError(
            f"family member {member.name!r}: {path.name} lacks columns {missing}; set unit=, "
            "step=, cohort= in its [[family.models]] table."
        )
    outcomes = [
        c for c in frame.columns if c not in cols and pd.api.types.is_numeric_dtype(frame[c])
    ]
    cohort = frame[member.cohort].astype(float).replace([np.inf], np.nan)
    frame = frame.assign(**{member.cohort: pd.array(cohort.round(), dtype="Int64")})
    return Panel.from_frame(
        frame,
        unit=member.unit,
        step=member.step,
        cohort=member.cohort,
        outcomes=outcomes,
        allow_unbalanced_panel=True,
        meta={"model": member.name, "source": str(path)},
    )


def _pythia_max_lr(name: str) -> float | None:
    low = name.lower()
    for size in sorted(PYTHIA_MAX_LR, key=len, reverse=True):
        if size in low:
            return PYTHIA_MAX_LR[size]
    return None


def build_family(
    cfg: FamilyConfig,
    out_dir: str | os.PathLike[str],
    log: Log = print,
    *,
    progress: bool = False,
) -> Family:
    """Train and score the lab members (resumable), read the file members, write the manifest.

    Parameters
    ----------
    cfg
        The family.
    out_dir
        Output folder: ``models/<name>/`` per lab member (a full lab-demo folder, resumed when
        rerun) and ``family.json`` (members, panel paths, sizes, LR schedules) for
        :func:`load_family`.
    log
        Progress messages.
    progress
        Progress bars during training and scoring.

    Returns
    -------
    Family

    Raises
    ------
    ValueError
        If the members' panels do not share their units (instances), which the joint bootstrap
        across models needs.
    """
    from causalmem.workflows.lab_demo import run_lab_demo

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for member in cfg.models:
        if member.is_lab:
            lab_cfg = cfg.lab_config(member)
            folder = out / "models" / member.name
            log(f"{member.name}: lab run in {folder} (resumes finished stages)")
            prefix = f"  {member.name}: "

            def member_log(msg: str, prefix: str = prefix) -> None:
                log(prefix + msg)

            res = run_lab_demo(folder, lab_cfg, log=member_log, progress=progress)
            sched_path = folder / "lr_schedule.parquet"
            entries.append(
                {
                    "name": member.name,
                    "source": "lab",
                    "panel": str((folder / "panel.parquet").relative_to(out)),
                    "lr_schedule": str(sched_path.relative_to(out)),
                    "manifest": str((folder / "scores" / "manifest.json").relative_to(out)),
                    "n_params": float(res.headline["n_params"]),
                    "max_lr": float(lab_cfg.lr),
                    "epoch_end": float(member.epoch_end or cfg.epoch_end or lab_cfg.steps),
                    "shape": {
                        "n_layer": member.n_layer,
                        "d_model": member.d_model,
                        "n_head": member.n_head,
                    },
                    "timings_s": res.timings,
                    "config": asdict(lab_cfg),
                }
            )
        else:
            panel = _read_member_panel(member, Path(cfg.base_dir))
            max_lr = member.max_lr or _pythia_max_lr(member.name)
            if max_lr is None:
                raise ValueError(
                    f"family member {member.name!r}: give max_lr (its peak learning rate; "
                    "Pythia 70m 1e-3 ... 12b 1.2e-4)."
                )
            sched = pythia_lr_schedule(
                max_lr, member.total_steps, member.warmup_frac, member.min_lr_ratio
            )
            folder = out / "models" / member.name
            folder.mkdir(parents=True, exist_ok=True)
            from causalmem.panel.io import write_panel

            write_panel(panel, folder / "panel.parquet")
            atomic_write_parquet(folder / "lr_schedule.parquet", sched)
            entries.append(
                {
                    "name": member.name,
                    "source": "file",
                    "file": str(member.panel),
                    "panel": str((folder / "panel.parquet").relative_to(out)),
                    "lr_schedule": str((folder / "lr_schedule.parquet").relative_to(out)),
                    "manifest": None,
                    "n_params": float(member.n_params) if member.n_params else float("nan"),
                    "max_lr": float(max_lr),
                    "epoch_end": float(
                        member.epoch_end or cfg.epoch_end or float(panel.steps.max())
                    ),
                }
            )
            log(f"{member.name}: read {panel.n_units:,} units × {panel.steps.size} steps")
    manifest = {
        "format": "causalmem.workflows.family",
        "version": 1,
        "outcome": cfg.outcome,
        "biters": cfg.biters,
        "alp": cfg.alp,
        "seed": cfg.seed,
        "holdout": cfg.holdout,
        "models": entries,
    }
    fam = _load(out, manifest)
    _check_shared_units(fam)
    atomic_write_text(out / _MANIFEST, json.dumps(manifest, indent=1, default=str))
    atomic_write_parquet(out / "family.parquet", fam.tidy())
    return fam


def _load(out: Path, manifest: Mapping[str, Any]) -> Family:
    from causalmem.panel.io import read_panel

    runs = []
    for e in manifest["models"]:
        man = None
        if e.get("manifest") and (out / e["manifest"]).exists():
            man = json.loads((out / e["manifest"]).read_text())
        runs.append(
            ModelRun(
                name=e["name"],
                panel=read_panel(out / e["panel"]),
                lr=pd.read_parquet(out / e["lr_schedule"]),
                n_params=float(e["n_params"]),
                max_lr=float(e["max_lr"]),
                epoch_end=float(e["epoch_end"]),
                source=e["source"],
                path=str(out / e["panel"]),
                manifest=man,
            )
        )
    order = sorted(range(len(runs)), key=lambda i: (np.nan_to_num(runs[i].n_params, nan=np.inf), i))
    return Family(models=tuple(runs[i] for i in order), out_dir=out)


def load_family(out_dir: str | os.PathLike[str]) -> Family:
    """Read a family written by :func:`build_family` (its ``family.json``)."""
    out = Path(out_dir)
    path = out / _MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found; build the family first (analyses/02_family/run.py or "
            "causalmem.workflows.family.build_family)."
        )
    return _load(out, json.loads(path.read_text()))


def _check_shared_units(fam: Family) -> None:
    ref = fam.models[0]
    ref_units = ref.panel.frame[[ref.panel.schema.unit, ref.panel.schema.cohort]].drop_duplicates()
    ref_units = ref_units.sort_values(ref.panel.schema.unit).reset_index(drop=True)
    hashes = {m.name: m.manifest.get("instances") for m in fam.models if m.manifest}
    if len(set(hashes.values())) > 1:
        raise ValueError(
            f"The lab members scored different instances (hashes {hashes}); train every size "
            "with the same corpus, seed, seq_len, batch_size, steps, k and m."
        )
    for m in fam.models[1:]:
        s = m.panel.schema
        u = m.panel.frame[[s.unit, s.cohort]].drop_duplicates().sort_values(s.unit)
        u = u.reset_index(drop=True)
        if not (
            len(u) == len(ref_units)
            and np.array_equal(u.iloc[:, 0].to_numpy(), ref_units.iloc[:, 0].to_numpy())
            and u.iloc[:, 1]
            .fillna(-1)
            .astype(int)
            .equals(ref_units.iloc[:, 1].fillna(-1).astype(int))
        ):
            raise ValueError(
                f"{m.name}: its units or cohorts differ from {ref.name}'s; the family's joint "
                "bootstrap needs the same instances (same ids and cohorts) in every panel."
            )


# ----------------------------------------------------------------------------- fitting
@dataclass(frozen=True, eq=False)
class FamilyFit:
    """ATT(g, c) of one outcome for every model, on the memorisation scale.

    ``results`` are the raw :class:`AttGtResult` (the joint bootstrap needs them); the tidy views
    add a ``model`` column, ordered smallest first.
    """

    family: Family
    outcome: str
    sign: int
    results: Mapping[str, AttGtResult]
    profiles: Mapping[str, MemorisationProfile]

    def cells(self) -> pd.DataFrame:
        """Every ATT(g, c) cell of every model (memorisation scale) with ``model``."""
        return self._stack(lambda p: p.tidy())

    def path(self) -> pd.DataFrame:
        """Event-time path theta(e) of every model."""
        return self._stack(lambda p: p.path.dropna(subset=["event_time"]))  # type: ignore[union-attr]

    def persistent(self) -> pd.DataFrame:
        """Return persistent memorisation theta(e), ``e >= 0``, of every model."""
        return self._stack(lambda p: p.persistent().dropna(subset=["event_time"]))

    def instantaneous(self) -> pd.DataFrame:
        """tau(g, g) per model with the macro-batch's mean LR of that model (``lr_mean``)."""
        frames = []
        for m in self.family.models:
            inst = self.profiles[m.name].instantaneous()
            lr = _cohort_mean_lr(m.lr, inst["group"].to_numpy(), m.panel.steps)
            frames.append(inst.merge(lr, on="group", how="left").assign(model=m.name))
        return pd.concat(frames, ignore_index=True)

    def residual(self) -> pd.DataFrame:
        """tau(g, T) at each model's epoch boundary T (the last checkpoint <= T), ``at`` column."""
        frames = []
        for m in self.family.models:
            steps = m.panel.steps
            at = float(steps[steps <= m.epoch_end].max())
            frames.append(self.profiles[m.name].residual(at=at).assign(model=m.name, at=at))
        return pd.concat(frames, ignore_index=True)

    def pretrends(self) -> pd.DataFrame:
        """Pre-trend (placebo) summary and joint Wald test per model."""
        return pd.DataFrame(
            [{"model": n, **self.profiles[n].pretrend()} for n in self.family.names]
        )

    def glance(self) -> pd.DataFrame:
        """One row per model: :meth:`AttGtResult.glance` with ``model``."""
        return pd.concat(
            [self.results[n].glance().assign(model=n) for n in self.family.names],
            ignore_index=True,
        )

    def _stack(self, view: Callable[[MemorisationProfile], pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(
            [view(self.profiles[n]).assign(model=n) for n in self.family.names],
            ignore_index=True,
        )


def fit_family(
    family: Family,
    outcome: str,
    *,
    biters: int = 1000,
    alp: float = 0.05,
    seed: int = 1234,
    sign: int | None = None,
) -> FamilyFit:
    """Fit ``att_gt`` (never-trained controls, varying base) on every model's panel.

    Parameters
    ----------
    family
        The models.
    outcome
        Outcome column (``logprob``, ``sup_seq``, ``acc_seq``, ``entr_seq``, ``avg_rank``).
    biters, alp, seed
        Multiplier bootstrap for each model's uniform band (same seed for every model).
    sign
        Memorisation sign (default from the outcome name: -1 surprisal/entropy/rank).

    Returns
    -------
    FamilyFit
    """
    from causalmem.errors import CausalmemWarning
    from causalmem.estimators.att_gt import att_gt

    s = metric_sign(outcome) if sign is None else sign
    results: dict[str, AttGtResult] = {}
    profiles: dict[str, MemorisationProfile] = {}
    for m in family.models:
        if outcome not in m.panel.schema.outcomes:
            raise KeyError(
                f"{m.name}: no outcome {outcome!r} in its panel; it has {m.panel.schema.outcomes}."
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CausalmemWarning)
            res = att_gt(
                m.panel,
                yname=outcome,
                allow_unbalanced_panel=not m.panel.is_balanced,
                bstrap=biters > 0,
                biters=max(biters, 1),
                alp=alp,
                seed=seed,
            )
        results[m.name] = res
        profiles[m.name] = MemorisationProfile.from_result(res, metric=outcome, sign=s)
    return FamilyFit(family=family, outcome=outcome, sign=s, results=results, profiles=profiles)


# ----------------------------------------------------------------------------- findings
def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _corr_test(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import pearsonr

    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    r = pearsonr(x[ok], y[ok])
    return float(r.statistic), float(r.pvalue)


def _noise_floor(prediction: Any) -> float:
    try:
        return float(prediction.metric("noise_floor", "rmse"))
    except KeyError:
        return float("nan")


def family_findings(
    fit: FamilyFit,
    comparisons: Mapping[str, Any],
    prediction: Any,
    *,
    corr_threshold: float = 0.7,
) -> dict[str, Any]:
    """Check the paper's findings (i)-(iii) on a fitted family, with the numbers; never forced.

    Parameters
    ----------
    fit
        The fitted family (models ordered by size).
    comparisons
        ``{"all": ProfileComparison, "post_first_epoch": ProfileComparison}`` (see
        :func:`causalmem.analysis.compare.compare_profiles`).
    prediction
        A :class:`~causalmem.analysis.predict.ProfilePrediction` of the largest model from the others.
    corr_threshold
        What "highly correlated" means for (iii): every pairwise noise-corrected correlation of
        the post-treatment first-epoch cells at or above it.

    Returns
    -------
    dict
        ``per_model`` numbers and, per finding, ``holds`` (bool), ``criterion`` (text) and the
        numbers behind it.
    """
    names = list(fit.family.names)
    inst = fit.instantaneous()
    resid = fit.residual()
    pers = fit.persistent()
    per_model: list[dict[str, Any]] = []
    for m in fit.family.models:
        i = inst[inst["model"] == m.name]
        r = resid[resid["model"] == m.name]
        p = pers[(pers["model"] == m.name) & (pers["event_time"] > 0)]
        p = p[p["event_time"] <= m.epoch_end]
        e0 = pers[(pers["model"] == m.name) & (pers["event_time"] == 0)]["estimate"]
        lr_r, lr_p = _corr_test(i["estimate"].to_numpy(float), i["lr_mean"].to_numpy(float))
        rr = r.merge(i[["group", "lr_mean"]], on="group", how="left")
        res_lr, res_lr_p = _corr_test(rr["estimate"].to_numpy(float), rr["lr_mean"].to_numpy(float))
        inst_mean = float(i["estimate"].mean())
        per_model.append(
            {
                "model": m.name,
                "n_params": m.n_params,
                "max_lr": m.max_lr,
                "instantaneous_mean": inst_mean,
                "instantaneous_share_significant": float(i["significant"].mean()),
                "persistent_mean_e_gt_0": float(p["estimate"].mean()),
                "path_e0": float(e0.iloc[0]) if len(e0) else float("nan"),
                "path_last": float(p["estimate"].iloc[-1]) if len(p) else float("nan"),
                "residual_at": float(r["at"].iloc[0]) if len(r) else float("nan"),
                "residual_mean": float(r["estimate"].mean()),
                "residual_share_significant": float(r["significant"].mean()),
                "persistence_ratio": float(r["estimate"].mean()) / inst_mean
                if inst_mean
                else float("nan"),
                "corr_instantaneous_lr": lr_r,
                "corr_instantaneous_lr_p": lr_p,
                "corr_residual_lr": res_lr,
                "corr_residual_lr_p": res_lr_p,
                "pretest_p_value": float(fit.results[m.name].pretest()[1]),
            }
        )
    pm = pd.DataFrame(per_model)
    size = pm["n_params"].to_numpy(float)
    small, large = names[0], names[-1]

    # (i) larger models memorise more and more persistently.
    diff_rows = {}
    for key, comp in comparisons.items():
        d = comp.mean_difference(large, small, sign=fit.sign)
        diff_rows[key] = d.iloc[0].to_dict()
    rho_inst = _spearman(size, pm["instantaneous_mean"])
    rho_res = _spearman(size, pm["residual_mean"])
    rho_pers = _spearman(size, pm["persistent_mean_e_gt_0"])
    rho_ratio = _spearman(size, pm["persistence_ratio"])
    post = diff_rows.get("post_first_epoch", next(iter(diff_rows.values())))
    holds_i = bool(rho_inst == 1.0 and rho_res == 1.0 and post["conf_low"] > 0)
    f1 = {
        "holds": holds_i,
        "criterion": "instantaneous and residual memorisation both increase strictly with size "
        "(Spearman rho = 1 over models) and the largest-minus-smallest mean memorisation over "
        "post-treatment first-epoch cells has a joint-bootstrap interval above 0",
        "spearman_size_instantaneous": rho_inst,
        "spearman_size_residual": rho_res,
        "spearman_size_persistent": rho_pers,
        "spearman_size_persistence_ratio": rho_ratio,
        "largest_minus_smallest_mean": diff_rows,
    }

    # (ii) instantaneous memorisation tracks the LR.
    lr_corrs = pm["corr_instantaneous_lr"].to_numpy(float)
    lr_ps = pm["corr_instantaneous_lr_p"].to_numpy(float)
    holds_ii = bool(np.all(lr_corrs > 0) and np.all(lr_ps < 0.05))
    f2 = {
        "holds": holds_ii,
        "criterion": "in every model, the Pearson correlation between tau(g, g) and the mean LR "
        "of the macro-batch is positive with p < 0.05 (paper: high LR -> high instantaneous, low "
        "residual memorisation; corr_residual_lr should then be negative)",
        "corr_instantaneous_lr": dict(zip(names, lr_corrs.tolist(), strict=True)),
        "corr_instantaneous_lr_p": dict(zip(names, lr_ps.tolist(), strict=True)),
        "corr_residual_lr": dict(zip(names, pm["corr_residual_lr"].tolist(), strict=True)),
    }

    # (iii) profiles are highly correlated across sizes and predictable.
    corr = {k: c.tidy().to_dict(orient="records") for k, c in comparisons.items()}
    pfe = comparisons.get("post_first_epoch")
    est = pfe.tidy()["estimate"].to_numpy(float) if pfe is not None else np.array([np.nan])
    low = pfe.tidy()["conf_low"].to_numpy(float) if pfe is not None else np.array([np.nan])
    r2 = prediction.metric("linear", "r2")
    r2_event = prediction.metric("event_mean", "r2")
    r2_nearest = prediction.metric("nearest", "r2")
    holds_iii = bool(np.all(est >= corr_threshold) and r2 > 0.5 and r2 > r2_event)
    f3 = {
        "holds": holds_iii,
        "criterion": f"every pairwise noise-corrected Pearson correlation of the post-treatment "
        f"first-epoch cells >= {corr_threshold}, and predicting the largest model's held-out "
        "cohorts from the smaller models gives R^2 > 0.5 and beats the event-time-mean baseline",
        "min_corr_post_first_epoch": float(np.nanmin(est)),
        "min_corr_lower_bound_post_first_epoch": float(np.nanmin(low)),
        "correlations": corr,
        "paper_fig6_variant": "all",
        "prediction": {
            "target": prediction.target,
            "predictors": list(prediction.predictors),
            "holdout": prediction.holdout,
            "r2_linear": r2,
            "r2_event_mean_baseline": r2_event,
            "r2_nearest_baseline": r2_nearest,
            "rmse_linear": prediction.metric("linear", "rmse"),
            "rmse_event_mean_baseline": prediction.metric("event_mean", "rmse"),
            "rmse_nearest_baseline": prediction.metric("nearest", "rmse"),
            "noise_floor_rmse": _noise_floor(prediction),
            "metrics": prediction.tidy().to_dict(orient="records"),
        },
    }
    return {
        "outcome": fit.outcome,
        "sign": fit.sign,
        "models": names,
        "per_model": per_model,
        "finding_i": f1,
        "finding_ii": f2,
        "finding_iii": f3,
    }


def findings_markdown(findings: Mapping[str, Any]) -> str:
    """Render :func:`family_findings` as Markdown (a table per model and one line per finding)."""
    pm = pd.DataFrame(findings["per_model"])
    show = pm[
        [
            "model",
            "n_params",
            "max_lr",
            "instantaneous_mean",
            "persistent_mean_e_gt_0",
            "residual_mean",
            "persistence_ratio",
            "corr_instantaneous_lr",
            "corr_residual_lr",
            "pretest_p_value",
        ]
    ]
    f1, f2, f3 = findings["finding_i"], findings["finding_ii"], findings["finding_iii"]
    verdict = {True: "**holds**", False: "**does not hold**"}
    d = f1["largest_minus_smallest_mean"]
    lines = [
        f"# Findings (i)-(iii) of Lesci et al. (2024) on this family ({findings['outcome']})",
        "",
        show.to_markdown(index=False, floatfmt=".4g"),
        "",
        f"## (i) Larger models memorise more and more persistently: {verdict[f1['holds']]}",
        "",
        f"Criterion: {f1['criterion']}.",
        "",
        f"- Spearman(size, instantaneous) = {f1['spearman_size_instantaneous']:.2f}; "
        f"Spearman(size, residual) = {f1['spearman_size_residual']:.2f}; Spearman(size, "
        f"persistent e>0) = {f1['spearman_size_persistent']:.2f}; Spearman(size, residual / "
        f"instantaneous) = {f1['spearman_size_persistence_ratio']:.2f}.",
        *[
            f"- Largest minus smallest, mean over {k} cells: {v['estimate']:.3f} "
            f"[{v['conf_low']:.3f}, {v['conf_high']:.3f}] (joint bootstrap, {v['n_cells']} cells)."
            for k, v in d.items()
        ],
        "",
        f"## (ii) Instantaneous memorisation tracks the learning rate: {verdict[f2['holds']]}",
        "",
        f"Criterion: {f2['criterion']}.",
        "",
        *[
            f"- {m}: corr(tau(g,g), LR) = {r:.2f} (p = {f2['corr_instantaneous_lr_p'][m]:.2g}); "
            f"corr(residual, LR) = {f2['corr_residual_lr'][m]:.2f}."
            for m, r in f2["corr_instantaneous_lr"].items()
        ],
        "",
        f"## (iii) Profiles are highly correlated across sizes and predictable: "
        f"{verdict[f3['holds']]}",
        "",
        f"Criterion: {f3['criterion']}.",
        "",
        "Pairwise Pearson correlations (noise-corrected estimate, raw plain correlation, 95% "
        "joint-bootstrap interval). The `all` variant pivots every cell, placebo cells "
        "included, as the reference repository's `compute_correlations` does: it is the one "
        "that reproduces the paper's Fig. 6 (pitfall 8); `post_first_epoch` keeps only c >= g "
        "with g, c <= T.",
        "",
    ]
    for k, rows in f3["correlations"].items():
        for r in rows:
            lines.append(
                f"- {k}: {r['term']}: {r['estimate']:.3f} (raw {r['raw']:.3f}) "
                f"[{r['conf_low']:.3f}, {r['conf_high']:.3f}], {r['n_cells']} cells"
            )
    p = f3["prediction"]
    lines += [
        "",
        f"Prediction of {p['target']} from {', '.join(p['predictors'])} (OLS on the training "
        f"cohorts, {p['holdout']} cohorts held out): out-of-sample R^2 {p['r2_linear']:.3f}, "
        f"RMSE {p['rmse_linear']:.3f}; baselines: event-time mean of the target's training "
        f"cohorts R^2 {p['r2_event_mean_baseline']:.3f} (RMSE "
        f"{p['rmse_event_mean_baseline']:.3f}), the largest predictor's cells as they are R^2 "
        f"{p['r2_nearest_baseline']:.3f} (RMSE {p['rmse_nearest_baseline']:.3f}).",
        "",
    ]
    floor = p.get("noise_floor_rmse", float("nan"))
    if np.isfinite(floor):
        lines += [
            f"The target's own estimation noise on the held-out cells is RMSE {floor:.3f} (from "
            "the joint bootstrap). "
            + (
                "The prediction error is below it: every model is scored on the same "
                "instances, so the predictors share the target's sampling noise, and part of "
                "the out-of-sample fit is shared noise rather than shared memorisation (the "
                "noise-corrected correlations above remove that part)."
                if p["rmse_linear"] < floor
                else "The prediction error is at or above it: what is left is estimation noise "
                "plus misfit."
            ),
            "",
        ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- one-call analysis
@dataclass(frozen=True, eq=False)
class FamilyAnalysis:
    """Everything the family analyses report: fit, both correlation variants, prediction, findings.

    ``comparisons`` maps ``"all"`` (every non-reference cell: the reference repository's Fig. 6)
    and ``"post_first_epoch"`` (``c >= g`` and ``g, c <= T``) to a
    :class:`~causalmem.analysis.compare.ProfileComparison`; ``prediction`` predicts the largest model
    from the smaller ones (None with fewer than two models).
    """

    fit: FamilyFit
    comparisons: Mapping[str, Any]
    prediction: Any
    findings: dict[str, Any] | None
    epoch_end: float

    def correlations(self) -> pd.DataFrame:
        """Both correlation variants in one tidy frame (``cells`` tells them apart)."""
        if not self.comparisons:
            return pd.DataFrame()
        out = pd.concat([c.tidy() for c in self.comparisons.values()], ignore_index=True)
        out["reproduces_paper_fig6"] = out["cells"] == "all"
        return out


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
    from causalmem.analysis.compare import compare_profiles
    from causalmem.analysis.predict import predict_profile

    fit = fit_family(family, outcome, biters=biters, alp=alp, seed=seed)
    t_end = float(epoch_end if epoch_end is not None else min(m.epoch_end for m in family.models))
    comps: dict[str, Any] = {}
    pred = None
    found = None
    if len(family.models) >= 2:
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
            family.names[-1],
            list(family.names[:-1]),
            holdout=holdout,  # type: ignore[arg-type]
            sign=fit.sign,
            alp=alp,
        )
        if findings:
            found = family_findings(fit, comps, pred)
            found["epoch_end"] = t_end
    return FamilyAnalysis(
        fit=fit, comparisons=comps, prediction=pred, findings=found, epoch_end=t_end
    )


@dataclass(frozen=True)
class AnalysisConfig:
    """Settings of the family analyses (``analyses/03_*`` … ``07_*``): the ``[analysis]`` table.

    Attributes
    ----------
    family
        Folder written by :func:`build_family` (``analyses/02_family``).
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
