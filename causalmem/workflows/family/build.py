"""Build a family (train the lab members, read the file members), write and read its manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causalmem.panel.panel import Panel
from causalmem.panel.pythia import pythia_lr_schedule, pythia_max_lr
from causalmem.workflows.family.config import FamilyConfig, FamilyMember
from lmecon.atomic import atomic_write_parquet, atomic_write_text

__all__ = ["Family", "ModelRun", "build_family", "load_family"]

Log = Callable[[str], None]

_MANIFEST = "family.json"


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


# ----------------------------------------------------------------------------- file members
def _read_frame(member: FamilyMember, path: Path) -> Panel | pd.DataFrame:
    """Read a causalmem panel file as a Panel, a plain parquet / CSV file as a frame."""
    from causalmem.panel.io import read_panel

    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        md = pq.read_schema(path).metadata or {}
        if any(k.startswith(b"causalmem") for k in md):
            return read_panel(path)
        return pd.read_parquet(path)
    if path.suffix in (".csv", ".gz"):
        return pd.read_csv(path)
    raise ValueError(f"family member {member.name!r}: {path.name} is neither .parquet nor .csv.")


def _read_member_panel(member: FamilyMember, base: Path) -> Panel:
    path = Path(member.panel or "")
    if not path.is_absolute():
        path = base / path
    if not path.exists():
        raise FileNotFoundError(f"family member {member.name!r}: panel file {path} not found.")
    frame = _read_frame(member, path)
    if isinstance(frame, Panel):
        return frame
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
    frame = frame.assign(**{member.cohort: cohort.round().astype("Int64")})
    return Panel.from_frame(
        frame,
        unit=member.unit,
        step=member.step,
        cohort=member.cohort,
        outcomes=outcomes,
        allow_unbalanced_panel=True,
        meta={"model": member.name, "source": str(path)},
    )


# ----------------------------------------------------------------------------- building
def _lab_entry(
    cfg: FamilyConfig, member: FamilyMember, out: Path, log: Log, progress: bool
) -> dict[str, Any]:
    """Train and score a lab member (resumable) and return its manifest entry."""
    from causalmem.workflows.lab_demo import run_lab_demo

    lab_cfg = cfg.lab_config(member)
    folder = out / "models" / member.name
    log(f"{member.name}: lab run in {folder} (resumes finished stages)")
    prefix = f"  {member.name}: "

    def member_log(msg: str, prefix: str = prefix) -> None:
        log(prefix + msg)

    res = run_lab_demo(folder, lab_cfg, log=member_log, progress=progress)
    sched_path = folder / "lr_schedule.parquet"
    return {
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


def _file_entry(cfg: FamilyConfig, member: FamilyMember, out: Path, log: Log) -> dict[str, Any]:
    """Read a file member, write its panel and Pythia LR schedule, return its manifest entry."""
    from causalmem.panel.io import write_panel

    panel = _read_member_panel(member, Path(cfg.base_dir))
    max_lr = member.max_lr or pythia_max_lr(member.name)
    if max_lr is None:
        raise ValueError(
            f"family member {member.name!r}: give max_lr (its peak learning rate; "
            "Pythia 70m 1e-3 ... 12b 1.2e-4)."
        )
    sched = pythia_lr_schedule(max_lr, member.total_steps, member.warmup_frac, member.min_lr_ratio)
    folder = out / "models" / member.name
    folder.mkdir(parents=True, exist_ok=True)
    write_panel(panel, folder / "panel.parquet")
    atomic_write_parquet(folder / "lr_schedule.parquet", sched)
    entry = {
        "name": member.name,
        "source": "file",
        "file": str(member.panel),
        "panel": str((folder / "panel.parquet").relative_to(out)),
        "lr_schedule": str((folder / "lr_schedule.parquet").relative_to(out)),
        "manifest": None,
        "n_params": float(member.n_params) if member.n_params else float("nan"),
        "max_lr": float(max_lr),
        "epoch_end": float(member.epoch_end or cfg.epoch_end or float(panel.steps.max())),
    }
    log(f"{member.name}: read {panel.n_units:,} units × {panel.steps.size} steps")
    return entry


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
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = [
        _lab_entry(cfg, member, out, log, progress)
        if member.is_lab
        else _file_entry(cfg, member, out, log)
        for member in cfg.models
    ]
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


# ----------------------------------------------------------------------------- loading
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
