"""Persistence: ``steer.safetensors`` (the factors) + ``steer_config.json`` (everything else).

Schema of ``steer_config.json`` (format ``lmsteer``, version 1):

- ``format``: ``"lmsteer"``; ``format_version``: 1
- ``num_steers`` (k), ``hidden_size`` (d), ``rank`` (r), ``dtype`` (``"float32"``, ...)
- ``epsilon``: the base strength eps_0
- ``base_model``: identifier of the model the steer was trained on
- ``slot_names``: k names; ``dummy_slots``: indices of slots held at 1
- ``orientation``: a sentence stating the convention (W_i = P1_i P2_i^T acts on e_v)
- ``provenance``: free-form JSON (versions, configs, data, seed)

The safetensors file holds ``p1`` and ``p2`` (``[k, d, r]``) and repeats the shape fields in
its string metadata, so either file alone identifies the steer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from steer.core.transform import SteerTransform
from steer.errors import SteerFormatError

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "load_steer", "save_steer"]

WEIGHTS_NAME = "steer.safetensors"
CONFIG_NAME = "steer_config.json"
FORMAT = "lmsteer"
FORMAT_VERSION = 1
ORIENTATION = (
    "W_i = P1_i @ P2_i.T acts on output embeddings as e'_v = (I + eps * sum_i s_i W_i) e_v; "
    "equivalently h' = h + eps * sum_i s_i (h @ P1_i) @ P2_i.T for row hidden states h."
)


def save_steer(transform: SteerTransform, path: str | Path) -> Path:
    """Write a steer to the directory ``path`` (created if needed).

    Parameters
    ----------
    transform
        The steer.
    path
        Target directory; ``steer.safetensors`` and ``steer_config.json`` are (over)written.

    Returns
    -------
    pathlib.Path
        The directory.

    Examples
    --------
    >>> save_steer(fit.transform, "out/sentiment-steer")  # doctest: +SKIP
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    dtype = str(transform.dtype).removeprefix("torch.")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "num_steers": transform.num_steers,
        "hidden_size": transform.hidden_size,
        "rank": transform.rank,
        "dtype": dtype,
        "epsilon": transform.epsilon,
        "base_model": transform.base_model,
        "slot_names": list(transform.slot_names),
        "dummy_slots": list(transform.dummy_slots),
        "orientation": ORIENTATION,
        "provenance": dict(transform.provenance),
    }
    tensors = {
        "p1": transform.p1.detach().cpu().contiguous(),
        "p2": transform.p2.detach().cpu().contiguous(),
    }
    st_meta = {k: str(meta[k]) for k in ("format", "num_steers", "hidden_size", "rank", "dtype")}
    save_file(tensors, str(out / WEIGHTS_NAME), metadata=st_meta)
    (out / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _require(meta: dict[str, Any], key: str, path: Path) -> Any:
    if key not in meta:
        raise SteerFormatError(f"{path}: missing key {key!r}.")
    return meta[key]


def load_steer(
    path: str | Path, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> SteerTransform:
    """Read a steer written by :func:`save_steer`.

    Parameters
    ----------
    path
        The directory (or its ``steer_config.json``).
    device, dtype
        Optional placement of the factors (default: CPU, stored dtype).

    Returns
    -------
    SteerTransform
        Equal to the saved transform when ``device`` and ``dtype`` are left unset.

    Raises
    ------
    SteerFormatError
        If a file is missing, or the config and the weights disagree.
    """
    p = Path(path)
    folder = p.parent if p.name == CONFIG_NAME else p
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for f in (cfg_path, w_path):
        if not f.is_file():
            raise SteerFormatError(f"{f} does not exist; is {folder} a directory from save_steer?")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise SteerFormatError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if _require(meta, "format", cfg_path) != FORMAT:
        raise SteerFormatError(f"{cfg_path}: format {meta['format']!r} is not {FORMAT!r}.")
    if int(_require(meta, "format_version", cfg_path)) > FORMAT_VERSION:
        raise SteerFormatError(
            f"{cfg_path}: format_version {meta['format_version']} is newer than this library's "
            f"{FORMAT_VERSION}; upgrade steer."
        )
    tensors = load_file(str(w_path))
    if set(tensors) != {"p1", "p2"}:
        raise SteerFormatError(f"{w_path}: expected tensors p1 and p2; found {sorted(tensors)}.")
    shape = (
        int(_require(meta, "num_steers", cfg_path)),
        int(_require(meta, "hidden_size", cfg_path)),
        int(_require(meta, "rank", cfg_path)),
    )
    for name in ("p1", "p2"):
        if tuple(tensors[name].shape) != shape:
            raise SteerFormatError(
                f"{w_path}: {name} has shape {tuple(tensors[name].shape)} but {cfg_path} says "
                f"[k, d, r] = {list(shape)}."
            )
    t = SteerTransform(
        tensors["p1"],
        tensors["p2"],
        float(_require(meta, "epsilon", cfg_path)),
        str(_require(meta, "base_model", cfg_path)),
        slot_names=tuple(_require(meta, "slot_names", cfg_path)),
        dummy_slots=tuple(int(i) for i in _require(meta, "dummy_slots", cfg_path)),
        provenance=meta.get("provenance", {}),
    )
    return t if device is None and dtype is None else t.to(device=device, dtype=dtype)
