"""The linear map ``c = G c'`` between two models' head inputs at aligned contexts (optional).

Eq. 3 of Han et al. (2024) assumes that contexts map like the output embeddings (``G = H``);
:func:`fit_context_map` fits ``G`` on the hidden states entering both LM heads instead, at the
contexts both tokenisations of a text end at (a deviation from the paper, off by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmecon.result import ResultMixin, frozen_mapping
from steer.core.hooks import head_inputs, head_weight
from steer.crossmodel._fit import _held_out, _least_squares, _r2
from steer.crossmodel.vocab import _aligned_pairs, _ends
from steer.errors import SteerInputError

__all__ = ["ContextMap", "fit_context_map"]


@dataclass(frozen=True, eq=False)
class ContextMap(ResultMixin):
    """A fitted linear map ``c = G c'`` from target to source head inputs (hidden states).

    Attributes
    ----------
    g
        ``G`` (``[d_source, d_target]``, float64).
    n_fit, n_heldout
        Aligned positions used to fit and to evaluate (held out by text).
    r2_fit, r2_heldout
        ``1 - SS_res / SS_tot`` of ``H_s ≈ H_t G^T`` (pooled over dimensions).
    ridge
        The ridge penalty used.
    info
        The fit's other settings (``heldout`` share of texts, ``max_tokens``, ``seed``) and the
        number of texts.
    """

    g: np.ndarray
    n_fit: int
    n_heldout: int
    r2_fit: float
    r2_heldout: float
    ridge: float
    info: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        g = np.array(self.g, dtype=np.float64)
        g.setflags(write=False)
        object.__setattr__(self, "g", g)
        object.__setattr__(self, "info", frozen_mapping(dict(self.info)))

    @property
    def spec(self) -> Mapping[str, Any]:
        """The fit's settings: ``ridge`` and those in ``info``."""
        return frozen_mapping({"ridge": self.ridge, **self.info})

    @property
    def provenance(self) -> Mapping[str, Any]:
        """The map's shape (source and target hidden sizes)."""
        return frozen_mapping(
            {"source_hidden_size": int(self.g.shape[0]), "target_hidden_size": int(self.g.shape[1])}
        )

    def summary_dict(self) -> dict[str, Any]:
        """JSON-compatible record."""
        return {
            "n_fit": self.n_fit,
            "n_heldout": self.n_heldout,
            "r2_fit": self.r2_fit,
            "r2_heldout": self.r2_heldout,
            "ridge": self.ridge,
        }

    def tidy(self) -> pd.DataFrame:
        """One row per sample (``fit``, ``heldout``): ``sample, n_positions, r2``."""
        return pd.DataFrame(
            {
                "sample": ["fit", "heldout"],
                "n_positions": [self.n_fit, self.n_heldout],
                "r2": [self.r2_fit, self.r2_heldout],
            }
        )

    def glance(self) -> pd.DataFrame:
        """One row: :meth:`summary_dict`."""
        return pd.DataFrame([self.summary_dict()])

    def summary(self) -> str:
        """Return a one-paragraph description of the fit."""
        return (
            f"Context map G ({self.g.shape[0]} x {self.g.shape[1]}) fitted on {self.n_fit} "
            f"aligned contexts ({self.n_heldout} held out, ridge {self.ridge:g}): R^2 "
            f"{self.r2_fit:.4f} fitted, {self.r2_heldout:.4f} held out."
        )


def _aligned_positions(
    tokenizer: Any, other_tokenizer: Any, text: str, max_tokens: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    ids, ends = _ends(tokenizer, text, max_tokens)
    o_ids, o_ends = _ends(other_tokenizer, text, max_tokens)
    pairs = _aligned_pairs(ends, o_ends)
    return ids, o_ids, [i for i, _ in pairs], [j for _, j in pairs]


@torch.no_grad()
def _hidden(model: nn.Module, ids: list[int]) -> np.ndarray:
    dev = next(model.parameters()).device
    x = torch.tensor([ids], dtype=torch.long, device=dev)
    return head_inputs(model, x, torch.ones_like(x))[0].to("cpu", torch.float64).numpy()


def fit_context_map(
    source_model: nn.Module,
    source_tokenizer: Any,
    target_model: nn.Module,
    target_tokenizer: Any,
    texts: Sequence[str],
    *,
    heldout: float = 0.1,
    ridge: float = 0.0,
    max_tokens: int = 64,
    seed: int = 0,
) -> ContextMap:
    """Fit ``G`` with ``c ≈ G c'`` on the head inputs of both models at aligned contexts.

    A context is aligned when both tokenisations of a text end a token at the same character
    (both models have read the same text). ``G^T = argmin ||H_s - H_t G^T||^2 (+ ridge)``, in
    closed form; whole texts are held out (``seed``) for ``r2_heldout``.

    Parameters
    ----------
    source_model, source_tokenizer, target_model, target_tokenizer
        The two models (not modified) and their tokenizers.
    texts
        Texts to read (not the held-out texts of a fidelity check).
    heldout
        Share of texts held out.
    ridge
        Ridge penalty.
    max_tokens
        Tokens kept per text.
    seed
        Seed of the held-out split.

    Returns
    -------
    ContextMap
        ``G`` and its fit.

    Raises
    ------
    SteerInputError
        If there are fewer aligned contexts than the target's hidden size (without ridge).
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not 0.0 <= float(heldout) < 1.0:
        raise SteerInputError(f"heldout must be in [0, 1); got {heldout}.")
    held = _held_out(len(texts), heldout, seed)
    xs: dict[bool, list[np.ndarray]] = {False: [], True: []}
    ys: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for n, text in enumerate(texts):
        s_ids, t_ids, si, ti = _aligned_positions(
            source_tokenizer, target_tokenizer, text, max_tokens
        )
        if not si:
            continue
        ys[bool(held[n])].append(_hidden(source_model, s_ids)[si])
        xs[bool(held[n])].append(_hidden(target_model, t_ids)[ti])
    d_t = head_weight(target_model).shape[1]
    n_fit = int(sum(len(x) for x in xs[False]))
    if n_fit < d_t and ridge == 0:
        raise SteerInputError(
            f"only {n_fit} aligned contexts to fit a map from the target's {d_t} dimensions; "
            "pass more (or longer) texts or set ridge > 0."
        )
    x_fit, y_fit = np.concatenate(xs[False]), np.concatenate(ys[False])
    gt = _least_squares(x_fit, y_fit, ridge)
    if xs[True]:
        x_h, y_h = np.concatenate(xs[True]), np.concatenate(ys[True])
        r2_h, n_h = _r2(y_h, x_h @ gt), len(x_h)
    else:
        r2_h, n_h = float("nan"), 0
    return ContextMap(
        g=gt.T,
        n_fit=n_fit,
        n_heldout=n_h,
        r2_fit=_r2(y_fit, x_fit @ gt),
        r2_heldout=r2_h,
        ridge=float(ridge),
        info={
            "heldout": float(heldout),
            "max_tokens": int(max_tokens),
            "seed": int(seed),
            "n_texts": len(texts),
        },  # fmt: skip
    )
