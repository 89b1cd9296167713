"""Factor analysis of a steer: the SVD of each ``W_i = P1_i P2_i^T`` read through the vocabulary.

Han et al., *Word Embeddings Are Steers for Language Models* (ACL 2024,
https://arxiv.org/abs/2305.12798), Table 6 and the reference repository's ``pca_analysis.py``:
decompose ``W = U S V^T`` and list, for the top singular directions, the tokens ``v`` with the
largest and smallest loadings ``E v_k``.

**Orientation (pitfall 8).** ``W_i`` acts on the output embedding ``e_v`` (column vectors,
``e'_v = (I + eps W) e_v``, see :mod:`steer.core.transform`). The steered logit of token ``v``
after a context whose head input is ``h`` therefore moves by

    Delta logit_v = eps * s_i * h^T W_i e_v = eps * s_i * sum_k sigma_k (h . u_k) (e_v . v_k)

so the **right** singular vectors ``v_k`` (the ``P2`` side) live in token space: the *token
loading* of factor ``k`` is ``E v_k`` (``E`` = the model's **output** embeddings, also for
untied heads, pitfall 5). The **left** singular vectors ``u_k`` (the ``P1`` side) live in
context space: the *factor score* of a text is the mean of ``h_t . u_k`` over its tokens. A
positive score means that steering with a positive value raises the logits of the factor's
``top`` pole (high ``E v_k``) after that context, and lowers the ``bottom`` pole.

The sign of each pair ``(u_k, v_k)`` is arbitrary in an SVD; we fix it so that the token with
the largest ``|E v_k|`` has a positive loading (ties: lowest token id).

The SVD is computed from the thin factors (``P1 = Q1 R1``, ``P2 = Q2 R2`` reduced QR, then the SVD
of the small ``R1 R2^T``) in float64: the ``d x d`` matrix is never formed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, cast, get_args

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmecon.result import ResultMixin, frozen_mapping
from steer._types import RankBy, Rotation
from steer.core.hooks import head_inputs, head_weight
from steer.core.transform import SteerTransform
from steer.errors import SteerDimensionError, SteerInputError
from steer.train import pad_batch, pad_id

__all__ = [
    "FactorAnalysis",
    "RankBy",
    "Rotation",
    "SlotSVD",
    "factor_analysis",
    "factor_scores",
    "lowrank_svd",
    "rotate",
    "token_strings",
    "varimax",
]


@dataclass(frozen=True)
class SlotSVD:
    """Thin SVD ``W = U diag(S) V^T`` of one slot's matrix (float64, never formed as ``d x d``).

    Attributes
    ----------
    u
        Left singular vectors (context side, ``P1``), ``[d, m]`` with ``m = min(d, r)``.
    s
        Singular values, descending, ``[m]``.
    v
        Right singular vectors (token side, ``P2``: ``E v_k`` are token loadings), ``[d, m]``.
    """

    u: np.ndarray
    s: np.ndarray
    v: np.ndarray

    def matrix(self) -> np.ndarray:
        """Reconstruct ``W = U diag(S) V^T`` (``[d, d]``; for tests and small ``d``)."""
        return (self.u * self.s) @ self.v.T


def lowrank_svd(p1: torch.Tensor | np.ndarray, p2: torch.Tensor | np.ndarray) -> SlotSVD:
    """SVD of ``P1 P2^T`` from its thin factors, exactly, in float64.

    ``P1 = Q1 R1`` and ``P2 = Q2 R2`` (reduced QR); with ``R1 R2^T = A diag(S) B^T`` the SVD is
    ``U = Q1 A``, ``V = Q2 B``. Cost ``O(d r^2)``; the ``d x d`` product is never formed.

    Parameters
    ----------
    p1, p2
        Factors of shape ``[d, r]``.

    Returns
    -------
    SlotSVD
        ``m = min(d, r)`` singular triplets, singular values descending.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    >>> svd = lowrank_svd(a, b)
    >>> bool(np.allclose(svd.matrix(), a @ b.T))
    True
    """
    a = _f64(p1)
    b = _f64(p2)
    if a.ndim != 2 or a.shape != b.shape:
        raise SteerDimensionError(f"P1 and P2 must both be [d, r]; got {a.shape} and {b.shape}.")
    q1, r1 = np.linalg.qr(a)  # q1 [d, m], r1 [m, r]
    q2, r2 = np.linalg.qr(b)
    left, s, right_t = np.linalg.svd(r1 @ r2.T)
    return SlotSVD(q1 @ left, s, q2 @ right_t.T)


def _f64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


# statsmodels' gradient-projection stopping rule: gradient norm below _GPA_TOL * p on loadings
# rescaled to unit root-mean-square (the criteria are homogeneous, so the optimum is unchanged).
_GPA_TOL = 1e-7
_GPA_MAX_TRIES = 2000
ORTHOGONAL_ROTATIONS: tuple[str, ...] = ("varimax", "quartimax")


def rotate(
    loadings: np.ndarray, method: Rotation = "varimax", *, promax_power: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a loading matrix to simple structure: ``L = A M`` for a ``[k, k]`` matrix ``M``.

    ``"quartimax"`` (orthogonal) and ``"oblimin"`` (oblique, ``gamma = 0``: quartimin, the
    default of R ``GPArotation::oblimin``) come from
    :func:`statsmodels.multivariate.factor_rotation.rotate_factors` (gradient projection);
    ``"promax"`` (oblique) is statsmodels' promax (procrustes to the target
    ``|V|^m / V`` of the varimax pattern ``V``, :func:`~statsmodels.multivariate.
    factor_rotation.procrustes`) with R's power ``m = 4``. ``"varimax"`` is :func:`varimax`:
    statsmodels' varimax forms two ``p x p`` matrices (``p`` = vocabulary: 20 GB at 50,000
    tokens) and its gradient projection needs seconds to minutes where Kaiser's sweeps need
    milliseconds; the two are tested equal (up to column signs and order) on small ``p``.

    Parameters
    ----------
    loadings
        ``[p, k]`` loadings ``A`` (rows: variables, here tokens; columns: factors).
    method
        ``"varimax"``, ``"quartimax"``, ``"promax"`` or ``"oblimin"``.
    promax_power
        Promax's power ``m`` (R ``stats::promax`` default 4; statsmodels' default is 2).

    Returns
    -------
    rotated, matrix
        ``L = A M`` (``[p, k]``) and ``M`` (``[k, k]``; orthogonal for varimax and quartimax).
        For the oblique rotations ``M = (T^T)^{-1}`` with statsmodels' ``T``.

    Raises
    ------
    SteerInputError
        For an unknown method or a non-matrix input.

    Examples
    --------
    >>> simple = np.kron(np.eye(2), np.ones((3, 1)))
    >>> c, s = np.cos(0.4), np.sin(0.4)
    >>> rotated, m = rotate(simple @ np.array([[c, -s], [s, c]]), "quartimax")
    >>> bool(np.allclose(np.abs(rotated), simple, atol=1e-6))
    True
    """
    lam = np.array(loadings, dtype=np.float64)
    if lam.ndim != 2:
        raise SteerInputError(f"rotate needs a [p, k] matrix; got shape {lam.shape}.")
    if method not in get_args(Rotation):
        raise SteerInputError(f"method must be one of {list(get_args(Rotation))}; got {method!r}.")
    if lam.shape[1] < 2:
        return lam, np.eye(lam.shape[1])
    if method == "varimax":
        return varimax(lam)
    if method == "promax":
        m = _promax_matrix(lam, promax_power)
        return lam @ m, m
    from statsmodels.multivariate.factor_rotation import rotate_factors

    rms = float(np.sqrt(np.mean(lam**2)))
    scaled = lam / rms if rms > 0 else lam
    kw = {"tol": _GPA_TOL * lam.shape[0], "max_tries": _GPA_MAX_TRIES}
    if method == "quartimax":
        _, t = rotate_factors(scaled, "quartimax", **kw)
        return lam @ t, t
    try:
        _, t = rotate_factors(scaled, "oblimin", 0.0, "oblique", **kw)
        m = np.linalg.inv(t).T
    except np.linalg.LinAlgError as err:
        raise SteerInputError(
            "the oblimin (quartimin) rotation collapsed two factors (singular rotation): these "
            "loadings have no oblique simple structure; use rotation='promax' or 'varimax'."
        ) from err
    return lam @ m, m


def _promax_matrix(lam: np.ndarray, power: float) -> np.ndarray:
    """Return promax's matrix as statsmodels' ``promax`` builds it, on :func:`varimax`'s pattern."""
    from statsmodels.multivariate.factor_rotation import procrustes

    pattern = lam @ varimax(lam)[1]
    target = np.sign(pattern) * np.abs(pattern) ** (power - 1.0)  # |V|^m / V, 0 at 0
    s = procrustes(lam, target)
    d = np.sqrt(np.diag(np.linalg.inv(s.T @ s)))
    return np.asarray(np.linalg.inv(s @ np.diag(d)).T, dtype=np.float64)


def varimax(
    loadings: np.ndarray, *, max_sweeps: int = 500, tol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Varimax rotation (Kaiser 1958) of a loading matrix, by pairwise planar rotations.

    Finds the orthogonal ``R`` (``[k, k]``) that maximises the sum over columns of the variance
    of the squared loadings of ``L R``. Each sweep rotates every pair of columns by Kaiser's
    closed-form optimal angle, so the criterion never decreases (the SVD iteration of many
    implementations can oscillate). No Kaiser row normalisation.

    Parameters
    ----------
    loadings
        ``[p, k]`` loadings (rows: variables, here tokens; columns: factors).
    max_sweeps, tol
        Stop when every angle of a sweep is below ``tol`` radians.

    Returns
    -------
    rotated, rotation
        ``L R`` (``[p, k]``) and ``R`` (``[k, k]``, orthogonal).

    Examples
    --------
    >>> simple = np.kron(np.eye(2), np.ones((3, 1)))  # two blocks of three variables
    >>> c, s = np.cos(0.4), np.sin(0.4)
    >>> rotated, r = varimax(simple @ np.array([[c, -s], [s, c]]))
    >>> bool(np.allclose(np.abs(rotated), simple, atol=1e-8))
    True
    """
    lam = np.array(loadings, dtype=np.float64)
    if lam.ndim != 2:
        raise SteerInputError(f"varimax needs a [p, k] matrix; got shape {lam.shape}.")
    p, k = lam.shape
    rot = np.eye(k)
    for _ in range(max_sweeps):
        biggest = 0.0
        for j in range(k - 1):
            for m in range(j + 1, k):
                x, y = lam[:, j], lam[:, m]
                u, v = x * x - y * y, 2.0 * x * y
                a, b = u.sum(), v.sum()
                num = 2.0 * (u * v).sum() - 2.0 * a * b / p
                den = (u * u - v * v).sum() - (a * a - b * b) / p
                phi = 0.25 * np.arctan2(num, den)
                if abs(phi) < tol:
                    continue
                biggest = max(biggest, abs(phi))
                c, s = np.cos(phi), np.sin(phi)
                g = np.array([[c, -s], [s, c]])
                lam[:, [j, m]] = lam[:, [j, m]] @ g
                rot[:, [j, m]] = rot[:, [j, m]] @ g
        if biggest < tol:
            break
    return lam, rot


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    r"""Readable strings of single tokens: decoded text, a leading space shown as ``␣``.

    Byte-level BPE pieces (``Ġgood``) decode to ``" good"`` and are shown as ``␣good``; newlines
    and tabs are shown as ``\\n`` and ``\\t``, other non-printable characters as ``\\xNN``
    (control bytes break SVG/PNG rendering). Without a tokenizer the id is shown (``<123>``).

    Parameters
    ----------
    tokenizer
        A transformers tokenizer, or ``None``.
    ids
        Token ids.

    Returns
    -------
    list of str
        One string per id.
    """
    out = []
    for i in ids:
        if tokenizer is None:
            out.append(f"<{int(i)}>")
            continue
        text = tokenizer.decode([int(i)], clean_up_tokenization_spaces=False)
        if text.startswith(" "):
            text = "␣" + text[1:]
        out.append("".join(_ESCAPES.get(c, c if c.isprintable() else f"\\x{ord(c):02x}")
                           for c in text))  # fmt: skip
    return out


def _raw_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    if tokenizer is None:
        return [f"<{int(i)}>" for i in ids]
    return [str(t) for t in tokenizer.convert_ids_to_tokens([int(i) for i in ids])]


@dataclass(frozen=True, eq=False)
class FactorAnalysis(ResultMixin):
    """Result of :func:`factor_analysis` (immutable; arrays are float64 copies).

    Attributes
    ----------
    slots
        Analysed slot indices.
    slot_names
        Their names.
    singular_values
        ``{slot: [m]}`` all singular values of ``W_slot`` (the scree).
    u, v
        ``{slot: [d, k]}`` the top-``k`` context-side and token-side directions (after rotation,
        if any; with a rotation ``u`` carries the scale: ``W_k = sum_j u_j v_j^T``).
    scale
        ``{slot: [k]}`` the factor's scale: ``sigma_k`` without rotation, ``||u'_j||`` with one.
    loadings
        Long frame of the top / bottom tokens per factor (see :meth:`tidy`).
    rotation
        ``None`` or the rotation's name (``"varimax"``, ``"quartimax"``, ``"promax"``,
        ``"oblimin"``).
    rotation_matrix
        ``{slot: [k, k]}`` the matrix ``M`` of the rotated loadings ``E V S M`` (orthogonal
        for varimax and quartimax; identity without rotation; columns in factor order).
    epsilon
        The steer's ``eps_0``.
    k, n_tokens
        Factors kept and tokens listed per pole.
    """

    slots: tuple[int, ...]
    slot_names: tuple[str, ...]
    singular_values: dict[int, np.ndarray]
    u: dict[int, np.ndarray]
    v: dict[int, np.ndarray]
    scale: dict[int, np.ndarray]
    loadings: pd.DataFrame
    rotation: Rotation | None
    rotation_matrix: dict[int, np.ndarray]
    epsilon: float
    k: int
    n_tokens: int
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("singular_values", "u", "v", "scale", "rotation_matrix"):
            d = {int(s): np.array(a, dtype=np.float64) for s, a in getattr(self, name).items()}
            for a in d.values():
                a.setflags(write=False)
            object.__setattr__(self, name, MappingProxyType(d))
        object.__setattr__(self, "loadings", self.loadings.copy())
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))

    @property
    def spec(self) -> Mapping[str, Any]:
        """The call's settings: ``slots``, ``k``, ``n_tokens``, ``rotation``, ``rank_by``."""
        return frozen_mapping(
            {"slots": self.slots, "k": self.k, "n_tokens": self.n_tokens,
             "rotation": self.rotation, "rank_by": self.info.get("rank_by")}
        )  # fmt: skip

    @property
    def provenance(self) -> Mapping[str, Any]:
        """The steer's base model, vocabulary and hidden size and rank (``info``)."""
        return self.info

    def glance(self) -> pd.DataFrame:
        """One row: the steer analysed and the settings."""
        return pd.DataFrame(
            [
                {
                    "base_model": self.info.get("base_model"),
                    "n_slots": len(self.slots),
                    "slot_names": ",".join(self.slot_names),
                    "k": self.k,
                    "n_tokens": self.n_tokens,
                    "rotation": self.rotation or "none",
                    "rank_by": self.info.get("rank_by"),
                    "epsilon": self.epsilon,
                    "vocab_size": self.info.get("vocab_size"),
                    "hidden_size": self.info.get("hidden_size"),
                    "rank": self.info.get("rank"),
                }
            ]
        )

    def summary(self, n: int = 5) -> str:
        """Return the top / bottom ``n`` tokens of every factor of every slot, as text."""
        rot = f", {self.rotation} rotation" if self.rotation else ""
        lines = [f"Factor analysis of {self.info.get('base_model')} (k = {self.k}{rot})"]
        for slot, name in zip(self.slots, self.slot_names, strict=True):
            lines.append(f"slot {slot} ({name}):")
            for r in self.table(slot, n).itertuples():
                lines.append(f"  factor {r.factor} (scale {r.scale:.4g}): + {r.top} | - {r.bottom}")
        return "\n".join(lines)

    def _table(self) -> pd.DataFrame:
        frames = [self.table(s).assign(slot_name=name)
                  for s, name in zip(self.slots, self.slot_names, strict=True)]  # fmt: skip
        out = pd.concat(frames, ignore_index=True)
        return out[["slot_name", *(c for c in out.columns if c != "slot_name")]]

    def scree(self) -> pd.DataFrame:
        """Scree frame: ``slot, slot_name, factor, singular_value, explained, cumulative``.

        ``explained`` is ``sigma_k^2 / sum_j sigma_j^2`` (share of ``||W||_F^2``); every singular
        value is listed, not only the top ``k``.
        """
        rows = []
        for slot, name in zip(self.slots, self.slot_names, strict=True):
            s = self.singular_values[slot]
            var = s**2
            tot = float(var.sum())
            share = var / tot if tot > 0 else np.zeros_like(var)
            rows.append(
                pd.DataFrame(
                    {
                        "slot": slot,
                        "slot_name": name,
                        "factor": np.arange(len(s)),
                        "singular_value": s,
                        "explained": share,
                        "cumulative": np.cumsum(share),
                    }
                )
            )
        return pd.concat(rows, ignore_index=True)

    def tidy(self) -> pd.DataFrame:
        """Token loadings: one row per (slot, factor, pole, rank).

        Columns: ``slot, slot_name, factor, scale, pole ("top"/"bottom"), rank, token_id, token
        (raw vocabulary entry), text (readable, leading space as ␣), loading (E v_k), cosine
        (E v_k / ||e_v||)``; ranks follow ``rank_by``.
        """
        return self.loadings.copy()

    def table(self, slot: int | str | None = None, n: int | None = None) -> pd.DataFrame:
        """Wide table like the paper's Table 6: one row per factor, top / bottom tokens joined.

        Parameters
        ----------
        slot
            Slot index or name (default: the first analysed slot).
        n
            Tokens per pole (default: all listed).

        Returns
        -------
        pandas.DataFrame
            ``factor, scale, explained, top, bottom``.
        """
        s = self.slots[0] if slot is None else _slot_index(slot, self.slot_names, self.slots)
        n = n or self.n_tokens
        lo = self.loadings[(self.loadings["slot"] == s) & (self.loadings["rank"] < n)]
        scree = self.scree()
        explained = dict(zip(scree.loc[scree["slot"] == s, "factor"],
                             scree.loc[scree["slot"] == s, "explained"], strict=True))  # fmt: skip
        if self.rotation is not None:
            explained = {}
        rows = []
        for f, grp in lo.groupby("factor", sort=True):
            rows.append(
                {
                    "factor": int(cast(int, f)),
                    "scale": float(grp["scale"].iloc[0]),
                    "explained": float(explained.get(f, np.nan)),
                    "top": " ".join(grp[grp["pole"] == "top"].sort_values("rank")["text"]),
                    "bottom": " ".join(grp[grp["pole"] == "bottom"].sort_values("rank")["text"]),
                }
            )
        return pd.DataFrame(rows)

    def logit_shift(self, slot: int, h: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        """``eps * h^T W_k e_v`` through the kept factors (``W_k`` = the top-``k`` part of ``W``).

        With ``k`` = all singular values this is exactly the steer's logit shift at value 1
        (before any final-logit soft-capping, as in Gemma 2).

        Parameters
        ----------
        slot
            Slot index.
        h
            Head inputs ``[..., d]``.
        embeddings
            Output embeddings ``[V, d]``.

        Returns
        -------
        numpy.ndarray
            ``[..., V]``.
        """
        hu = np.asarray(h, dtype=np.float64) @ self.u[slot]  # [..., k] (scale folded, see below)
        ev = np.asarray(embeddings, dtype=np.float64) @ self.v[slot]  # [V, k]
        if self.rotation is None:
            hu = hu * self.scale[slot]
        return self.epsilon * hu @ ev.T

    def plot(self, kind: str = "scree", **options: Any) -> Any:
        """Chart the factor analysis (Altair).

        Parameters
        ----------
        kind
            ``"scree"`` (default): share of ``||W||_F^2`` per singular direction, one line per
            slot (:func:`steer.charts.factors.scree_chart` of :meth:`scree`); ``"loadings"``:
            the top / bottom token loadings per factor
            (:func:`steer.charts.factors.loadings_chart` of :meth:`tidy`).
        **options
            Passed to the chart function (``n``, ``log_scale``, ``slot_name``).

        Returns
        -------
        altair.LayerChart or altair.FacetChart
        """
        from steer.core.charts import loadings_chart, scree_chart

        if kind == "scree":
            return scree_chart(self.scree(), **options)
        if kind == "loadings":
            return loadings_chart(self.tidy(), **options)
        raise ValueError(f"kind={kind!r}; use 'scree' or 'loadings'.")


def _slot_index(slot: int | str, names: Sequence[str], valid: Sequence[int]) -> int:
    if isinstance(slot, str):
        if slot not in names:
            raise SteerInputError(f"no slot named {slot!r}; the slots are {list(names)}.")
        return int(valid[list(names).index(slot)])
    if int(slot) not in valid:
        raise SteerInputError(f"slot {slot} is out of range; valid slots: {list(valid)}.")
    return int(slot)


def _embeddings(model_or_embeddings: nn.Module | torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(model_or_embeddings, nn.Module):
        return _f64(head_weight(model_or_embeddings))
    e = _f64(model_or_embeddings)
    if e.ndim != 2:
        raise SteerDimensionError(
            f"the output embeddings must be a [V, d] matrix; got shape {e.shape}."
        )
    return e


def _orient(u: np.ndarray, v: np.ndarray, tok_load: np.ndarray) -> tuple[np.ndarray, ...]:
    """Flip each pair so that the largest-|loading| token loads positively."""
    idx = np.argmax(np.abs(tok_load), axis=0)
    sign = np.sign(tok_load[idx, np.arange(tok_load.shape[1])])
    sign[sign == 0] = 1.0
    return u * sign, v * sign, tok_load * sign


def _select_slots(
    slot: int | str | Sequence[int | str] | None, t: SteerTransform
) -> tuple[int, ...]:
    """Slot indices named by ``slot`` (``None``: every slot)."""
    all_slots = tuple(range(t.num_steers))
    if slot is None:
        return all_slots
    if isinstance(slot, int | str):
        return (_slot_index(slot, t.slot_names, all_slots),)
    slots = tuple(_slot_index(s, t.slot_names, all_slots) for s in slot)
    if not slots:
        raise SteerInputError("slot is an empty list; pass None for every slot.")
    return slots


def _directions(
    svd: SlotSVD, emb: np.ndarray, k: int, rotation: Rotation | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the top-``k`` directions of one slot (rotated if asked, oriented, ordered).

    Returns ``u, v, scale, rotation matrix, token loadings E v``. A rotation ``M`` of the
    weighted loadings ``E V S`` is applied to the token side, ``v' = V M`` (unit columns for an
    oblique ``M``), and its inverse transpose to the context side, ``u' = U S M^{-T}``, so that
    ``u' v'^T = U S V^T`` (for an orthogonal ``M``: ``v' = V M``, ``u' = U S M``).
    """
    kk = min(k, len(svd.s))
    u, v, sig = svd.u[:, :kk], svd.v[:, :kk], svd.s[:kk]
    tok_load = emb @ v  # [V, k]
    rot = np.eye(kk)
    if rotation is not None:
        _, rot = rotate(tok_load * sig, rotation)
        if rotation in ORTHOGONAL_ROTATIONS:
            v = v @ rot
            u = (u * sig) @ rot  # W_k = (U S R)(V R)^T
        else:
            vm = v @ rot
            norm = np.linalg.norm(vm, axis=0)
            v = vm / norm
            u = ((u * sig) @ np.linalg.inv(rot).T) * norm
        tok_load = emb @ v
        scale = np.linalg.norm(u, axis=0)
    else:
        scale = sig.copy()
    u, v, tok_load = _orient(u, v, tok_load)
    if rotation is not None:
        order = np.argsort(-scale, kind="stable")
        u, v, tok_load = u[:, order], v[:, order], tok_load[:, order]
        scale, rot = scale[order], rot[:, order]
    return u, v, scale, rot, tok_load


def factor_analysis(
    transform: SteerTransform,
    model_or_embeddings: nn.Module | torch.Tensor | np.ndarray,
    tokenizer: Any = None,
    *,
    slot: int | str | Sequence[int | str] | None = None,
    k: int = 10,
    n_tokens: int = 20,
    rotation: Rotation | None = None,
    rank_by: RankBy = "loading",
    exclude_special: bool = True,
) -> FactorAnalysis:
    """Read each slot's ``W_i = P1_i P2_i^T`` as a factor analysis of the vocabulary.

    Implements the interpretation of Han et al. (2024), https://arxiv.org/abs/2305.12798
    (Table 6): ``W_i = U S V^T``; factor ``k`` promotes the tokens with high ``E v_k`` and
    demotes those with low ``E v_k`` after contexts with ``h . u_k > 0`` (module docstring).

    Parameters
    ----------
    transform
        The steer.
    model_or_embeddings
        A causal LM (its **output** embeddings ``get_output_embeddings().weight`` are used, tied
        or not) or the output-embedding matrix ``E`` (``[V, d]``).
    tokenizer
        Decodes token ids (``None``: ids are shown as ``<id>``).
    slot
        Slot index or name, a list of them, or ``None`` for every slot (dummy slots included).
    k
        Factors kept per slot (capped at the rank of ``W_i``).
    n_tokens
        Tokens listed per pole.
    rotation
        ``None`` (singular directions), ``"varimax"`` or ``"quartimax"`` (orthogonal),
        ``"promax"`` or ``"oblimin"`` (oblique; see :func:`rotate`): rotate the top-``k``
        token-loading matrix ``E V_k diag(S_k)`` to simple structure; the rotated directions
        still reconstruct the same rank-``k`` part of ``W`` (oblique: unit token-side ``v``,
        the scale carried by ``u``).
    rank_by
        ``"loading"`` ranks tokens by ``E v_k`` (the paper; long embeddings, often rare
        sub-word pieces, dominate) or ``"cosine"`` by ``E v_k / ||e_v||`` (direction only).
        Both columns are reported either way.
    exclude_special
        Leave the tokenizer's special tokens out of the token lists.

    Returns
    -------
    FactorAnalysis
        Scree (:meth:`FactorAnalysis.scree`), loadings (:meth:`FactorAnalysis.tidy`), the
        paper-style table (:meth:`FactorAnalysis.table`) and the directions.

    Raises
    ------
    SteerDimensionError
        If the embeddings' width is not the steer's hidden size.
    SteerInputError
        For an unknown slot, ``k < 1``, ``n_tokens < 1`` or an unknown rotation.

    Examples
    --------
    >>> fa = factor_analysis(t, lm.model, lm.tokenizer, k=5)  # doctest: +SKIP
    >>> fa.table("sentiment")  # doctest: +SKIP
    """
    if rank_by not in ("loading", "cosine"):
        raise SteerInputError(f"rank_by must be 'loading' or 'cosine'; got {rank_by!r}.")
    if rotation is not None and rotation not in get_args(Rotation):
        raise SteerInputError(
            f"rotation must be None or one of {list(get_args(Rotation))}; got {rotation!r}."
        )
    if int(k) < 1 or int(n_tokens) < 1:
        raise SteerInputError(f"k and n_tokens must be >= 1; got k={k}, n_tokens={n_tokens}.")
    emb = _embeddings(model_or_embeddings)
    if emb.shape[1] != transform.hidden_size:
        raise SteerDimensionError(
            f"the output embeddings have width {emb.shape[1]} but the steer was built for "
            f"hidden size {transform.hidden_size} (base model {transform.base_model!r}); pass "
            "the model the steer was trained on, or transfer the steer first."
        )
    slots = _select_slots(slot, transform)
    n_vocab = emb.shape[0]
    keep_mask = np.ones(n_vocab, dtype=bool)
    if exclude_special and tokenizer is not None:
        special = [i for i in getattr(tokenizer, "all_special_ids", []) if 0 <= i < n_vocab]
        keep_mask[special] = False
    cand = np.flatnonzero(keep_mask)
    norms = np.linalg.norm(emb, axis=1)
    inv_norm = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    n_list = min(int(n_tokens), len(cand))

    svals, us, vs, scales, rots, frames = {}, {}, {}, {}, {}, []
    for s in slots:
        svd = lowrank_svd(transform.p1[s], transform.p2[s])
        svals[s] = svd.s
        u, v, scale, rot, tok_load = _directions(svd, emb, int(k), rotation)
        us[s], vs[s], scales[s], rots[s] = u, v, scale, rot
        for f in range(len(scale)):
            col = tok_load[cand, f] * (inv_norm[cand] if rank_by == "cosine" else 1.0)
            top = cand[np.argsort(-col, kind="stable")[:n_list]]
            bot = cand[np.argsort(col, kind="stable")[:n_list]]
            for pole, ids in (("top", top), ("bottom", bot)):
                frames.append(
                    pd.DataFrame(
                        {
                            "slot": s,
                            "slot_name": transform.slot_names[s],
                            "factor": f,
                            "scale": float(scale[f]),
                            "pole": pole,
                            "rank": np.arange(len(ids)),
                            "token_id": ids.astype(np.int64),
                            "token": _raw_tokens(tokenizer, ids.tolist()),
                            "text": token_strings(tokenizer, ids.tolist()),
                            "loading": tok_load[ids, f],
                            "cosine": tok_load[ids, f] * inv_norm[ids],
                        }
                    )
                )
    return FactorAnalysis(
        slots=slots,
        slot_names=tuple(transform.slot_names[s] for s in slots),
        singular_values=svals,
        u=us,
        v=vs,
        scale=scales,
        loadings=pd.concat(frames, ignore_index=True),
        rotation=rotation,
        rotation_matrix=rots,
        epsilon=transform.epsilon,
        k=int(k),
        n_tokens=n_list,
        info={
            "base_model": transform.base_model,
            "vocab_size": n_vocab,
            "hidden_size": transform.hidden_size,
            "rank": transform.rank,
            "rank_by": rank_by,
        },  # fmt: skip
    )


@torch.no_grad()
def factor_scores(
    analysis: FactorAnalysis,
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = 64,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Factor scores of texts: the mean over tokens of ``h_t . u_k`` (context side, unit ``u``).

    ``h_t`` is the unsteered hidden state entering the LM head at position ``t``. A positive
    score means the factor, at a positive steer value, promotes its ``top`` tokens after that
    text's contexts. Directions are normalised to unit length, so rotated and unrotated scores
    are comparable.

    Parameters
    ----------
    analysis
        A :class:`FactorAnalysis` of a steer for ``model``.
    model, tokenizer
        The base model (not modified) and its tokenizer.
    texts
        Texts to score.
    max_length
        Tokens kept per text.
    batch_size
        Texts per forward pass.

    Returns
    -------
    pandas.DataFrame
        ``text_index, text, slot, slot_name, factor, score, n_tokens``.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise SteerInputError("factor_scores needs at least one text.")
    enc = [tokenizer(t)["input_ids"][:max_length] for t in texts]
    if any(len(e) == 0 for e in enc):
        raise SteerInputError("a text tokenised to no tokens; texts must be non-empty.")
    d = next(iter(analysis.u.values())).shape[0]
    if head_weight(model).shape[1] != d:
        raise SteerDimensionError(
            f"the analysis is for hidden size {d} but the model's head takes "
            f"{head_weight(model).shape[1]}."
        )
    dev = next(model.parameters()).device
    means = np.zeros((len(texts), d))
    for start in range(0, len(texts), batch_size):
        ids, mask = pad_batch(enc[start : start + batch_size], pad_id(tokenizer))
        h = head_inputs(model, ids.to(dev), mask.to(dev)).to("cpu", torch.float64)
        m = mask[..., None].to(torch.float64)
        means[start : start + len(ids)] = ((h * m).sum(1) / m.sum(1)).numpy()
    rows = []
    for s, name in zip(analysis.slots, analysis.slot_names, strict=True):
        u = analysis.u[s]
        scores = means @ (u / np.linalg.norm(u, axis=0, keepdims=True))
        for f in range(u.shape[1]):
            rows.append(
                pd.DataFrame(
                    {
                        "text_index": np.arange(len(texts)),
                        "text": texts,
                        "slot": s,
                        "slot_name": name,
                        "factor": f,
                        "score": scores[:, f],
                        "n_tokens": [len(e) for e in enc],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)
