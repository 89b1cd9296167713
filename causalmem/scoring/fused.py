"""Fused scoring: the metrics of :mod:`~causalmem.scoring.metrics` from final hidden states.

:func:`~causalmem.scoring.metrics.sequence_scores` needs the ``[batch, length, vocab]`` logits
(Pythia: 50 304 entries per token; 1.6 GB in float32 for 8 × 1 024 tokens, more for its
float32 intermediates). Here the causal LM's backbone returns the final hidden states, only the
positions that are scored (padding is never scored) are kept, and the output head is applied
one vocabulary chunk at a time. Per token, the chunk loop accumulates

* the running maximum ``m``, ``s = sum exp(z - m)`` and ``t = sum exp(z - m) (z - m)``
  (online log-sum-exp; on a new maximum ``m'`` the sums are rescaled by ``exp(m - m')``,
  ``t`` also shifted by ``(m - m') s``). Then ``log p(target) = z_target - m - log s`` and the
  entropy ``-sum p log p = log s - t / s``;
* the rank, ``#{v: z_v > z_target}`` exactly as today (strictly greater, ties get the best
  rank). ``z_target`` is only known once its chunk is reached, so it is first *estimated* by a
  dot product ``a`` with a bound on the float32 summation error, and every chunk counts the
  logits above two thresholds around ``a``: for a bf16 / fp16 head the two representable
  values the rounded logit can take (the rank is the count above whichever it is), for a
  float32 head ``a ± tol`` (the rank is the count above ``a + tol`` when the target's logit is
  the only one in between). A token left unresolved (near-ties, or an estimate that missed:
  the bound is checked, not trusted) is recounted exactly in a second pass over its block. No
  step of the first pass waits for the device (no data-dependent shapes).

Each chunk's logits come from the model's own head (``F.linear`` in the model's dtype: on GPU
bf16 tensor-core matmuls with float32 accumulation, rounded to bf16 like the full head's
output), then upcast to float32, so the values compared are the values today's path compares.
With a vocabulary chunk that is a multiple of 64, CPU float32 chunk logits equal the full
head's bit for bit (tested); the metrics agree to float32 rounding (1e-5 relative) and ranks
exactly.

Architectures: the head must be the plain linear map of the backbone's last hidden state
(:data:`FUSED_MODEL_TYPES`: GPT-NeoX, GPT-2, Llama, Mistral, Qwen2/3, OLMo, …). Models that
scale or soft-cap their logits (Gemma 2/3, Cohere, Granite) are scored through the full logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from causalmem.errors import NonFiniteScoresError

if TYPE_CHECKING:
    import torch

    from causalmem.scoring.metrics import SequenceScores, TokenScores

__all__ = [
    "FUSED_MODEL_TYPES",
    "FusedHead",
    "fused_head",
    "fused_sequence_scores",
    "fused_token_scores",
    "length_buckets",
    "supports_fused",
]

FUSED_MODEL_TYPES: frozenset[str] = frozenset(
    {
        "gpt_neox",
        "gpt2",
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "olmo",
        "olmo2",
        "phi3",
        "gpt_neo",
        "gptj",
        "opt",
        "smollm3",
    }
)
"""``config.model_type`` values whose logits are ``head(backbone(x).last_hidden_state)``."""

_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_mult")


@dataclass(frozen=True)
class FusedHead:
    """A model split into its backbone and its output head (no copies of the weights)."""

    backbone: Any
    weight: torch.Tensor
    bias: torch.Tensor | None


def supports_fused(model: Any) -> str | None:
    """Return None when ``model`` can be scored by the fused path, else the reason why not."""
    cfg = getattr(model, "config", None)
    mtype = str(getattr(cfg, "model_type", ""))
    if mtype not in FUSED_MODEL_TYPES:
        return f"model type {mtype!r} is not one whose head is known to be a plain linear map"
    for key in _LOGIT_TRANSFORMS:
        value = getattr(cfg, key, None)
        if value not in (None, 1, 1.0, 0, 0.0):
            return f"its config sets {key}={value!r} (the logits are transformed after the head)"
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or getattr(model, prefix, None) is None:
        return "it has no backbone attribute (base_model_prefix)"
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    import torch

    if not isinstance(head, torch.nn.Linear):
        return "its output head is not a torch.nn.Linear"
    return None


def fused_head(model: Any) -> FusedHead:
    """Split a transformers causal LM into backbone and head.

    Raises
    ------
    ValueError
        The model's logits are not a plain linear map of the backbone's output (use the
        ``"logits"`` method).
    """
    why = supports_fused(model)
    if why is not None:
        raise ValueError(f"the fused scorer cannot score this model: {why}; use method='logits'.")
    head = model.get_output_embeddings()
    return FusedHead(getattr(model, model.base_model_prefix), head.weight, head.bias)


def _default_chunks(device: torch.device, vocab: int) -> tuple[int, int]:
    """Return (vocabulary chunk, row chunk) for a device.

    GPU: 64 MB of float32 logits per chunk. CPU: 2 MB, which stays in cache (512 × 1 024 ran
    1.7× faster than 4 096 × 512 at Pythia-70M's head on one thread).
    """
    if device.type == "cuda":
        return min(vocab, 8192), 2048
    return min(vocab, 512), 1024


def _round64(n: int) -> int:
    return max(64, (int(n) + 63) // 64 * 64)


def _unit_roundoff(dtype: torch.dtype) -> float:
    import torch

    return {torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}.get(
        dtype, 2.0**-8
    )


def _online_update(
    z: torch.Tensor,
    m: torch.Tensor,
    s: torch.Tensor,
    t: torch.Tensor,
    n_lo: torch.Tensor,
    n_hi: torch.Tensor,
    t_lo: torch.Tensor,
    t_hi: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fold one chunk ``z`` [rows, chunk] into the running max, sums and threshold counts."""
    import torch

    m_new = torch.maximum(m, z.amax(dim=1))
    shift = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
    zd = z - shift[:, None]
    p = torch.exp(zd)
    # 0 * -inf: entries with p == 0 contribute nothing (masked vocabulary)
    pz = (p * zd.clamp(min=-1e4)).sum(dim=1)
    grown = torch.where(s > 0, torch.exp(m - shift), torch.zeros_like(s))
    moved = torch.where(s > 0, (m - shift) * s, torch.zeros_like(s))
    t = grown * (t + moved) + pz
    s = grown * s + p.sum(dim=1)
    n_lo = n_lo + (z > t_lo[:, None]).sum(dim=1)
    n_hi = n_hi + (z > t_hi[:, None]).sum(dim=1)
    return m_new, s, t, n_lo, n_hi


_TINY = 1e-30


def _recount(
    h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, tgt: torch.Tensor, vc: int
) -> torch.Tensor:
    """Ranks of a few tokens from their full logits (today's rule), a bounded block at a time."""
    import torch
    import torch.nn.functional as F

    rows = max(1, (1 << 24) // max(int(weight.shape[0]), 1))
    out = []
    for i in range(0, h.shape[0], rows):
        z = F.linear(h[i : i + rows], weight, bias).float()
        target = z.gather(1, tgt[i : i + rows, None])
        out.append((z > target).sum(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64, device=h.device)


_COMPILED: dict[str, Any] = {}


def _compiled_update() -> Any:
    """``torch.compile`` of :func:`_online_update` (built once per process)."""
    import torch

    if "update" not in _COMPILED:
        _COMPILED["update"] = torch.compile(_online_update, dynamic=True)
    return _COMPILED["update"]


def fused_token_scores(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    *,
    vocab_chunk: int | None = None,
    row_chunk: int | None = None,
    compile: bool = False,
    _band_scale: float = 1.0,
) -> tuple[TokenScores, torch.Tensor]:
    """Score each target under ``F.linear(hidden, weight, bias)`` without materialising it.

    Parameters
    ----------
    hidden
        ``[n, d]`` final hidden states (the model's dtype).
    weight, bias
        The output head: ``[vocab, d]`` and ``[vocab]`` or None.
    targets
        ``[n]`` target token ids.
    vocab_chunk, row_chunk
        Logits computed at once: ``row_chunk × vocab_chunk`` (default 1 024 × 512 on CPU, 2 048 ×
        8192 on GPU). ``vocab_chunk`` is rounded up to a multiple of 64 (bitwise equal logits).
    compile
        Fuse the per-chunk element-wise work (max, exp, sums, counts) into one kernel with
        ``torch.compile`` (GPU: reads each chunk's logits once instead of about ten times).
    _band_scale
        Test hook: 0 leaves every token unresolved by the first pass (recounted).

    Returns
    -------
    (TokenScores, torch.Tensor)
        The scores of :func:`~causalmem.scoring.metrics.token_scores` and a ``[n]`` boolean
        tensor marking tokens whose logits hold NaN or ``+inf``.
    """
    import torch
    import torch.nn.functional as F

    from causalmem.scoring.metrics import TokenScores

    n, d = hidden.shape
    vocab = int(weight.shape[0])
    dev = hidden.device
    dv, dr = _default_chunks(dev, vocab)
    vc = min(_round64(vocab_chunk or dv), _round64(vocab))
    rc = max(1, int(row_chunk or dr))
    u_out = _unit_roundoff(weight.dtype)
    if dev.type == "cuda" and weight.dtype == torch.float32:
        if torch.backends.cuda.matmul.allow_tf32:
            u_out = 2.0**-11
    u_acc = 2.0**-24
    logprob = torch.empty(n, dtype=torch.float32, device=dev)
    entropy = torch.empty(n, dtype=torch.float32, device=dev)
    rank = torch.empty(n, dtype=torch.int64, device=dev)
    bad = torch.zeros(n, dtype=torch.bool, device=dev)
    starts = range(0, vocab, vc)
    update = _compiled_update() if compile else _online_update
    half = weight.dtype in (torch.bfloat16, torch.float16)
    for r0 in range(0, n, rc):
        h = hidden[r0 : r0 + rc]
        tgt = targets[r0 : r0 + rc].long()
        rows = h.shape[0]
        # estimate of the target logit and a bound on its error (checked below, not trusted)
        prod = h.float() * weight[tgt].float()
        est = prod.sum(-1)
        size = prod.abs().sum(-1)
        if bias is not None:
            est = est + bias[tgt].float()
            size = size + bias[tgt].float().abs()
        # about twice the largest float32 summation error seen (sqrt(d) u |prod|_2), far below the
        # spacing of 50k logits; wider bands leave more tokens to the recount
        acc_err = 2.0 * u_acc * (d**0.5 * prod.norm(dim=-1) + est.abs()) + _TINY
        if half:
            # the head rounds its float32 sums to its dtype: the exact logit is one of the (at
            # most two) representable values around the estimate; count above both
            t_lo = (est - acc_err).to(weight.dtype).float()
            t_hi = (est + acc_err).to(weight.dtype).float()
        else:
            tol = acc_err if u_out == u_acc else acc_err + 2.0 * u_out * (size + est.abs())
            t_lo, t_hi = est - tol, est + tol
        if _band_scale == 0:  # test hook: no token is resolved in the first pass
            t_lo = t_hi = torch.full_like(est, float("nan"))
        m = torch.full((rows,), float("-inf"), device=dev)
        s = torch.zeros(rows, device=dev)
        t = torch.zeros(rows, device=dev)
        n_lo = torch.zeros(rows, dtype=torch.int64, device=dev)
        n_hi = torch.zeros(rows, dtype=torch.int64, device=dev)
        exact = torch.full((rows,), float("nan"), device=dev)
        for c0 in starts:
            c1 = min(vocab, c0 + vc)
            z = F.linear(h, weight[c0:c1], None if bias is None else bias[c0:c1]).float()
            here = (tgt >= c0) & (tgt < c1)
            picked = z.gather(1, (tgt - c0).clamp(0, c1 - c0 - 1)[:, None]).squeeze(1)
            exact = torch.where(here, picked, exact)
            m, s, t, n_lo, n_hi = update(z, m, s, t, n_lo, n_hi, t_lo, t_hi)
            del z
        if half:
            r = torch.where(exact == t_hi, n_hi, torch.where(exact == t_lo, n_lo, -1))
        else:  # resolved when the target is the only logit in its band
            alone = (exact > t_lo) & (exact <= t_hi) & (n_lo - n_hi == 1)
            r = torch.where(alone, n_hi, -1)
        unresolved = r < 0
        if bool(unresolved.any()):  # near-ties or a missed estimate: count these exactly
            idx = unresolved.nonzero().squeeze(1)
            r = r.index_copy(0, idx, _recount(h[idx], weight, bias, tgt[idx], vc))
        sl = slice(r0, r0 + rows)
        logprob[sl] = exact - m - torch.log(s)
        entropy[sl] = torch.log(s) - t / s
        rank[sl] = r
        bad[sl] = torch.isnan(m) | torch.isposinf(m) | torch.isnan(s) | torch.isnan(exact)
    return TokenScores(logprob=logprob, entropy=entropy, rank=rank), bad


def fused_sequence_scores(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    vocab_chunk: int | None = None,
    row_chunk: int | None = None,
    head: FusedHead | None = None,
    compile: bool = False,
) -> tuple[SequenceScores, torch.Tensor]:
    """Per-sequence scores of a causal LM from its final hidden states (see the module notes).

    Parameters
    ----------
    model
        A transformers causal LM whose type :func:`supports_fused`.
    input_ids
        ``[batch, length]`` token ids.
    attention_mask
        ``[batch, length]`` (right padding), 1 for real tokens; default all ones.
    vocab_chunk, row_chunk
        See :func:`fused_token_scores`.
    head
        A precomputed :func:`fused_head` (saves the checks per batch).
    compile
        See :func:`fused_token_scores`.

    Returns
    -------
    (SequenceScores, torch.Tensor)
        Equal to :func:`~causalmem.scoring.metrics.sequence_scores` of the model's logits, and a
        ``[batch]`` boolean tensor marking sequences with NaN / ``+inf`` logits at a scored
        position.
    """
    import torch

    from causalmem.scoring.metrics import SequenceScores

    fh = head or fused_head(model)
    b, length = input_ids.shape
    if length < 2:
        raise ValueError("sequences need at least 2 tokens.")
    out = fh.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    mask = (
        torch.ones(b, length - 1, dtype=torch.bool, device=hidden.device)
        if attention_mask is None
        else attention_mask[:, 1:].to(device=hidden.device, dtype=torch.bool)
    )
    seq, pos = mask.nonzero(as_tuple=True)  # scored positions only, row-major
    h = hidden[seq, pos]
    del hidden, out
    targets = input_ids[:, 1:].to(h.device)[seq, pos]
    ts, bad_tok = fused_token_scores(
        h,
        fh.weight,
        fh.bias,
        targets,
        vocab_chunk=vocab_chunk,
        row_chunk=row_chunk,
        compile=compile,
    )
    dev = h.device

    def total(values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(b, dtype=torch.float64, device=dev).index_add_(0, seq, values.double())

    n = torch.zeros(b, dtype=torch.int64, device=dev).index_add_(
        0, seq, torch.ones_like(seq, dtype=torch.int64)
    )
    nd = n.double().clamp(min=1)
    lp = total(ts.logprob)
    scores = SequenceScores(
        logprob=lp,
        sup_seq=-lp / nd,
        acc_seq=total((ts.rank == 0).double()) / nd,
        entr_seq=total(ts.entropy) / nd,
        avg_rank=total(ts.rank.double()) / nd,
        n_tokens=n,
    )
    bad = torch.zeros(b, dtype=torch.bool, device=dev).index_put_(
        (seq[bad_tok],), torch.ones(int(bad_tok.sum()), dtype=torch.bool, device=dev)
    )
    return scores, bad


def raise_nonfinite(label: str, units: Sequence[int] | np.ndarray, bad: np.ndarray) -> None:
    """Raise :class:`~causalmem.errors.NonFiniteScoresError` for the sequences marked ``bad``."""
    rows = np.flatnonzero(bad)
    if rows.size == 0:
        return
    shown = ", ".join(str(u) for u in np.asarray(units)[rows[:5]])
    raise NonFiniteScoresError(
        f"checkpoint {label!r} produced non-finite logits (NaN or +inf) for {rows.size:,} of "
        f"{bad.size:,} instances in a batch (units {shown}{', …' if rows.size > 5 else ''}); "
        "they would score as a perfect model (acc_seq = 1, entr_seq = 0). No shard was written "
        "for it. Check its weights (corrupted file?), use dtype='bfloat16' or 'float32' instead "
        "of 'float16' (overflow), or leave the checkpoint out of the run."
    )


def length_buckets(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of instance positions with similar lengths (longest first), padding minimised.

    Equal lengths keep the instances' order (the batches are then exactly today's). Otherwise
    positions are sorted by length, longest first (a CUDA out-of-memory error shows on the first
    batch), stably, and cut into ``batch_size`` groups; the caller trims each batch to its
    longest sequence, so right padding is neither computed nor scored.
    """
    n = int(lengths.size)
    if n == 0:
        return []
    order = (
        np.arange(n) if bool((lengths == lengths[0]).all()) else np.argsort(-lengths, kind="stable")
    )
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]
