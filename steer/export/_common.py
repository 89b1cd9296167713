"""Shared pieces of the exporters: checks, the head's module name and the exact folded factors.

Every exporter writes the same linear map. With row hidden states ``h`` (``[..., d]``), the
output embedding matrix ``E`` (``[V, d]``, the LM head's weight) and slot values ``s``, the hooked
steer computes (:func:`steer.core.transform.apply_steer`)

    logits = (h + eps * sum_i s_i (h P1_i) P2_i^T) E^T (+ the head's bias, if any)
           = h E^T + eps * (h A) (E B^T)^T,       A = [s_1 P1_1, ..., s_k P1_k]  (d x k r),
                                                  B = [P2_1, ..., P2_k]^T        (k r x d)
           = h (E + eps * E M^T)^T,               M = A B = sum_i s_i P1_i P2_i^T = W (d x d).

A LoRA on the head stores ``lora_A = A^T`` and ``lora_B = E B^T`` with scale ``eps``; a baked head
stores ``E + eps * E M^T`` (:func:`steer.core.transform.steered_output_embeddings`). Slots whose
value is zero are dropped; when the stacked rank ``k r`` exceeds ``d`` the exporters use the
exact rank-``d`` form ``A = M``, ``B = I`` instead. Everything is computed in float64 and cast
once to the head's dtype.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmecon.atomic import atomic_write_text
from lmecon.provenance import library_versions, utc_now
from steer.core.compat import FINGERPRINT_KEY, base_fingerprint, check_base_model
from steer.core.hooks import check_dimension, head_weight, output_head
from steer.core.transform import SteerTransform, ValuesLike, as_values
from steer.errors import SteerValuesError

__all__ = [
    "EXPORT_RECORD",
    "baked_head",
    "check_pair",
    "folded_factors",
    "head_module_name",
    "record",
    "resolve_values",
    "slot_label",
    "steer_matrix",
    "write_record",
]

EXPORT_RECORD = "steer_export.json"
"""Name of the JSON record every exporter writes next to its artefact."""


def resolve_values(transform: SteerTransform, values: ValuesLike | float | None) -> torch.Tensor:
    """Return ``k`` slot values (float64): one number for the labelled slots, or all ``k``.

    Parameters
    ----------
    transform
        The steer.
    values
        ``None`` (labelled slots 1, dummy slots 1), one number ``s`` (labelled slots ``s``, dummy
        slots 1, as :meth:`SteerTransform.values`), or ``k`` values.

    Returns
    -------
    torch.Tensor
        Shape ``[k]``.
    """
    if values is None:
        values = transform.values(1.0)
    elif isinstance(values, int | float):
        values = transform.values(float(values))
    s = as_values(values, transform.num_steers)  # type: ignore[arg-type]
    if s.dim() != 1:
        raise SteerValuesError(
            "an exported steer has one fixed value per slot (shape [k]); per-sequence values "
            f"(shape {tuple(s.shape)}) exist only for the hooked steer."
        )
    return s


def check_pair(
    model: nn.Module,
    transform: SteerTransform,
    tokenizer: Any = None,
    *,
    allow_other_model: bool = False,
) -> None:
    """Refuse a model the steer was not trained for (hidden size, recorded base model)."""
    output_head(model)
    check_dimension(model, transform)
    check_base_model(
        model, transform, tokenizer, allow_other_model=allow_other_model, where="export"
    )


def head_module_name(model: nn.Module) -> str:
    """Return the qualified name of the LM head module (``lm_head``, ``embed_out``, ...)."""
    head = output_head(model)
    for name, module in model.named_modules():
        if module is head:
            return name
    raise AssertionError("the output head is not a submodule of the model")  # pragma: no cover


def folded_factors(
    transform: SteerTransform, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Return ``(A, B)`` in float64 with ``sum_i s_i P1_i P2_i^T = A B`` (see the module notes).

    Returns ``None`` when every value is zero (the steer changes nothing).
    """
    active = [i for i in range(transform.num_steers) if float(values[i]) != 0.0]
    if not active:
        return None
    d = transform.hidden_size
    p1 = transform.p1.detach().to("cpu", torch.float64)[active]
    p2 = transform.p2.detach().to("cpu", torch.float64)[active]
    s = values[active].to(torch.float64)
    a = (p1 * s[:, None, None]).permute(1, 0, 2).reshape(d, -1)  # [d, ka r]
    b = p2.permute(0, 2, 1).reshape(-1, d)  # [ka r, d]
    if a.shape[1] > d:
        return a @ b, torch.eye(d, dtype=torch.float64)
    return a, b


def steer_matrix(transform: SteerTransform, values: torch.Tensor) -> torch.Tensor:
    """``M = sum_i s_i P1_i P2_i^T`` in float64 (zeros when every value is zero)."""
    ab = folded_factors(transform, values)
    if ab is None:
        d = transform.hidden_size
        return torch.zeros(d, d, dtype=torch.float64)
    return ab[0] @ ab[1]


def baked_head(model: nn.Module, transform: SteerTransform, values: torch.Tensor) -> torch.Tensor:
    """Return the steered head weight ``E + eps * E M^T`` in the head's dtype and device."""
    e = head_weight(model).detach()
    e64 = e.to("cpu", torch.float64)
    m = steer_matrix(transform, values)
    return (e64 + transform.epsilon * (e64 @ m.T)).to(device=e.device, dtype=e.dtype)


def record(
    transform: SteerTransform,
    values: torch.Tensor,
    fmt: str,
    model: nn.Module | None,
    tokenizer: Any,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Describe an export as JSON-compatible data (steer, values, base model, versions)."""
    vals = [float(x) for x in values.tolist()]
    rec: dict[str, Any] = {
        "format": fmt,
        "created": utc_now(),
        "steer": {
            "base_model": transform.base_model,
            "num_steers": transform.num_steers,
            "hidden_size": transform.hidden_size,
            "rank": transform.rank,
            "epsilon": transform.epsilon,
            "slot_names": list(transform.slot_names),
            "dummy_slots": list(transform.dummy_slots),
            "provenance": _jsonable(dict(transform.provenance)),
        },
        "values": vals,
        "effective_epsilon": [transform.epsilon * v for v in vals],
        "versions": library_versions(),
    }
    if model is not None:
        rec["base_fingerprint"] = base_fingerprint(model, tokenizer)
    rec["steer_base_fingerprint"] = transform.provenance.get(FINGERPRINT_KEY)
    rec.update(dict(extra or {}))
    return rec


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def write_record(out: Path, rec: Mapping[str, Any]) -> Path:
    """Write ``rec`` as ``steer_export.json`` in ``out`` (atomically)."""
    return atomic_write_text(out / EXPORT_RECORD, json.dumps(rec, indent=2, default=str) + "\n")


def slot_label(transform: SteerTransform, values: Sequence[float]) -> str:
    """``"sentiment=5, dummy=1"``: the values by slot name."""
    return ", ".join(f"{n}={v:g}" for n, v in zip(transform.slot_names, values, strict=True))
