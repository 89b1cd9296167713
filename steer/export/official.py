"""Read and write the checkpoint layout of the official LM-Steer code (safe loading only).

The reference repository (github.com/Glaciohound/LM-Steer, ``experiments/training/train.py`` at
commit 3cd7897) saves ``torch.save([args, model.state_dict(), n_steps], ckpt_name)``, where
``args`` is the ``argparse.Namespace`` of ``lm_steer/arguments.py`` and the state dict of the
``multiply`` adaptor (``lm_steer/models/steers.py``, ``Projected_Adaptor``) is
``{"projector1": [k, d, r], "projector2": [k, d, r]}``. Its forward pass is
``state + epsilon * sum_i s_i (state @ projector1_i) @ projector2_i^T`` followed by the LM head,
which is exactly :func:`steer.core.transform.apply_steer`: ``p1 = projector1``,
``p2 = projector2``, and ``epsilon``, ``num_steers``, ``rank``, ``dummy_steer`` come from
``args``. The official generation scripts read only ``ckpt[1]`` (and ``ckpt[2]`` to resume).

**Safe loading.** :func:`load_official` reads with ``torch.load(weights_only=True)``, allowing
exactly one extra class, ``argparse.Namespace`` (a plain attribute bag), so a checkpoint cannot
run code while it is read; anything else in the pickle is refused with
:class:`~steer.export.errors.ExportFormatError`. :func:`save_official` writes ``args`` as a plain
dict (which the official scripts ignore and which ``torch.load``'s default ``weights_only=True``
of torch >= 2.6 accepts), so the file loads in the official code without unpickling any class.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmecon.atomic import atomic_path
from lmecon.fetch import sha256_file
from steer.core.compat import rebase
from steer.core.hooks import check_dimension
from steer.core.transform import SteerTransform
from steer.export.errors import ExportFormatError, UnsupportedExportError

__all__ = ["OFFICIAL_ARGS", "load_official", "save_official"]

OFFICIAL_ARGS: dict[str, Any] = {
    "model_name": "EleutherAI/gpt-neo-2.7B",
    "adaptor_class": "multiply",
    "adapted_component": "final_layer",
    "epsilon": 1e-3,
    "init_var": 1e-2,
    "rank": 1000,
    "num_steers": 10,
    "temperature": 1,
    "cuda": False,
    "low_resource_mode": False,
    "data_dir": None,
    "dataset_name": None,
    "eval_file": None,
    "output_file": None,
    "data_size": None,
    "split": None,
    "regularization": 0,
    "optimizer": "Adam",
    "lr": 1e-3,
    "gamma_mean": 0.99,
    "n_steps": 10000,
    "seed": 0,
    "ckpt_name": None,
    "max_length": 256,
    "batch_size": 32,
    "log_step": 500,
    "subset": None,
    "dummy_steer": None,
    "training_steer": 0,
    "eval_size": None,
    "steer_values": None,
    "verbose": False,
    "top_p": 1,
    "transfer_from": None,
}
"""The defaults of ``lm_steer/arguments.py`` (reference repository, commit 3cd7897)."""


def save_official(
    transform: SteerTransform,
    path: str | Path,
    *,
    n_steps: int | None = None,
    args: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``transform`` as an official LM-Steer checkpoint ``[args, state_dict, n_steps]``.

    Parameters
    ----------
    transform
        The steer. The official layout has one dummy slot at most (``args.dummy_steer``).
    path
        The checkpoint file (``.pt``); written atomically.
    n_steps
        Training steps recorded in the checkpoint (default: the steer's provenance
        ``train_config.steps`` as written by :func:`steer.fit_steer`, else 0). The training
        settings ``lr``, ``regularization``, ``batch_size``, ``max_length``, ``seed`` and
        ``init_var`` are copied into ``args`` from the provenance too.
    args
        Extra fields for the ``args`` dict (they override the derived ones).

    Returns
    -------
    pathlib.Path
        The file. The official scripts load it with ``torch.load(ckpt_name)`` and
        ``model.load_state_dict(ckpt[1])`` (``--adaptor_class multiply --adapted_component
        final_layer`` with the ``num_steers``, ``rank`` and ``epsilon`` stored in ``args``).

    Raises
    ------
    UnsupportedExportError
        If the steer has more than one dummy slot.
    """
    if len(transform.dummy_slots) > 1:
        raise UnsupportedExportError(
            f"the steer has {len(transform.dummy_slots)} dummy slots {transform.dummy_slots}; the "
            "official layout records one (args.dummy_steer). Export the steers separately."
        )
    prov = dict(transform.provenance)
    labelled = transform.labelled_slots
    blob: dict[str, Any] = dict(OFFICIAL_ARGS)
    blob.update(
        model_name=transform.base_model,
        epsilon=transform.epsilon,
        rank=transform.rank,
        num_steers=transform.num_steers,
        dummy_steer=transform.dummy_slots[0] if transform.dummy_slots else None,
        training_steer=labelled[0] if labelled else 0,
        slot_names=list(transform.slot_names),
        exported_by="steer.export.save_official",
    )
    train_cfg = prov.get("train_config")
    train_cfg = train_cfg if isinstance(train_cfg, Mapping) else {}
    steer_cfg = prov.get("steer_config")
    steer_cfg = steer_cfg if isinstance(steer_cfg, Mapping) else {}
    for key in ("lr", "regularization", "batch_size", "max_length", "seed"):
        if isinstance(train_cfg.get(key), int | float):
            blob[key] = train_cfg[key]
    if isinstance(steer_cfg.get("init_var"), int | float):
        blob["init_var"] = steer_cfg["init_var"]
    recorded = train_cfg.get("steps", prov.get("steps", 0))
    steps = n_steps if n_steps is not None else int(recorded or 0)
    blob["n_steps"] = steps
    blob.update(dict(args or {}))
    state = {
        "projector1": transform.p1.detach().to("cpu", torch.float32).contiguous(),
        "projector2": transform.p2.detach().to("cpu", torch.float32).contiguous(),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save([blob, state, steps], tmp)
    return target


def _safe_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure means: not a safe official checkpoint
        raise ExportFormatError(
            f"{path} could not be read as an official LM-Steer checkpoint with safe loading "
            f"(torch.load(weights_only=True), only argparse.Namespace allowed): {exc}. Files "
            "that need other classes are refused on purpose; re-save the projectors as plain "
            "tensors (or safetensors) in a trusted environment."
        ) from exc


def _args_dict(obj: Any, path: Path) -> dict[str, Any]:
    if isinstance(obj, argparse.Namespace):
        return dict(vars(obj))
    if isinstance(obj, Mapping):
        return {str(k): v for k, v in obj.items()}
    if obj is None:
        return {}
    raise ExportFormatError(f"{path}: args (item 0) is a {type(obj).__name__}, not a namespace.")


def _parse(raw: Any, path: Path) -> tuple[dict[str, Any], Mapping[str, Any], int | None]:
    """Accept ``[args, state, steps]`` (train.py) or a bare state dict (``steer.state_dict()``)."""
    if isinstance(raw, list | tuple) and len(raw) >= 2 and isinstance(raw[1], Mapping):
        steps = raw[2] if len(raw) > 2 and isinstance(raw[2], int) else None
        return _args_dict(raw[0], path), raw[1], steps
    if isinstance(raw, Mapping) and "projector1" in raw:
        cfg = raw.get("config")
        return _args_dict(cfg, path) if isinstance(cfg, Mapping) else {}, raw, None
    raise ExportFormatError(
        f"{path} is not an official LM-Steer checkpoint: expected [args, state_dict, n_steps] "
        "(experiments/training/train.py) or a dict with 'projector1'/'projector2'; found "
        f"{type(raw).__name__}."
    )


def load_official(
    path: str | Path,
    *,
    base_model: str | None = None,
    epsilon: float | None = None,
    slot_names: Sequence[str] = (),
    dummy_slots: Sequence[int] | None = None,
    model: nn.Module | None = None,
    tokenizer: Any = None,
) -> SteerTransform:
    """Read an official LM-Steer checkpoint (``multiply`` adaptor) as a :class:`SteerTransform`.

    Parameters
    ----------
    path
        The ``.pt`` file written by the reference repository's ``train.py`` (or
        :func:`save_official`); a bare ``{"projector1", "projector2"}`` dict is accepted too.
    base_model
        The model the steer belongs to (default: ``args.model_name``; required when the
        checkpoint carries no args).
    epsilon
        The base strength (default: ``args.epsilon``; the official default 1e-3 when absent).
    slot_names
        Names of the ``k`` slots (default ``steer_0``, ...; ``args.slot_names`` if present).
    dummy_slots
        Dummy slots (default: ``[args.dummy_steer]`` when set).
    model, tokenizer
        The model (and tokenizer) the steer will be used with: the hidden size is checked and
        the steer is recorded for it (:func:`steer.core.compat.rebase`), so later uses are
        checked against this model. The official format records no fingerprint, so this is
        the point where you vouch for the pairing.

    Returns
    -------
    SteerTransform
        ``p1 = projector1``, ``p2 = projector2`` (float32), with provenance naming the file, its
        sha256 and the checkpoint's args.

    Raises
    ------
    ExportFormatError
        If the file needs unpickling beyond tensors and ``argparse.Namespace``, is not in the
        official layout, is another adaptor class (``add``, ``offset``) or another component
        (``input_embedding``), or its shapes or values are inconsistent.
    SteerDimensionError
        If ``model`` feeds its head another hidden size.
    """
    p = Path(path)
    if not p.is_file():
        raise ExportFormatError(f"{p} does not exist (expected an official LM-Steer .pt file).")
    args, state, steps = _parse(_safe_load(p), p)
    adaptor = args.get("adaptor_class", "multiply")
    component = args.get("adapted_component", "final_layer")
    if adaptor != "multiply" or component != "final_layer":
        raise ExportFormatError(
            f"{p}: adaptor_class={adaptor!r}, adapted_component={component!r}; only the paper's "
            "steer (multiply on the final layer) is a low-rank output-embedding steer."
        )
    tensors = []
    for key in ("projector1", "projector2"):
        t = state.get(key)
        if not isinstance(t, torch.Tensor) or t.dim() != 3 or not t.is_floating_point():
            raise ExportFormatError(f"{p}: {key} must be a float tensor [k, d, r]; got {t!r:.80}.")
        tensors.append(t.detach().to("cpu", torch.float32))
    p1, p2 = tensors
    if p1.shape != p2.shape:
        raise ExportFormatError(f"{p}: projector shapes differ: {p1.shape} vs {p2.shape}.")
    k, _, r = p1.shape
    for key, want in (("num_steers", k), ("rank", r)):
        got = args.get(key)
        if got is not None and int(got) != int(want):
            raise ExportFormatError(f"{p}: args.{key} = {got} but the projectors have {want}.")
    eps = float(epsilon if epsilon is not None else args.get("epsilon", 1e-3))
    if not math.isfinite(eps) or eps == 0.0:
        raise ExportFormatError(f"{p}: epsilon {eps!r} must be finite and non-zero.")
    name = base_model or args.get("model_name")
    if not name:
        raise ExportFormatError(f"{p} records no model_name; pass base_model=.")
    if dummy_slots is None:
        dummy = args.get("dummy_steer")
        dummy_slots = () if dummy is None else (int(dummy),)
    names = tuple(slot_names) or tuple(args.get("slot_names") or ())
    clean_args = {k2: v for k2, v in args.items() if isinstance(v, str | int | float | bool)}
    prov = {
        "imported_from": "LM-Steer official checkpoint",
        "file": p.name,
        "sha256": sha256_file(p),
        "steps": steps,
        "official_args": clean_args,
    }
    try:
        t = SteerTransform(
            p1, p2, eps, str(name), slot_names=names, dummy_slots=tuple(dummy_slots),
            provenance=prov,
        )  # fmt: skip
    except ValueError as exc:
        raise ExportFormatError(f"{p}: {exc}") from exc
    if model is not None:
        check_dimension(model, t)
        t = rebase(t, model, tokenizer)
    return t
