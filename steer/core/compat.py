"""Which model a steer belongs to, and what a model can read.

A steer acts on one model's output embeddings: applied to another model of the same width it runs
without error and steers nonsense. :func:`fit_steer <steer.train.fit_steer>` therefore records a
*base fingerprint* in the transform's provenance (key ``base_fingerprint``, written to
``steer_config.json`` by :func:`~steer.core.io.save_steer`):

- ``model``: the model's ``config._name_or_path`` (informative only: aliases and paths differ);
- ``head``: vocabulary size ``V``, hidden size ``d`` and the norms of a few fixed rows of the
  output embedding matrix (compared with a relative tolerance of 1e-2, so the same model in
  another dtype still matches, a different or fine-tuned model does not);
- ``tokenizer``: sha256 of the tokenizer's sorted vocabulary (token -> id).

:func:`check_base_model` compares a model (and tokenizer) with that record and raises
:class:`~steer.errors.BaseModelMismatchError`; every entry point that pairs a steer with a model
calls it and takes ``allow_other_model=True`` as the explicit override. Steers without a record
(saved before the record existed, or built by hand) are not checked.

:func:`check_sequences` turns token ids outside the model's vocabulary and sequences longer
than its context into one :class:`~steer.errors.SteerInputError` sentence instead of an
``IndexError`` deep inside torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from steer.core.hooks import head_weight
from steer.core.transform import SteerTransform
from steer.errors import BaseModelMismatchError, SteerInputError

__all__ = [
    "FINGERPRINT_KEY",
    "base_fingerprint",
    "check_base_model",
    "check_sequences",
    "context_length",
    "head_fingerprint",
    "rebase",
    "tokenizer_fingerprint",
]

FINGERPRINT_KEY = "base_fingerprint"
_PROBES = 8
_RTOL = 1e-2
_TOKENIZER_CACHE: weakref.WeakKeyDictionary[Any, tuple[int, str]] = weakref.WeakKeyDictionary()
"""Fingerprints by tokenizer, with its length (a tokenizer that gained tokens is re-hashed)."""


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    name = getattr(cfg, "_name_or_path", "") or getattr(cfg, "name_or_path", "")
    return str(name) or type(model).__name__


def tokenizer_fingerprint(tokenizer: Any) -> str | None:
    """Return ``"sha256:<16 hex>"`` of the tokenizer's sorted vocabulary, or ``None``.

    Parameters
    ----------
    tokenizer
        A transformers tokenizer (anything with ``get_vocab()``).

    Returns
    -------
    str or None
        ``None`` when the tokenizer has no ``get_vocab``.
    """
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if not callable(get_vocab):
        return None
    try:
        size = len(tokenizer)
    except TypeError:
        size = -1
    try:
        cached = _TOKENIZER_CACHE.get(tokenizer)
    except TypeError:
        cached = None
    if cached is not None and cached[0] == size >= 0:
        return cached[1]
    items = sorted((str(k), int(v)) for k, v in get_vocab().items())
    digest = hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()
    out = f"sha256:{digest[:16]}"
    with contextlib.suppress(TypeError):
        _TOKENIZER_CACHE[tokenizer] = (size, out)
    return out


def head_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Vocabulary size, hidden size and the norms of a few fixed rows of the LM head.

    Parameters
    ----------
    model
        A causal LM with an output-embedding module.

    Returns
    -------
    dict
        ``vocab_size``, ``hidden_size``, ``probe_rows`` and ``probe_norms`` (empty lists when
        the weight cannot be read, e.g. on the meta device).
    """
    w = head_weight(model).detach()
    v, d = int(w.shape[0]), int(w.shape[1])
    rows = sorted({int(i) for i in torch.linspace(0, v - 1, _PROBES).round().long().tolist()})
    try:
        norms = [float(f"{x:.6g}") for x in w[rows].float().norm(dim=1).cpu().tolist()]
    except (RuntimeError, NotImplementedError):
        rows, norms = [], []
    return {"vocab_size": v, "hidden_size": d, "probe_rows": rows, "probe_norms": norms}


def base_fingerprint(model: nn.Module, tokenizer: Any = None) -> dict[str, Any]:
    """Return the record :func:`check_base_model` compares against (see the module docstring).

    Parameters
    ----------
    model
        The base model.
    tokenizer
        Its tokenizer (``None``: the tokenizer is not recorded).

    Returns
    -------
    dict
        ``model``, ``head`` and ``tokenizer`` (JSON-compatible).
    """
    return {
        "model": _model_name(model),
        "head": head_fingerprint(model),
        "tokenizer": None if tokenizer is None else tokenizer_fingerprint(tokenizer),
    }


def _head_problem(recorded: Mapping[str, Any], model: nn.Module) -> str | None:
    cur = head_fingerprint(model)
    if recorded.get("vocab_size") not in (None, cur["vocab_size"]):
        return f"vocabulary has {cur['vocab_size']} tokens, not {recorded['vocab_size']}"
    rows, norms = recorded.get("probe_rows") or [], recorded.get("probe_norms") or []
    if not rows or rows != cur["probe_rows"] or len(norms) != len(cur["probe_norms"]):
        return None
    for row, a, b in zip(rows, norms, cur["probe_norms"], strict=True):
        if not math.isclose(float(a), float(b), rel_tol=_RTOL, abs_tol=1e-6):
            return (
                f"output embeddings differ (row {row} has norm {b:.4g}, the recorded base "
                f"model's {float(a):.4g})"
            )
    return None


def check_base_model(
    model: nn.Module,
    transform: SteerTransform,
    tokenizer: Any = None,
    *,
    allow_other_model: bool = False,
    where: str = "",
) -> None:
    """Raise if ``transform`` was trained for another base model (or tokenizer) than these.

    Parameters
    ----------
    model
        The model the steer is about to be used with.
    transform
        The steer; steers without a ``base_fingerprint`` in their provenance are not checked.
    tokenizer
        The tokenizer used with it (``None``: not checked).
    allow_other_model
        The explicit override: skip the check.
    where
        Prefix of the message (e.g. the steer's folder).

    Raises
    ------
    BaseModelMismatchError
        If the vocabulary size, the probed output-embedding rows or the tokenizer's vocabulary
        differ from the record.
    """
    rec = transform.provenance.get(FINGERPRINT_KEY)
    if allow_other_model or not isinstance(rec, Mapping):
        return
    problems: list[str] = []
    head = rec.get("head")
    if isinstance(head, Mapping):
        problem = _head_problem(head, model)
        if problem is not None:
            problems.append(problem)
    want_tok = rec.get("tokenizer")
    if tokenizer is not None and isinstance(want_tok, str):
        got_tok = tokenizer_fingerprint(tokenizer)
        if got_tok is not None and got_tok != want_tok:
            problems.append(f"tokenizer's vocabulary differs ({got_tok}, recorded {want_tok})")
    if problems:
        prefix = f"{where}: " if where else ""
        name = _model_name(model)
        other = "another model named" if name == transform.base_model else ""
        raise BaseModelMismatchError(
            f"{prefix}the steer was trained for {transform.base_model!r} but is used with "
            f"{other or 'model'} {name!r}, whose {'; '.join(problems)}. Use the model (and "
            "tokenizer) it was trained for; to apply it anyway, pass allow_other_model=True "
            "(attach, steering, generate, load_steer; CLI: --allow-other-model) or re-record it "
            "once with steer.core.compat.rebase(transform, model, tokenizer)."
        )


def rebase(transform: SteerTransform, model: nn.Module, tokenizer: Any = None) -> SteerTransform:
    """Return ``transform`` re-recorded for ``model`` (the override made once, explicitly).

    The old record is kept under ``provenance["rebased_from"]``; later checks compare with
    ``model``. Factors, strength and names are unchanged.

    Parameters
    ----------
    transform
        The steer.
    model, tokenizer
        The model (and tokenizer) the steer is to be used with from now on.

    Returns
    -------
    SteerTransform
        A new transform.
    """
    prov = dict(transform.provenance)
    old = prov.get(FINGERPRINT_KEY)
    if old is not None:
        prov["rebased_from"] = old
    prov[FINGERPRINT_KEY] = base_fingerprint(model, tokenizer)
    return dataclasses.replace(transform, provenance=prov)


def context_length(model: nn.Module) -> int | None:
    """Positions the model can attend to (``max_position_embeddings``/``n_positions``)."""
    cfg = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def _vocab_size(model: nn.Module) -> int:
    v = int(head_weight(model).shape[0])
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    n = getattr(emb, "num_embeddings", None)
    return min(v, int(n)) if isinstance(n, int) else v


def check_sequences(
    model: nn.Module,
    seqs: Sequence[Sequence[int]],
    *,
    what: str = "text",
    new_tokens: int = 0,
    fix: str = "shorten it",
) -> None:
    """Raise one sentence if a sequence has ids outside the vocabulary or exceeds the context.

    Parameters
    ----------
    model
        The model that will read the sequences.
    seqs
        Token ids, one list per text.
    what
        What a sequence is, for the message ("text", "prompt").
    new_tokens
        Positions still to be generated after each sequence.
    fix
        How to fix a sequence that is too long (a phrase).

    Raises
    ------
    SteerInputError
        If a token id is >= the vocabulary size (a tokenizer of another model), or a sequence
        plus ``new_tokens`` is longer than the model's context.
    """
    vocab = _vocab_size(model)
    ctx = context_length(model)
    for i, s in enumerate(seqs):
        top = max(s, default=0)
        if top >= vocab or min(s, default=0) < 0:
            raise SteerInputError(
                f"{what} {i} has token id {top}, but the model's vocabulary has {vocab} tokens; "
                "use the tokenizer that belongs to this model."
            )
        if ctx is not None and len(s) + new_tokens > ctx:
            extra = f" + {new_tokens} new tokens" if new_tokens else ""
            raise SteerInputError(
                f"{what} {i} needs {len(s)} tokens{extra}, but the model's context holds "
                f"{ctx}; {fix}."
            )
