"""The trainable steer: an ``nn.Module`` holding ``P1, P2`` that exports a frozen transform."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from steer.core.transform import SteerTransform, apply_steer

__all__ = ["LowRankSteer"]


class LowRankSteer(nn.Module):
    """``k`` low-rank steers ``W_i = P1_i P2_i^T`` with ``P1, P2 ~ init_var * N(0, 1)``.

    The initialisation follows the reference repository (``randn * init_var``, init_var = 1e-2),
    drawn from an explicit generator.

    Parameters
    ----------
    num_steers
        Number of slots ``k`` (including any dummy slot).
    hidden_size
        ``d``.
    rank
        ``r``.
    epsilon
        Base strength ``eps_0``.
    init_var
        Scale of the random initialisation.
    generator
        Source of randomness for the initialisation (``torch.Generator`` on the CPU).
    """

    def __init__(
        self,
        num_steers: int,
        hidden_size: int,
        rank: int,
        epsilon: float,
        init_var: float,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        shape = (num_steers, hidden_size, rank)
        self.p1 = nn.Parameter(torch.randn(shape, generator=generator) * init_var)
        self.p2 = nn.Parameter(torch.randn(shape, generator=generator) * init_var)
        self.epsilon = float(epsilon)

    def forward(self, h: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Steer hidden states ``h`` (``[..., d]``) with slot values ``[k]`` or ``[*lead, k]``."""
        return apply_steer(h, self.p1, self.p2, self.epsilon, values)

    def penalty(self) -> torch.Tensor:
        """``||P1||^2 + ||P2||^2`` (the reference repository's regulariser)."""
        return self.p1.square().sum() + self.p2.square().sum()

    def to_transform(
        self,
        base_model: str,
        slot_names: Sequence[str] = (),
        dummy_slots: Sequence[int] = (),
        provenance: Mapping[str, Any] | None = None,
    ) -> SteerTransform:
        """Freeze the current factors into a :class:`~steer.SteerTransform` (float32, CPU)."""
        return SteerTransform(
            self.p1.detach().to("cpu", torch.float32),
            self.p2.detach().to("cpu", torch.float32),
            self.epsilon,
            base_model,
            slot_names=tuple(slot_names),
            dummy_slots=tuple(dummy_slots),
            provenance=dict(provenance or {}),
        )
