"""Configuration of a family: its members (lab sizes or panel files) and shared settings."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["FamilyConfig", "FamilyMember"]


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
        Shared :class:`~causalmem.lab.config.LabConfig` settings of the lab members (a
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
        members = _members_from_toml(p, data.pop("models", []))
        known = {f.name for f in fields(cls)} - {"models", "base_dir"}
        bad = sorted(set(data) - known)
        if bad:
            raise ValueError(f"{p}: unknown [family] keys {bad}; known: {sorted(known)}.")
        return cls(models=tuple(members), base_dir=str(p.parent), **data)

    def lab_config(self, member: FamilyMember) -> Any:
        """Return the :class:`~causalmem.lab.config.LabConfig` of a lab member."""
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


def _members_from_toml(p: Path, models: list[dict[str, Any]]) -> list[FamilyMember]:
    """Read the ``[[family.models]]`` tables of ``p``; unknown keys are an error."""
    member_keys = {f.name for f in fields(FamilyMember)}
    members = []
    for m in models:
        bad = sorted(set(m) - member_keys)
        if bad:
            raise ValueError(
                f"{p}: unknown [[family.models]] keys {bad}; known: {sorted(member_keys)}."
            )
        members.append(FamilyMember(**m))
    return members
