"""The frozen steer value and the pure functions that apply it.

Notation (Han et al., *Word Embeddings Are Steers for Language Models*, ACL 2024,
https://arxiv.org/abs/2305.12798, eq. 1-2). A causal LM scores token ``v`` after context ``c``
with ``c^T e_v``, where ``c = h`` is the final hidden state entering the LM head and ``e_v`` is
row ``v`` of the output embedding matrix ``E`` (``[V, d]``). LM-Steer replaces ``e_v`` by

    e'_v = (I + eps * W) e_v,        W = sum_i s_i W_i,        W_i = P1_i P2_i^T   (d x d)

with low-rank factors ``P1_i, P2_i`` of shape ``[d, r]`` and slot values ``s_i``.

**Orientation (pitfall 8).** With column vectors, ``W_i = P1_i P2_i^T`` is the matrix that acts
on ``e_v``; the same logits are obtained by transforming the hidden state with its transpose,
``h' = (I + eps * W^T) h``. In the row-vector form used by the code and by the reference
repository, ``h' = h + eps * sum_i s_i (h P1_i) P2_i^T`` and ``logits = h' E^T``. Steering ``h``
instead of the ``|V|`` embeddings costs ``O(k d r)`` per position instead of ``O(|V| d^2)``, works
for tied and untied heads alike, and leaves the input embeddings untouched.
:meth:`SteerTransform.matrix` returns ``W`` (the matrix acting on ``e_v``) and
:func:`steered_output_embeddings` returns the rows ``e'_v``; a test proves that both views give
the same logits.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from steer.errors import SteerDimensionError, SteerInputError, SteerValuesError

__all__ = [
    "SteerTransform",
    "ValuesLike",
    "apply_steer",
    "as_values",
    "compose",
    "steered_output_embeddings",
]

ValuesLike = Sequence[float] | Sequence[Sequence[float]] | torch.Tensor


def as_values(values: ValuesLike, num_steers: int) -> torch.Tensor:
    """Validate steer values and return them as a float64 tensor.

    Parameters
    ----------
    values
        One value per slot (shape ``[k]``), or one row per sequence of a batch (``[B, k]``).
    num_steers
        The number of slots ``k`` of the transform.

    Returns
    -------
    torch.Tensor
        ``float64`` tensor of shape ``[k]`` or ``[B, k]`` on the CPU.

    Raises
    ------
    SteerValuesError
        If the last dimension is not ``k``, the rank is not 1 or 2, or a value is not finite.

    Examples
    --------
    >>> as_values([5.0, 1.0], 2)
    tensor([5., 1.], dtype=torch.float64)
    """
    try:
        t = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError) as exc:
        raise SteerValuesError(
            f"steer values must be numbers, one per slot (k={num_steers}); got {values!r}."
        ) from exc
    if t.dim() not in (1, 2) or t.shape[-1] != num_steers:
        raise SteerValuesError(
            f"steer values have shape {tuple(t.shape)}, but the transform has {num_steers} "
            f"slot(s): pass {num_steers} value(s) (shape [{num_steers}]) or one row per sequence "
            f"(shape [batch, {num_steers}]). Dummy slots take the value 1; "
            "SteerTransform.values(s) fills them for you."
        )
    if not bool(torch.isfinite(t).all()):
        raise SteerValuesError(f"steer values must be finite; got {t.tolist()}.")
    return t


def _broadcast_values(values: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Shape ``values`` (``[k]`` or ``[*lead, k]``) to broadcast against ``[..., k, 1]``."""
    if values.dim() == 1:
        return values[:, None]
    lead = values.shape[:-1]
    if tuple(h.shape[: len(lead)]) != tuple(lead):
        raise SteerValuesError(
            f"per-sequence steer values have leading shape {tuple(lead)} but the hidden states "
            f"entering the head have shape {tuple(h.shape)}; pass one row per sequence of the "
            "batch (beam search and num_return_sequences > 1 change the batch size)."
        )
    extra = h.dim() - 1 - len(lead)
    return values.reshape(*lead, *([1] * extra), values.shape[-1], 1)


def apply_steer(
    h: torch.Tensor,
    p1: torch.Tensor,
    p2: torch.Tensor,
    epsilon: float,
    values: torch.Tensor,
) -> torch.Tensor:
    """Steer hidden states: ``h' = h + eps * sum_i s_i (h P1_i) P2_i^T`` (row vectors).

    This is LM-Steer's eq. 2 applied on the context side (see the module docstring for the
    orientation); ``logits = h' E^T`` equals ``h E'^T`` with ``e'_v = (I + eps W) e_v``.

    Parameters
    ----------
    h
        Hidden states entering the LM head, shape ``[..., d]``.
    p1, p2
        Factors of shape ``[k, d, r]``.
    epsilon
        The base strength ``eps_0``.
    values
        Slot values ``s``: shape ``[k]`` (shared) or ``[*lead, k]`` where ``lead`` is a prefix of
        ``h``'s leading dimensions (one row per sequence, or per position).

    Returns
    -------
    torch.Tensor
        Steered hidden states, same shape and dtype as ``h``.

    Examples
    --------
    >>> p = torch.zeros(1, 4, 2)
    >>> h = torch.ones(3, 4)
    >>> torch.equal(apply_steer(h, p, p, 1e-3, torch.tensor([1.0])), h)
    True
    """
    k, d, r = p1.shape
    s = _broadcast_values(values.to(device=h.device, dtype=h.dtype), h)
    a = p1.permute(1, 0, 2).reshape(d, k * r)  # [d, k r]
    b = p2.permute(0, 2, 1).reshape(k * r, d)  # [k r, d]
    z = (h @ a).unflatten(-1, (k, r)) * s  # [..., k, r]
    return h + epsilon * (z.flatten(-2) @ b)


def _freeze_mapping(m: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True, eq=False)
class SteerTransform:
    """A trained LM-Steer: ``k`` slots of low-rank factors, a base strength and the base model.

    The value is immutable: the factors are detached copies, :meth:`to` returns a new transform
    and equality compares every field (tensors with :func:`torch.equal`).

    Parameters
    ----------
    p1, p2
        Factors of shape ``[k, d, r]``; slot ``i`` has ``W_i = P1_i P2_i^T`` acting on ``e_v``.
    epsilon
        The base strength ``eps_0`` (the paper's and the reference repository's default: 1e-3).
        Slot values multiply it: value ``s`` steers with ``eps = s * eps_0``.
    base_model
        Identifier of the model the steer was trained on (hub id, path or alias).
    slot_names
        One name per slot (default ``steer_0``, ``steer_1``, ...).
    dummy_slots
        Slots that training held at 1 for every text (the reference repository's "dummy" steer,
        which absorbs label-independent domain shift); :meth:`values` sets them to 1.
    provenance
        JSON-compatible record of how the steer was made (versions, data, seed, ...).

    Examples
    --------
    >>> t = SteerTransform(torch.zeros(2, 8, 4), torch.zeros(2, 8, 4), 1e-3, "tiny",
    ...                    slot_names=("sentiment", "dummy"), dummy_slots=(1,))
    >>> t.values(5.0)
    (5.0, 1.0)
    """

    p1: torch.Tensor
    p2: torch.Tensor
    epsilon: float
    base_model: str
    slot_names: tuple[str, ...] = ()
    dummy_slots: tuple[int, ...] = ()
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        p1, p2 = self.p1, self.p2
        if not (isinstance(p1, torch.Tensor) and isinstance(p2, torch.Tensor)):
            raise SteerInputError("p1 and p2 must be torch tensors of shape [k, d, r].")
        if p1.dim() != 3 or p1.shape != p2.shape:
            raise SteerDimensionError(
                f"p1 and p2 must both have shape [k, d, r]; got {tuple(p1.shape)} and "
                f"{tuple(p2.shape)}."
            )
        if not p1.is_floating_point() or p1.dtype != p2.dtype:
            raise SteerInputError(
                f"p1/p2 must share one floating dtype; got {p1.dtype}, {p2.dtype}."
            )
        if not p1.is_meta and not bool(torch.isfinite(p1).all() and torch.isfinite(p2).all()):
            n_bad = int((~torch.isfinite(p1)).sum() + (~torch.isfinite(p2)).sum())
            raise SteerInputError(
                f"p1/p2 hold {n_bad} non-finite value(s) (NaN/inf); such a steer cannot steer "
                "(generation would return empty text). Retrain it with a lower lr or epsilon."
            )
        eps = float(self.epsilon)
        if not math.isfinite(eps) or eps == 0.0:
            raise SteerInputError(f"epsilon must be finite and non-zero; got {self.epsilon!r}.")
        k = p1.shape[0]
        names = tuple(self.slot_names) or tuple(f"steer_{i}" for i in range(k))
        if len(names) != k or len(set(names)) != k:
            raise SteerInputError(f"slot_names must be {k} distinct names; got {names!r}.")
        dummy = tuple(sorted({int(i) for i in self.dummy_slots}))
        if any(i < 0 or i >= k for i in dummy):
            raise SteerInputError(f"dummy_slots {dummy} must lie in 0..{k - 1}.")
        object.__setattr__(self, "p1", p1.detach().clone())
        object.__setattr__(self, "p2", p2.detach().clone())
        object.__setattr__(self, "epsilon", eps)
        object.__setattr__(self, "base_model", str(self.base_model))
        object.__setattr__(self, "slot_names", names)
        object.__setattr__(self, "dummy_slots", dummy)
        object.__setattr__(self, "provenance", _freeze_mapping(self.provenance))

    @property
    def num_steers(self) -> int:
        """Number of slots ``k``."""
        return int(self.p1.shape[0])

    @property
    def hidden_size(self) -> int:
        """Hidden size ``d`` of the base model's head input."""
        return int(self.p1.shape[1])

    @property
    def rank(self) -> int:
        """Rank ``r`` of each slot's factors."""
        return int(self.p1.shape[2])

    @property
    def num_parameters(self) -> int:
        """Parameters per slot, ``2 d r`` (the paper compares with ``d^2``)."""
        return 2 * self.hidden_size * self.rank

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the factors."""
        return self.p1.dtype

    @property
    def device(self) -> torch.device:
        """Device of the factors."""
        return self.p1.device

    @property
    def labelled_slots(self) -> tuple[int, ...]:
        """Slots that are not dummy slots, in order."""
        return tuple(i for i in range(self.num_steers) if i not in self.dummy_slots)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> SteerTransform:
        """Return a copy with the factors on ``device`` and/or in ``dtype``.

        Parameters
        ----------
        device
            Target device (default: unchanged).
        dtype
            Target floating dtype (default: unchanged).

        Returns
        -------
        SteerTransform
            A new transform; ``self`` is unchanged.
        """
        return dataclasses.replace(
            self,
            p1=self.p1.to(device=device, dtype=dtype),
            p2=self.p2.to(device=device, dtype=dtype),
        )

    def values(self, value: float | Sequence[float]) -> tuple[float, ...]:
        """Full slot values: ``value`` for the labelled slots and 1 for the dummy slots.

        Parameters
        ----------
        value
            One number for every labelled slot, or one number per labelled slot.

        Returns
        -------
        tuple of float
            ``k`` values, ready for :func:`steer.steering`.
        """
        labelled = self.labelled_slots
        vals = [float(value)] * len(labelled) if isinstance(value, int | float) else list(value)
        if len(vals) != len(labelled):
            raise SteerValuesError(
                f"expected {len(labelled)} value(s) for the labelled slots "
                f"{[self.slot_names[i] for i in labelled]}; got {len(vals)}."
            )
        out = [1.0] * self.num_steers
        for i, v in zip(labelled, vals, strict=True):
            out[i] = float(v)
        return tuple(out)

    def matrix(self, values: ValuesLike) -> torch.Tensor:
        """Return the paper's ``W = sum_i s_i P1_i P2_i^T`` (``[d, d]``), acting on ``e_v`` (eq. 2).

        Parameters
        ----------
        values
            ``k`` slot values.

        Returns
        -------
        torch.Tensor
            ``W`` in the factors' dtype; the steered embedding is ``(I + eps W) e_v``.
        """
        s = as_values(values, self.num_steers)
        if s.dim() != 1:
            raise SteerValuesError("matrix() takes one value per slot (shape [k]).")
        s = s.to(device=self.device, dtype=self.dtype)
        return torch.einsum("k,kdr,ker->de", s, self.p1, self.p2)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SteerTransform):
            return NotImplemented
        return (
            self.p1.dtype == other.p1.dtype
            and self.p1.shape == other.p1.shape
            and torch.equal(self.p1.cpu(), other.p1.cpu())
            and torch.equal(self.p2.cpu(), other.p2.cpu())
            and self.epsilon == other.epsilon
            and self.base_model == other.base_model
            and self.slot_names == other.slot_names
            and self.dummy_slots == other.dummy_slots
            and dict(self.provenance) == dict(other.provenance)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"SteerTransform(k={self.num_steers}, d={self.hidden_size}, r={self.rank}, "
            f"epsilon={self.epsilon:g}, base_model={self.base_model!r}, "
            f"slot_names={self.slot_names!r}, dummy_slots={self.dummy_slots!r}, "
            f"dtype={self.dtype})"
        )


def steered_output_embeddings(
    embeddings: torch.Tensor, transform: SteerTransform, values: ValuesLike
) -> torch.Tensor:
    """Rows ``e'_v = (I + eps W) e_v`` of the steered output-embedding matrix (eq. 2).

    Materialises ``[V, d]``; use it for analysis, not for decoding (the hook steers ``h``).

    Parameters
    ----------
    embeddings
        Output embedding matrix ``E`` of shape ``[V, d]``.
    transform
        The steer.
    values
        ``k`` slot values.

    Returns
    -------
    torch.Tensor
        ``E' = E + eps E W^T`` of shape ``[V, d]``.
    """
    w = transform.matrix(values).to(device=embeddings.device, dtype=embeddings.dtype)
    return embeddings + transform.epsilon * embeddings @ w.T


def compose(*transforms: SteerTransform) -> SteerTransform:
    """Stack the slots of several steers into one, so that values add their matrices.

    Steering the result with values ``(s_1..., s_2...)`` gives ``P_{eps1 W1 + eps2 W2}`` (the
    paper's composition, Fig. 4b). Each transform keeps its own strength: the factors ``P2`` of
    the later transforms are rescaled by ``eps_j / eps_0`` where ``eps_0`` is the first one's.
    (Nesting two :func:`steer.steering` contexts instead applies the steers one after the other,
    which adds a second-order cross term.)

    Parameters
    ----------
    *transforms
        Steers for the same hidden size; slot names must be distinct across them.

    Returns
    -------
    SteerTransform
        One transform with the concatenated slots (its rank is the largest rank; smaller
        ranks are zero-padded, which does not change ``W``).
    """
    if not transforms:
        raise SteerInputError("compose() needs at least one transform.")
    d = transforms[0].hidden_size
    bad = [t.hidden_size for t in transforms if t.hidden_size != d]
    if bad:
        raise SteerDimensionError(f"cannot compose steers of hidden sizes {d} and {bad}.")
    eps0 = transforms[0].epsilon
    r = max(t.rank for t in transforms)
    dtype = transforms[0].dtype
    p1s: list[torch.Tensor] = []
    p2s: list[torch.Tensor] = []
    names: list[str] = []
    dummy: list[int] = []
    offset = 0
    for t in transforms:
        pad = (0, r - t.rank)
        p1s.append(torch.nn.functional.pad(t.p1.to(dtype=dtype, device="cpu"), pad))
        p2 = torch.nn.functional.pad(t.p2.to(dtype=dtype, device="cpu"), pad)
        p2s.append(p2 * (t.epsilon / eps0))
        names.extend(t.slot_names)
        dummy.extend(offset + i for i in t.dummy_slots)
        offset += t.num_steers
    if len(set(names)) != len(names):
        raise SteerInputError(f"slot names collide across the composed steers: {names}.")
    bases = sorted({t.base_model for t in transforms})
    return SteerTransform(
        torch.cat(p1s),
        torch.cat(p2s),
        eps0,
        bases[0] if len(bases) == 1 else " + ".join(bases),
        slot_names=tuple(names),
        dummy_slots=tuple(dummy),
        provenance={"composed_of": [t.base_model for t in transforms]},
    )
