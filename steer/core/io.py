"""Persistence: ``steer.safetensors`` (the factors) + ``steer_config.json`` (everything else).

Schema of ``steer_config.json`` (format ``lmsteer``, version 1):

- ``format``: ``"lmsteer"``; ``format_version``: 1
- ``num_steers`` (k), ``hidden_size`` (d), ``rank`` (r) (integers), ``dtype`` (``"float32"``, ...)
- ``epsilon``: the base strength eps_0 (a number)
- ``base_model``: identifier of the model the steer was trained on
- ``slot_names``: k names; ``dummy_slots``: indices of slots held at 1
- ``orientation``: a sentence stating the convention (W_i = P1_i P2_i^T acts on e_v)
- ``weights_sha256``: sha256 of ``steer.safetensors``; binds the two files (absent in steers
  saved before it was added, which are then not checked)
- ``provenance``: free-form JSON (versions, configs, data, seed); ``provenance.base_fingerprint``
  (written by :func:`steer.fit_steer`) records the base model's vocabulary, a few output-embedding
  row norms and the tokenizer's vocabulary hash (see :mod:`steer.core.compat`)

The safetensors file holds ``p1`` and ``p2`` (``[k, d, r]``) and repeats the shape fields in
its string metadata, so either file alone identifies the steer.

**Crash safety.** :func:`save_steer` writes the weights first and the config last, each
atomically (temporary file, then rename), and the config records the weights' sha256. An
interrupted save therefore leaves either the old pair or new weights with the old config, and
:func:`load_steer` refuses the latter (and any other mismatched pair) with a
:class:`~steer.errors.SteerFormatError` instead of pairing new weights with an old config.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lmecon.atomic import atomic_path, atomic_write_text
from lmecon.fetch import sha256_file
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
    with atomic_path(out / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata=st_meta)
        meta["weights_sha256"] = sha256_file(tmp)
    atomic_write_text(out / CONFIG_NAME, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def _require(meta: dict[str, Any], key: str, path: Path) -> Any:
    if key not in meta:
        raise SteerFormatError(f"{path}: missing key {key!r}.")
    return meta[key]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KINDS = {
    "int": ("an integer", _is_int),
    "number": ("a number", lambda v: _is_int(v) or isinstance(v, float)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "str_list": (
        "a list of strings",
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    ),  # fmt: skip
    "int_list": ("a list of integers", lambda v: isinstance(v, list) and all(map(_is_int, v))),
}


def _field(meta: dict[str, Any], key: str, kind: str, path: Path) -> Any:
    """``meta[key]``, refused with the key, the value and its type unless it is of ``kind``."""
    value = _require(meta, key, path)
    what, ok = _KINDS[kind]
    if not ok(value):
        raise SteerFormatError(
            f"{path}: {key!r} must be {what}; got {value!r} ({type(value).__name__}). Fix the "
            "field (numbers without quotes) or save the steer again with save_steer."
        )
    return value


def _read_config(cfg_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SteerFormatError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise SteerFormatError(f"{cfg_path} must hold a JSON object; got {type(meta).__name__}.")
    if _require(meta, "format", cfg_path) != FORMAT:
        raise SteerFormatError(f"{cfg_path}: format {meta['format']!r} is not {FORMAT!r}.")
    if _field(meta, "format_version", "int", cfg_path) > FORMAT_VERSION:
        raise SteerFormatError(
            f"{cfg_path}: format_version {meta['format_version']} is newer than this library's "
            f"{FORMAT_VERSION}; upgrade steer."
        )
    return meta


def _read_weights(w_path: Path, cfg_path: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SteerFormatError(
            f"{w_path} cannot be read ({exc}); the file is truncated or not a safetensors file. "
            "Copy it again or save the steer again."
        ) from exc
    if set(tensors) != {"p1", "p2"}:
        raise SteerFormatError(f"{w_path}: expected tensors p1 and p2; found {sorted(tensors)}.")
    for name in ("p1", "p2"):
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n_bad = int((~torch.isfinite(t)).sum())
            raise SteerFormatError(
                f"{w_path}: {name} has {n_bad} non-finite value(s) (NaN/inf), so the steer "
                "cannot steer; retrain it (lower lr or epsilon) or restore an intact copy."
            )
    want = meta.get("weights_sha256")
    if want is not None:
        got = sha256_file(w_path)
        if got != _field(meta, "weights_sha256", "str", cfg_path):
            raise SteerFormatError(
                f"{w_path} does not match {cfg_path} (sha256 {got[:12]}..., the config records "
                f"{str(want)[:12]}...): the two files come from different saves (an interrupted "
                "save_steer, or a copied file); save the steer again."
            )
    return tensors


def load_steer(
    path: str | Path,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    model: nn.Module | None = None,
    tokenizer: Any = None,
    allow_other_model: bool = False,
) -> SteerTransform:
    """Read a steer written by :func:`save_steer`.

    Parameters
    ----------
    path
        The directory (or its ``steer_config.json``).
    device, dtype
        Optional placement of the factors (default: CPU, stored dtype).
    model, tokenizer
        The model (and tokenizer) the steer will be used with: checked against the steer's
        hidden size and recorded base model (:func:`steer.core.compat.check_base_model`).
    allow_other_model
        With ``model``: accept a model other than the recorded base model and re-record the
        steer for it (:func:`steer.core.compat.rebase`), so later calls need no override.

    Returns
    -------
    SteerTransform
        Equal to the saved transform when ``device`` and ``dtype`` are left unset (and the
        base model is not overridden).

    Raises
    ------
    SteerFormatError
        If a file is missing, truncated or malformed, a field has the wrong type, the factors are
        not finite, or the config and the weights disagree (different saves).
    BaseModelMismatchError
        If ``model``/``tokenizer`` are not the recorded base model's and ``allow_other_model`` is
        False.
    """
    p = Path(path)
    folder = p.parent if p.name == CONFIG_NAME else p
    cfg_path, w_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for f in (cfg_path, w_path):
        if not f.is_file():
            raise SteerFormatError(f"{f} does not exist; is {folder} a directory from save_steer?")
    meta = _read_config(cfg_path)
    tensors = _read_weights(w_path, cfg_path, meta)
    keys = ("num_steers", "hidden_size", "rank")
    shape = tuple(_field(meta, key, "int", cfg_path) for key in keys)
    for name in ("p1", "p2"):
        if tuple(tensors[name].shape) != shape:
            raise SteerFormatError(
                f"{w_path}: {name} has shape {tuple(tensors[name].shape)} but {cfg_path} says "
                f"[k, d, r] = {list(shape)}."
            )
    provenance = meta.get("provenance", {})
    if not isinstance(provenance, dict):
        raise SteerFormatError(f"{cfg_path}: 'provenance' must be a JSON object.")
    t = SteerTransform(
        tensors["p1"],
        tensors["p2"],
        float(_field(meta, "epsilon", "number", cfg_path)),
        _field(meta, "base_model", "str", cfg_path),
        slot_names=tuple(_field(meta, "slot_names", "str_list", cfg_path)),
        dummy_slots=tuple(_field(meta, "dummy_slots", "int_list", cfg_path)),
        provenance=provenance,
    )
    if model is not None:
        t = _for_model(t, model, tokenizer, allow_other_model, folder)
    return t if device is None and dtype is None else t.to(device=device, dtype=dtype)


def _for_model(
    t: SteerTransform, model: nn.Module, tokenizer: Any, allow_other_model: bool, folder: Path
) -> SteerTransform:
    from steer.core.compat import check_base_model, rebase
    from steer.core.hooks import check_dimension

    check_dimension(model, t)
    check_base_model(model, t, tokenizer, allow_other_model=allow_other_model, where=str(folder))
    return rebase(t, model, tokenizer) if allow_other_model else t
