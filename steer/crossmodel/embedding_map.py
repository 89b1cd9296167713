"""The linear map ``e_v = H e'_v`` between two models' output embeddings, fitted in closed form.

``H`` is fitted by least squares (optionally ridge) on the **shared vocabulary**
(:func:`steer.crossmodel.vocab.shared_vocabulary`). The reference repository fits ``H`` with
Adam on the first 4,000 shared tokens in dictionary order instead (pitfall 6).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmecon.result import ResultMixin, frozen_mapping
from steer.core.hooks import head_weight
from steer.crossmodel._fit import _held_out, _least_squares, _r2
from steer.crossmodel.vocab import shared_vocabulary
from steer.errors import SteerDimensionError, SteerInputError

__all__ = ["EmbeddingMap", "fit_embedding_map"]


@dataclass(frozen=True, eq=False)
class EmbeddingMap(ResultMixin):
    """A fitted linear map ``e_v = H e'_v`` from target to source output embeddings.

    Attributes
    ----------
    h
        ``H`` (``[d_source, d_target]``, float64).
    shared
        The shared vocabulary (:func:`shared_vocabulary`) with a boolean ``held_out`` column.
    r2_fit, r2_heldout
        ``1 - SS_res / SS_tot`` of ``E_s ≈ E_t H^T`` (pooled over dimensions, ``SS_tot`` around
        the column means) on the fitted and on the held-out shared tokens (NaN if none).
    ridge
        The ridge penalty used.
    info
        Marker styles, counts and seeds.
    """

    h: np.ndarray
    shared: pd.DataFrame
    r2_fit: float
    r2_heldout: float
    ridge: float
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        h = np.array(self.h, dtype=np.float64)
        h.setflags(write=False)
        object.__setattr__(self, "h", h)
        object.__setattr__(self, "shared", self.shared.copy())
        object.__setattr__(self, "info", frozen_mapping(dict(self.info)))

    @property
    def overlap(self) -> int:
        """Number of shared tokens."""
        return len(self.shared)

    @property
    def spec(self) -> Mapping[str, Any]:
        """The fit's settings: ``ridge``, ``heldout`` (share) and ``seed``."""
        return frozen_mapping(
            {"ridge": self.ridge, "heldout": self.info.get("heldout_share"),
             "seed": self.info.get("seed")}
        )  # fmt: skip

    @property
    def provenance(self) -> Mapping[str, Any]:
        """Marker styles, vocabulary sizes and the seed (``info``)."""
        return self.info

    def summary_dict(self) -> dict[str, Any]:
        """JSON-compatible record (goes into the transferred steer's provenance)."""
        return {
            "overlap": self.overlap,
            "n_fit": int((~self.shared["held_out"]).sum()),
            "n_heldout": int(self.shared["held_out"].sum()),
            "r2_fit": self.r2_fit,
            "r2_heldout": self.r2_heldout,
            "ridge": self.ridge,
            "source_hidden_size": int(self.h.shape[0]),
            "target_hidden_size": int(self.h.shape[1]),
            **{k: v for k, v in self.info.items() if isinstance(v, str | int | float)},
        }

    def tidy(self) -> pd.DataFrame:
        """Return the shared vocabulary: ``key, text, source_id, target_id, held_out``."""
        return self.shared.copy()

    def glance(self) -> pd.DataFrame:
        """One row: :meth:`summary_dict`."""
        return pd.DataFrame([self.summary_dict()])

    def summary(self) -> str:
        """Return a one-paragraph description of the fit."""
        s = self.summary_dict()
        return (
            f"Embedding map H ({s['source_hidden_size']} x {s['target_hidden_size']}) fitted on "
            f"{s['n_fit']} of {s['overlap']} shared tokens ({s['n_heldout']} held out, ridge "
            f"{self.ridge:g}): R^2 {self.r2_fit:.4f} fitted, {self.r2_heldout:.4f} held out."
        )

    def _table(self) -> pd.DataFrame:
        return self.glance()


class _Emb:
    """An output-embedding matrix read lazily: rows are converted to float64 only when used.

    Large vocabularies (Gemma: 262k x 640) would need > 1 GB as a float64 copy.
    """

    def __init__(self, x: nn.Module | torch.Tensor | np.ndarray, what: str) -> None:
        if isinstance(x, nn.Module):
            self.m: torch.Tensor | np.ndarray = head_weight(x).detach()
        elif isinstance(x, torch.Tensor):
            self.m = x.detach()
        else:
            self.m = np.asarray(x)
        if self.m.ndim != 2:
            raise SteerDimensionError(
                f"{what} output embeddings must be [V, d]; got {tuple(self.m.shape)}."
            )
        self.shape = (int(self.m.shape[0]), int(self.m.shape[1]))

    def rows(self, ids: np.ndarray) -> np.ndarray:
        if isinstance(self.m, torch.Tensor):
            idx = torch.tensor(np.array(ids, dtype=np.int64))
            return self.m[idx].to("cpu", torch.float64).numpy()
        return np.asarray(self.m[np.asarray(ids, dtype=np.int64)], dtype=np.float64)


def _check_split(heldout: float, ridge: float) -> None:
    if not 0.0 <= float(heldout) < 1.0:
        raise SteerInputError(f"heldout must be in [0, 1); got {heldout}.")
    if float(ridge) < 0:
        raise SteerInputError(f"ridge must be >= 0; got {ridge}.")


def fit_embedding_map(
    source: nn.Module | torch.Tensor | np.ndarray,
    source_tokenizer: Any,
    target: nn.Module | torch.Tensor | np.ndarray,
    target_tokenizer: Any,
    *,
    heldout: float = 0.1,
    ridge: float = 0.0,
    restrict_to: Collection[bytes] | None = None,
    seed: int = 0,
) -> EmbeddingMap:
    """Fit ``H`` with ``e_v ≈ H e'_v`` on the shared vocabulary, in closed form.

    ``H^T = argmin ||E_s - E_t H^T||_F^2 + ridge ||H||_F^2`` over the fitted shared tokens
    (rows of the **output** embeddings), solved by least squares in float64; ``ridge > 0`` uses
    the normal equations ``(E_t^T E_t + ridge I)^{-1} E_t^T E_s``.

    Parameters
    ----------
    source, target
        Causal LMs (their output embeddings are used) or ``[V, d]`` matrices.
    source_tokenizer, target_tokenizer
        Their tokenizers.
    heldout
        Share of shared tokens held out (at random, ``seed``) to report ``r2_heldout``; 0 fits
        on all of them.
    ridge
        Ridge penalty (0: ordinary least squares).
    restrict_to
        Only these canonical byte strings may be used (see :func:`shared_vocabulary`).
    seed
        Seed of the held-out split.

    Returns
    -------
    EmbeddingMap
        ``H``, the shared vocabulary and the fit's ``R^2``.

    Raises
    ------
    SteerInputError
        If no token is shared, fewer fitted tokens than the target's hidden size remain
        (without ridge), or ``heldout`` is not in [0, 1).
    """
    _check_split(heldout, ridge)
    es, et = _Emb(source, "source"), _Emb(target, "target")
    shared = shared_vocabulary(
        source_tokenizer,
        target_tokenizer,
        restrict_to=restrict_to,
        source_size=es.shape[0],
        target_size=et.shape[0],
    )
    n, d_t = len(shared), et.shape[1]
    held = _held_out(n, heldout, seed)
    n_held = int(held.sum())
    if (~held).sum() < d_t and ridge == 0:
        raise SteerInputError(
            f"only {int((~held).sum())} shared tokens are left to fit a map from the target's "
            f"{d_t} dimensions (overlap {n}, held out {n_held}); lower heldout, set ridge > 0 or "
            "use tokenizers with more tokens in common."
        )
    ys, xt = es.rows(shared["source_id"].to_numpy()), et.rows(shared["target_id"].to_numpy())
    x_fit, y_fit = xt[~held], ys[~held]
    ht = _least_squares(x_fit, y_fit, ridge)  # [d_t, d_s]
    shared = shared.assign(held_out=held)
    return EmbeddingMap(
        h=ht.T,
        shared=shared,
        r2_fit=_r2(y_fit, x_fit @ ht),
        r2_heldout=_r2(ys[held], xt[held] @ ht),
        ridge=float(ridge),
        info={
            "source_style": shared.attrs.get("source_style", ""),
            "target_style": shared.attrs.get("target_style", ""),
            "source_vocab": int(es.shape[0]),
            "target_vocab": int(et.shape[0]),
            "seed": int(seed),
            "heldout_share": float(heldout),
        },
    )
