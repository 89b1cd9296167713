"""Frozen configuration values: a steer's shape and its training.

Defaults are the reference repository's (README / EasyEdit2 yaml) unless noted.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steer._types import HiddenCache, check_literal
from steer.errors import SteerInputError

__all__ = ["SteerConfig", "SteerTrainConfig"]


def _from_dict(cls: type, data: Mapping[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SteerInputError(f"unknown {cls.__name__} keys {unknown}; known: {sorted(known)}.")
    return cls(**dict(data))


@dataclass(frozen=True)
class SteerConfig:
    """Shape of a steer.

    Parameters
    ----------
    num_steers
        Labelled slots (one label column each). Default 1.
    dummy_steer
        Add one more slot held at 1 for every text in training (the reference repository's
        ``--dummy_steer 1``); generation sets it to 1 as well. Default True.
    rank
        ``r`` of ``P1, P2`` (reference: 1000, which is >= d for GPT-2 S/M/L and SmolLM2, so
        ``W`` is effectively full rank).
    epsilon
        Base strength ``eps_0`` (reference CLI default 1e-3).
    init_var
        Scale of the ``randn`` initialisation (reference: 1e-2).
    slot_names
        Names of the labelled slots (default ``steer_0``, ...); the dummy slot is ``dummy``.
    """

    num_steers: int = 1
    dummy_steer: bool = True
    rank: int = 1000
    epsilon: float = 1e-3
    init_var: float = 1e-2
    slot_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if int(self.num_steers) < 1:
            raise SteerInputError(f"num_steers must be >= 1; got {self.num_steers}.")
        if int(self.rank) < 1:
            raise SteerInputError(f"rank must be >= 1; got {self.rank}.")
        if not math.isfinite(self.epsilon) or self.epsilon == 0:
            raise SteerInputError(f"epsilon must be finite and non-zero; got {self.epsilon}.")
        if not math.isfinite(self.init_var) or self.init_var <= 0:
            raise SteerInputError(f"init_var must be positive; got {self.init_var}.")
        names = tuple(self.slot_names)
        if names and len(names) != self.num_steers:
            raise SteerInputError(
                f"slot_names has {len(names)} names for {self.num_steers} labelled slot(s)."
            )
        object.__setattr__(self, "slot_names", names)

    @property
    def total_slots(self) -> int:
        """``k``: labelled slots plus the dummy slot."""
        return self.num_steers + int(self.dummy_steer)

    @property
    def all_slot_names(self) -> tuple[str, ...]:
        """Names of all ``k`` slots (the dummy slot last)."""
        names = self.slot_names or tuple(f"steer_{i}" for i in range(self.num_steers))
        return names + (("dummy",) if self.dummy_steer else ())

    @property
    def dummy_slots(self) -> tuple[int, ...]:
        """Index of the dummy slot, if any."""
        return (self.num_steers,) if self.dummy_steer else ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["slot_names"] = list(self.slot_names)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SteerConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error."""
        data = dict(data)
        if "slot_names" in data:
            data["slot_names"] = tuple(data["slot_names"])
        return _from_dict(cls, data)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class SteerTrainConfig:
    """How :func:`steer.fit_steer` trains.

    Parameters
    ----------
    steps
        Optimiser steps (reference: 1000).
    batch_size
        Texts per step (reference: 32).
    lr
        Adam learning rate (reference: 1e-2).
    regularization
        ``lambda`` on ``||P1||^2 + ||P2||^2`` added to the loss (reference: 0 for detox, 1e-6 for
        sentiment).
    max_length
        Tokens kept per text (reference: 256).
    seed
        Seed of the initialisation and of the batch order (``torch.Generator``).
    hidden_cache
        ``"auto"``: compute the frozen model's final hidden states once and train only the head
        (checked against the model's own logits on the first texts; falls back to ``"never"``
        with a :class:`~steer.errors.SteerWarning` when they differ); ``"always"``: the same but
        raise instead of falling back; ``"never"``: run the whole model every step, with the
        steer in the hook (the reference repository's way).
    cache_batch_size
        Texts per forward pass when caching hidden states.
    progress
        Show a progress bar.
    """

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-2
    regularization: float = 0.0
    max_length: int = 256
    seed: int = 0
    hidden_cache: HiddenCache = "auto"
    cache_batch_size: int = 16
    progress: bool = True

    def __post_init__(self) -> None:
        check_literal("hidden_cache", self.hidden_cache, HiddenCache)
        for name in ("steps", "batch_size", "max_length", "cache_batch_size"):
            if int(getattr(self, name)) < 1:
                raise SteerInputError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.max_length < 2:
            raise SteerInputError("max_length must be >= 2 (one context and one target token).")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise SteerInputError(f"lr must be positive; got {self.lr}.")
        if not math.isfinite(self.regularization) or self.regularization < 0:
            raise SteerInputError(f"regularization must be >= 0; got {self.regularization}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SteerTrainConfig:
        """Build from :meth:`to_dict` output; unknown keys are an error."""
        return _from_dict(cls, data)  # type: ignore[no-any-return]
