"""Transfer a steer between language models through their shared vocabulary.

Han et al., *Word Embeddings Are Steers for Language Models* (ACL 2024,
https://arxiv.org/abs/2305.12798), eq. 3: if the source model's output embeddings are a linear
image of the target's, ``e_v = H e'_v`` (``H``: ``d_s x d_t``), then with contexts related the
same way (``c = H c'``)

    c^T W e_v = (H c')^T W (H e'_v) = c'^T (H^T W H) e'_v,

so the target steer is ``W' = H^T W H`` (acting on the target's ``e'_v``, the orientation of
:mod:`steer.core.transform`). With ``W = P1 P2^T`` the transferred factors are ``P1' = H^T P1`` and
``P2' = H^T P2``: the rank is kept and no ``d x d`` matrix is formed.

``H`` is fitted in closed form (least squares, optionally ridge) on the **shared vocabulary**
(:mod:`steer.crossmodel.vocab`, :mod:`steer.crossmodel.embedding_map`); an optional context map
``G`` (:mod:`steer.crossmodel.context_map`) can replace ``H`` on the context side. How closely
the transferred steer reproduces the source is measured by :mod:`steer.crossmodel.fidelity`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from typing import Any

import numpy as np
import torch
from torch import nn

from lmecon.provenance import jsonable
from steer.core.compat import FINGERPRINT_KEY, base_fingerprint
from steer.core.transform import SteerTransform
from steer.crossmodel.context_map import ContextMap
from steer.crossmodel.embedding_map import EmbeddingMap, _Emb, fit_embedding_map
from steer.errors import NoOutputEmbeddingsError, SteerDimensionError
from steer.train import model_id

__all__ = ["transfer"]


def _map_tensors(
    mapping: EmbeddingMap, context_map: ContextMap | None, d_s: int, d_t: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the maps' shapes and return ``H`` and ``G`` (``H`` without a context map)."""
    if mapping.h.shape != (d_s, d_t):
        raise SteerDimensionError(
            f"the map H has shape {mapping.h.shape}, expected ({d_s}, {d_t}) "
            "(source hidden size, target hidden size)."
        )
    h = torch.tensor(np.array(mapping.h), dtype=torch.float64)
    if context_map is None:
        return h, h
    if context_map.g.shape != mapping.h.shape:
        raise SteerDimensionError(
            f"the context map G has shape {context_map.g.shape}, expected "
            f"{mapping.h.shape} (source hidden size, target hidden size)."
        )
    return h, torch.tensor(np.array(context_map.g), dtype=torch.float64)


def transfer(
    transform: SteerTransform,
    source_model: nn.Module | torch.Tensor | np.ndarray,
    source_tokenizer: Any,
    target_model: nn.Module | torch.Tensor | np.ndarray,
    target_tokenizer: Any,
    *,
    mapping: EmbeddingMap | None = None,
    context_map: ContextMap | None = None,
    heldout: float = 0.1,
    ridge: float = 0.0,
    restrict_to: Collection[bytes] | None = None,
    seed: int = 0,
    target_name: str | None = None,
) -> SteerTransform:
    """Transfer a steer to another LM: ``W' = H^T W H``, i.e. ``P1' = H^T P1``, ``P2' = H^T P2``.

    Implements eq. 3 of Han et al. (2024), https://arxiv.org/abs/2305.12798, with ``H`` fitted
    by :func:`fit_embedding_map` (closed-form least squares on the shared vocabulary) unless
    ``mapping`` is given. Slots, names, dummy slots, rank and ``eps_0`` are kept.

    Parameters
    ----------
    transform
        The source steer (hidden size ``d_s``).
    source_model, source_tokenizer
        The model the steer was trained on (or its output embeddings) and its tokenizer.
    target_model, target_tokenizer
        The model to steer (or its output embeddings) and its tokenizer.
    mapping
        A precomputed :class:`EmbeddingMap` (then the fitting arguments are ignored).
    context_map
        Optional :class:`ContextMap` ``G`` (``c = G c'``, fitted on aligned hidden states by
        :func:`fit_context_map`) used on the context side instead of ``H``:
        ``W' = G^T W H``, ``P1' = G^T P1``, ``P2' = H^T P2``. Eq. 3 assumes that the contexts
        map like the embeddings (``G = H``); nothing in the embedding fit enforces it (a
        deviation from the paper, off by default).
    heldout, ridge, restrict_to, seed
        Passed to :func:`fit_embedding_map`.
    target_name
        ``base_model`` of the new steer (default: the target model's name or ``"target"``).

    Returns
    -------
    SteerTransform
        The target steer (``[k, d_t, r]``, the source dtype), whose provenance records the
        source model, the overlap and the fit's ``R^2`` (fitted and held-out).

    Raises
    ------
    SteerDimensionError
        If the steer does not fit the source, or ``mapping`` does not fit the two models.
    SteerInputError
        If the tokenizers share too few tokens.

    Examples
    --------
    >>> t2 = transfer(t, lm.model, lm.tokenizer, other.model, other.tokenizer)  # doctest: +SKIP
    >>> t2.provenance["transfer"]["r2_heldout"]  # doctest: +SKIP
    """
    es = _Emb(source_model, "source")
    if es.shape[1] != transform.hidden_size:
        raise SteerDimensionError(
            f"the steer has hidden size {transform.hidden_size} but the source model's output "
            f"embeddings have width {es.shape[1]}; pass the model the steer was trained on."
        )
    if mapping is None:
        mapping = fit_embedding_map(
            source_model, source_tokenizer, target_model, target_tokenizer,
            heldout=heldout, ridge=ridge, restrict_to=restrict_to, seed=seed,
        )  # fmt: skip
    d_t = _Emb(target_model, "target").shape[1]
    h, g = _map_tensors(mapping, context_map, transform.hidden_size, d_t)
    p1 = torch.einsum("st,ksr->ktr", g, transform.p1.detach().cpu().to(torch.float64))
    p2 = torch.einsum("st,ksr->ktr", h, transform.p2.detach().cpu().to(torch.float64))
    if target_name is None:
        target_name = model_id(target_model) if isinstance(target_model, nn.Module) else "target"
    prov = {
        "transferred_from": transform.base_model,
        "transfer": mapping.summary_dict(),
        "source_provenance": jsonable(dict(transform.provenance), stringify=True),
    }
    if context_map is not None:
        prov["context_map"] = context_map.summary_dict()
    if isinstance(target_model, nn.Module):
        with contextlib.suppress(NoOutputEmbeddingsError):
            prov[FINGERPRINT_KEY] = base_fingerprint(target_model, target_tokenizer)
    return SteerTransform(
        p1.to(transform.dtype),
        p2.to(transform.dtype),
        transform.epsilon,
        target_name,
        slot_names=transform.slot_names,
        dummy_slots=transform.dummy_slots,
        provenance=prov,
    )
