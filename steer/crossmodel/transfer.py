"""Transfer a steer between language models through their shared vocabulary.

Han et al., *Word Embeddings Are Steers for Language Models* (ACL 2024,
https://arxiv.org/abs/2305.12798), eq. 3: if the source model's output embeddings are a linear
image of the target's, ``e_v = H e'_v`` (``H``: ``d_s x d_t``), then with contexts related the
same way (``c = H c'``)

    c^T W e_v = (H c')^T W (H e'_v) = c'^T (H^T W H) e'_v,

so the target steer is ``W' = H^T W H`` (acting on the target's ``e'_v``, the orientation of
:mod:`steer.core.transform`). With ``W = P1 P2^T`` the transferred factors are ``P1' = H^T P1`` and
``P2' = H^T P2``: the rank is kept and no ``d x d`` matrix is formed.

``H`` is fitted in closed form (least squares, optionally ridge) on the **shared vocabulary**:
tokens whose strings are identical after mapping each tokenizer's whitespace convention to
bytes (byte-level BPE ``Ġ``/``Ċ`` through GPT-2's byte alphabet; SentencePiece ``▁`` as a space
and ``<0xNN>`` byte tokens; other vocabularies as UTF-8). Special tokens are left out. The
reference repository fits ``H`` with Adam on the first 4,000 shared tokens in dictionary order
instead (pitfall 6).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmecon.provenance import jsonable
from steer.core.hooks import check_dimension, head_inputs, head_weight, steering
from steer.core.transform import SteerTransform, ValuesLike, as_values
from steer.errors import SteerDimensionError, SteerInputError
from steer.train import model_id

__all__ = [
    "ContextMap",
    "EmbeddingMap",
    "MarkerStyle",
    "TransferFidelity",
    "canonical_vocabulary",
    "fit_context_map",
    "fit_embedding_map",
    "marker_style",
    "shared_vocabulary",
    "transfer",
    "transfer_fidelities",
    "transfer_fidelity",
]

MarkerStyle = Literal["byte_level", "metaspace", "raw"]


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's ``bytes_to_unicode`` (printable stand-ins for the 256 bytes)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_HEX_BYTE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _vocab(tokenizer: Any) -> dict[str, int]:
    getter = getattr(tokenizer, "get_vocab", None)
    if not callable(getter):
        raise SteerInputError(
            f"{type(tokenizer).__name__} has no get_vocab(); pass a transformers tokenizer."
        )
    return dict(getter())


def marker_style(tokenizer: Any) -> MarkerStyle:
    """Guess how a tokenizer marks word-initial spaces.

    ``"byte_level"`` when at least 5 % of the vocabulary starts with ``Ġ`` (GPT-2, Llama-3,
    SmolLM, Qwen), ``"metaspace"`` when at least 5 % starts with ``▁`` (SentencePiece: Llama-2,
    Gemma, T5), else ``"raw"``.
    """
    toks = list(_vocab(tokenizer))
    n = max(len(toks), 1)
    if sum(t.startswith("Ġ") for t in toks) >= 0.05 * n:
        return "byte_level"
    if sum(t.startswith("▁") for t in toks) >= 0.05 * n:
        return "metaspace"
    return "raw"


def _canonical(token: str, style: MarkerStyle) -> bytes:
    if style == "byte_level":
        dec = _byte_decoder()
        if all(c in dec for c in token):
            return bytes(dec[c] for c in token)
        return token.encode("utf-8")
    if style == "metaspace":
        m = _HEX_BYTE.match(token)
        if m:
            return bytes([int(m.group(1), 16)])
        return token.replace("▁", " ").encode("utf-8")
    return token.encode("utf-8")


def canonical_vocabulary(tokenizer: Any, style: MarkerStyle | None = None) -> dict[bytes, int]:
    """Map each non-special token to the bytes it stands for.

    Parameters
    ----------
    tokenizer
        A transformers tokenizer.
    style
        Marker convention (default :func:`marker_style`).

    Returns
    -------
    dict
        ``{bytes: token id}``; when two tokens map to the same bytes, the lower id is kept.
    """
    style = style or marker_style(tokenizer)
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    out: dict[bytes, int] = {}
    for tok, i in sorted(_vocab(tokenizer).items(), key=lambda kv: kv[1]):
        if tok in special:
            continue
        key = _canonical(tok, style)
        if key and key not in out:
            out[key] = int(i)
    return out


def shared_vocabulary(
    source_tokenizer: Any,
    target_tokenizer: Any,
    *,
    restrict_to: Collection[bytes] | None = None,
    source_size: int | None = None,
    target_size: int | None = None,
) -> pd.DataFrame:
    """Tokens that both vocabularies spell identically (after the marker mapping).

    Parameters
    ----------
    source_tokenizer, target_tokenizer
        The two tokenizers.
    restrict_to
        Optional set of canonical byte strings to keep (for example the tokens a small target
        model actually saw in training).
    source_size, target_size
        Rows of each output-embedding matrix; ids at or beyond them are dropped (tokenizers
        may list more tokens than the head has, or fewer).

    Returns
    -------
    pandas.DataFrame
        ``key`` (bytes), ``text`` (readable), ``source_id``, ``target_id``, ordered by source id.

    Raises
    ------
    SteerInputError
        If no token is shared.
    """
    src_style, tgt_style = marker_style(source_tokenizer), marker_style(target_tokenizer)
    src = canonical_vocabulary(source_tokenizer, src_style)
    tgt = canonical_vocabulary(target_tokenizer, tgt_style)
    keys = set(src) & set(tgt)
    if restrict_to is not None:
        keys &= set(restrict_to)
    rows = [
        (k, k.decode("utf-8", "backslashreplace"), src[k], tgt[k])
        for k in keys
        if (source_size is None or src[k] < source_size)
        and (target_size is None or tgt[k] < target_size)
    ]
    if not rows:
        raise SteerInputError(
            f"the two tokenizers share no token (source: {len(src)} tokens, {src_style}; target: "
            f"{len(tgt)} tokens, {tgt_style}"
            + ("; after restrict_to" if restrict_to is not None else "")
            + "); a linear map needs at least as many shared tokens as the target's hidden size."
        )
    frame = pd.DataFrame(rows, columns=["key", "text", "source_id", "target_id"])
    frame = frame.sort_values("source_id", kind="stable").reset_index(drop=True)
    frame.attrs.update(source_style=src_style, target_style=tgt_style)
    return frame


@dataclass(frozen=True, eq=False)
class EmbeddingMap:
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
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        h = np.array(self.h, dtype=np.float64)
        h.setflags(write=False)
        object.__setattr__(self, "h", h)
        object.__setattr__(self, "shared", self.shared.copy())
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))

    @property
    def overlap(self) -> int:
        """Number of shared tokens."""
        return len(self.shared)

    def summary(self) -> dict[str, Any]:
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


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    if len(y) == 0:
        return float("nan")
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


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
    if not 0.0 <= float(heldout) < 1.0:
        raise SteerInputError(f"heldout must be in [0, 1); got {heldout}.")
    if float(ridge) < 0:
        raise SteerInputError(f"ridge must be >= 0; got {ridge}.")
    es, et = _Emb(source, "source"), _Emb(target, "target")
    shared = shared_vocabulary(
        source_tokenizer,
        target_tokenizer,
        restrict_to=restrict_to,
        source_size=es.shape[0],
        target_size=et.shape[0],
    )
    n, d_t = len(shared), et.shape[1]
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    n_held = int(round(float(heldout) * n))
    if n_held:
        held[rng.choice(n, size=n_held, replace=False)] = True
    if (~held).sum() < d_t and ridge == 0:
        raise SteerInputError(
            f"only {int((~held).sum())} shared tokens are left to fit a map from the target's "
            f"{d_t} dimensions (overlap {n}, held out {n_held}); lower heldout, set ridge > 0 or "
            "use tokenizers with more tokens in common."
        )
    ys, xt = es.rows(shared["source_id"].to_numpy()), et.rows(shared["target_id"].to_numpy())
    x_fit, y_fit = xt[~held], ys[~held]
    if ridge > 0:
        ht = np.linalg.solve(x_fit.T @ x_fit + ridge * np.eye(d_t), x_fit.T @ y_fit)
    else:
        ht = np.linalg.lstsq(x_fit, y_fit, rcond=None)[0]  # [d_t, d_s]
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


@dataclass(frozen=True, eq=False)
class ContextMap:
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
    """

    g: np.ndarray
    n_fit: int
    n_heldout: int
    r2_fit: float
    r2_heldout: float
    ridge: float

    def __post_init__(self) -> None:
        g = np.array(self.g, dtype=np.float64)
        g.setflags(write=False)
        object.__setattr__(self, "g", g)

    def summary(self) -> dict[str, Any]:
        """JSON-compatible record."""
        return {
            "n_fit": self.n_fit,
            "n_heldout": self.n_heldout,
            "r2_fit": self.r2_fit,
            "r2_heldout": self.r2_heldout,
            "ridge": self.ridge,
        }


def _aligned_positions(
    tokenizer: Any, other_tokenizer: Any, text: str, max_tokens: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    ids, ends = _ends(tokenizer, text, max_tokens)
    o_ids, o_ends = _ends(other_tokenizer, text, max_tokens)
    at = {e: j for j, e in enumerate(o_ends) if e >= 0}
    pairs = [(i, at[e]) for i, e in enumerate(ends) if e >= 0 and e in at]
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
    rng = np.random.default_rng(seed)
    held = np.zeros(len(texts), dtype=bool)
    n_held = int(round(float(heldout) * len(texts)))
    if n_held:
        held[rng.choice(len(texts), size=n_held, replace=False)] = True
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
    if ridge > 0:
        gt = np.linalg.solve(x_fit.T @ x_fit + ridge * np.eye(d_t), x_fit.T @ y_fit)
    else:
        gt = np.linalg.lstsq(x_fit, y_fit, rcond=None)[0]
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
    )


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
    if mapping.h.shape != (transform.hidden_size, d_t):
        raise SteerDimensionError(
            f"the map H has shape {mapping.h.shape}, expected ({transform.hidden_size}, {d_t}) "
            "(source hidden size, target hidden size)."
        )
    h = torch.tensor(np.array(mapping.h), dtype=torch.float64)
    g = h
    if context_map is not None:
        if context_map.g.shape != mapping.h.shape:
            raise SteerDimensionError(
                f"the context map G has shape {context_map.g.shape}, expected "
                f"{mapping.h.shape} (source hidden size, target hidden size)."
            )
        g = torch.tensor(np.array(context_map.g), dtype=torch.float64)
    p1 = torch.einsum("st,ksr->ktr", g, transform.p1.detach().cpu().to(torch.float64))
    p2 = torch.einsum("st,ksr->ktr", h, transform.p2.detach().cpu().to(torch.float64))
    if target_name is None:
        target_name = model_id(target_model) if isinstance(target_model, nn.Module) else "target"
    prov = {
        "transferred_from": transform.base_model,
        "transfer": mapping.summary(),
        "source_provenance": jsonable(dict(transform.provenance), stringify=True),
    }
    if context_map is not None:
        prov["context_map"] = context_map.summary()
    return SteerTransform(
        p1.to(transform.dtype),
        p2.to(transform.dtype),
        transform.epsilon,
        target_name,
        slot_names=transform.slot_names,
        dummy_slots=transform.dummy_slots,
        provenance=prov,
    )


@dataclass(frozen=True, eq=False)
class TransferFidelity:
    """How closely a transferred steer reproduces the source steer (:func:`transfer_fidelity`).

    Attributes
    ----------
    positions
        One row per aligned context (a prefix of a text that both tokenisations end at):
        ``text_index, char_end, source_pos, target_pos, logit_corr, topk_overlap,
        bottomk_overlap, scale_ratio`` (``scale_ratio`` = std of the target's shifts over the
        shared tokens / the source's: how much stronger the transferred steer acts).
    texts
        One row per text: ``text_index, text, source_delta_logp, target_delta_logp,
        source_tokens, target_tokens``; ``*_delta_logp`` = ``log P_steered(text) - log
        P_0(text)`` summed over the text's predicted tokens.
    token_corr
        Pearson correlation of per-token ``Delta log P`` between the models, over the texts'
        tokens (only when both tokenise every text identically; else NaN).
    top_k
        ``k`` of the top-k overlaps; ``chance`` = ``k / overlap`` is their expectation for
        unrelated rankings.
    overlap
        Shared tokens over which logit shifts are compared.
    """

    positions: pd.DataFrame
    texts: pd.DataFrame
    token_corr: float
    top_k: int
    overlap: int

    @property
    def chance(self) -> float:
        """Expected top-k overlap of two unrelated rankings."""
        return self.top_k / self.overlap if self.overlap else float("nan")

    def summary(self) -> dict[str, float]:
        """Means over aligned contexts, the text-level correlation and the token correlation."""
        t = self.texts
        text_corr = (
            float(np.corrcoef(t["source_delta_logp"], t["target_delta_logp"])[0, 1])
            if len(t) >= 3
            else float("nan")
        )
        return {
            "n_texts": len(t),
            "n_positions": len(self.positions),
            "overlap": self.overlap,
            "logit_corr_mean": float(self.positions["logit_corr"].mean()),
            "logit_corr_median": float(self.positions["logit_corr"].median()),
            "topk_overlap_mean": float(self.positions["topk_overlap"].mean()),
            "bottomk_overlap_mean": float(self.positions["bottomk_overlap"].mean()),
            "scale_ratio_median": float(self.positions["scale_ratio"].median()),
            "top_k": self.top_k,
            "chance": self.chance,
            "text_delta_logp_corr": text_corr,
            "token_delta_logp_corr": self.token_corr,
        }

    def tidy(self) -> pd.DataFrame:
        """Return the per-context frame."""
        return self.positions.copy()


@torch.no_grad()
def _run(
    model: nn.Module, ids: list[int], transform: SteerTransform, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the base and steered logits ``[T, V]`` (float64) of one sequence."""
    dev = next(model.parameters()).device
    x = torch.tensor([ids], dtype=torch.long, device=dev)
    m = torch.ones_like(x)
    base = model(input_ids=x, attention_mask=m, use_cache=False).logits[0].to("cpu", torch.float64)
    with steering(model, transform, values):
        st = model(input_ids=x, attention_mask=m, use_cache=False).logits[0]
    return base, st.to("cpu", torch.float64)


def _ends(tokenizer: Any, text: str, max_tokens: int) -> tuple[list[int], list[int]]:
    enc = tokenizer(text, return_offsets_mapping=True)
    ids = list(enc["input_ids"])[:max_tokens]
    ends = [int(e) if e > s else -1 for s, e in enc["offset_mapping"][:max_tokens]]
    return ids, ends


def _delta_logp(base: torch.Tensor, st: torch.Tensor, ids: list[int]) -> np.ndarray:
    y = torch.tensor(ids[1:])[:, None]
    lb = torch.log_softmax(base[:-1], -1).gather(-1, y)[:, 0]
    ls = torch.log_softmax(st[:-1], -1).gather(-1, y)[:, 0]
    return (ls - lb).numpy()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def transfer_fidelity(
    source_transform: SteerTransform,
    source_model: nn.Module,
    source_tokenizer: Any,
    target_transform: SteerTransform,
    target_model: nn.Module,
    target_tokenizer: Any,
    texts: Sequence[str],
    *,
    values: ValuesLike | float = 1.0,
    shared: pd.DataFrame | None = None,
    top_k: int = 50,
    max_tokens: int = 64,
) -> TransferFidelity:
    """Compare a transferred steer with its source on held-out texts.

    For every prefix of a text that both tokenisations end at (so both models see the same
    context text), the steer's logit shifts ``Delta logit_v = logit_steered - logit_0`` over the
    shared vocabulary are compared between the models: Pearson correlation and the share of
    the top-k (and bottom-k) shifted tokens in common. Per text, ``Delta log P(text)`` is
    compared; per token too when both models tokenise identically.

    Parameters
    ----------
    source_transform, source_model, source_tokenizer
        The source steer and model.
    target_transform, target_model, target_tokenizer
        The transferred steer and the target model.
    texts
        Held-out texts (not the texts ``H`` or the steer were fitted on).
    values
        Slot values (one number: labelled slots, dummy slots at 1), used for both steers.
    shared
        Shared vocabulary (default: :func:`shared_vocabulary` of the two tokenizers).
    top_k
        ``k`` of the top-k overlap.
    max_tokens
        Tokens kept per text.

    Returns
    -------
    TransferFidelity
        Per-context and per-text frames and a :meth:`TransferFidelity.summary`.

    Raises
    ------
    SteerInputError
        If no text has an aligned context, or no text is given.
    """
    return transfer_fidelities(
        source_transform, source_model, source_tokenizer, {"target": target_transform},
        target_model, target_tokenizer, texts, values=values, shared=shared, top_k=top_k,
        max_tokens=max_tokens,
    )["target"]  # fmt: skip


def transfer_fidelities(
    source_transform: SteerTransform,
    source_model: nn.Module,
    source_tokenizer: Any,
    target_transforms: Mapping[str, SteerTransform],
    target_model: nn.Module,
    target_tokenizer: Any,
    texts: Sequence[str],
    *,
    values: ValuesLike | float = 1.0,
    shared: pd.DataFrame | None = None,
    top_k: int = 50,
    max_tokens: int = 64,
) -> dict[str, TransferFidelity]:
    """:func:`transfer_fidelity` of several target steers, scoring the source only once.

    Parameters
    ----------
    target_transforms
        Named steers for ``target_model`` (e.g. transferred, a control, one trained natively).
    source_transform, source_model, source_tokenizer, target_model, target_tokenizer, texts
        As :func:`transfer_fidelity`.
    values, shared, top_k, max_tokens
        As :func:`transfer_fidelity`.

    Returns
    -------
    dict
        One :class:`TransferFidelity` per name.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise SteerInputError("transfer_fidelity needs at least one text.")
    if not target_transforms:
        raise SteerInputError("pass at least one target steer.")
    check_dimension(source_model, source_transform)
    for t in target_transforms.values():
        check_dimension(target_model, t)

    def vals(t: SteerTransform) -> torch.Tensor:
        if isinstance(values, int | float):
            return as_values(t.values(float(values)), t.num_steers)
        return as_values(values, t.num_steers)

    sv = vals(source_transform)
    tvs = {name: vals(t) for name, t in target_transforms.items()}
    if shared is None:
        shared = shared_vocabulary(
            source_tokenizer,
            target_tokenizer,
            source_size=head_weight(source_model).shape[0],
            target_size=head_weight(target_model).shape[0],
        )
    sid = torch.tensor(shared["source_id"].to_numpy(dtype=np.int64, copy=True))
    tid = torch.tensor(shared["target_id"].to_numpy(dtype=np.int64, copy=True))
    kk = min(int(top_k), len(sid))
    names = list(target_transforms)
    pos_rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    text_rows: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    tok_src: list[np.ndarray] = []
    tok_tgt: dict[str, list[np.ndarray]] = {n: [] for n in names}
    same_tokens = True
    for n, text in enumerate(texts):
        s_ids, s_ends = _ends(source_tokenizer, text, max_tokens)
        t_ids, t_ends = _ends(target_tokenizer, text, max_tokens)
        if len(s_ids) < 2 or len(t_ids) < 2:
            continue
        sb, ss = _run(source_model, s_ids, source_transform, sv)
        ds = _delta_logp(sb, ss, s_ids)
        aligned = len(s_ids) == len(t_ids) and s_ends == t_ends
        same_tokens = same_tokens and aligned
        if aligned:
            tok_src.append(ds)
        t_at = {e: j for j, e in enumerate(t_ends) if e >= 0}
        pairs = [(i, t_at[e]) for i, e in enumerate(s_ends) if e >= 0 and e in t_at]
        shifts_a = {i: (ss[i] - sb[i])[sid].numpy() for i, _ in pairs}
        for name in names:
            tb, ts = _run(target_model, t_ids, target_transforms[name], tvs[name])
            dt = _delta_logp(tb, ts, t_ids)
            text_rows[name].append(
                {
                    "text_index": n,
                    "text": text,
                    "source_delta_logp": float(ds.sum()),
                    "target_delta_logp": float(dt.sum()),
                    "source_tokens": len(s_ids),
                    "target_tokens": len(t_ids),
                }
            )
            if aligned:
                tok_tgt[name].append(dt)
            for i, j in pairs:
                a = shifts_a[i]
                b = (ts[j] - tb[j])[tid].numpy()
                top_a, top_b = np.argsort(-a)[:kk], np.argsort(-b)[:kk]
                bot_a, bot_b = np.argsort(a)[:kk], np.argsort(b)[:kk]
                pos_rows[name].append(
                    {
                        "text_index": n,
                        "char_end": s_ends[i],
                        "source_pos": i,
                        "target_pos": j,
                        "logit_corr": _pearson(a, b),
                        "topk_overlap": len(set(top_a) & set(top_b)) / kk,
                        "bottomk_overlap": len(set(bot_a) & set(bot_b)) / kk,
                        "scale_ratio": float(b.std() / a.std()) if a.std() > 0 else float("nan"),
                    }
                )
    if not pos_rows[names[0]]:
        raise SteerInputError(
            "no text has a prefix that both tokenisations end at (or every text is shorter "
            "than 2 tokens); pass longer texts."
        )
    out = {}
    for name in names:
        token_corr = (
            _pearson(np.concatenate(tok_src), np.concatenate(tok_tgt[name]))
            if same_tokens and tok_src
            else float("nan")
        )
        out[name] = TransferFidelity(
            positions=pd.DataFrame(pos_rows[name]),
            texts=pd.DataFrame(text_rows[name]),
            token_corr=token_corr,
            top_k=kk,
            overlap=len(sid),
        )
    return out
