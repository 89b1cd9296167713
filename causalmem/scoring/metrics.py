"""Per-token and per-sequence scores of a causal LM: pure functions of logits and token ids.

Token ``x_i`` (``i >= 1``) is predicted from ``x_<i``; logits at position ``i - 1`` score it.
Per predicted token (the reference repo's ``src/models.py``):

* log-probability ``log p(x_i | x_<i)`` (surprisal is its negative);
* entropy ``-sum_v p_v log p_v`` of the predictive distribution;
* rank of the true token = the number of vocabulary entries whose logit is **strictly greater**
  (ties get the best rank; rank 0 = the model's top choice).

Per sequence (the repo's ``export_runs.py`` names, plus the paper's ``log p(x)``):

===============  ===========================================  ====================
column           definition                                   memorisation is
===============  ===========================================  ====================
``logprob``      sum of token log-probabilities = log p(x)    ``+ATT``
``sup_seq``      mean token surprisal (the repo's outcome)    ``-ATT``
``acc_seq``      share of tokens with rank 0                  ``+ATT``
``entr_seq``     mean entropy                                 ``-ATT``
``avg_rank``     mean rank                                    ``-ATT``
``n_tokens``     predicted tokens (sequence length - 1)       —
===============  ===========================================  ====================

All arithmetic is float32 on the logits' device (bf16 logits are upcast first); sequence sums
are accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from causalmem.panel.schema import metric_sign

__all__ = [
    "MEMORISATION_SIGN",
    "METRICS",
    "SequenceScores",
    "TokenScores",
    "sequence_scores",
    "token_scores",
]

METRICS: tuple[str, ...] = ("logprob", "sup_seq", "acc_seq", "entr_seq", "avg_rank")
"""Per-sequence outcome columns, in output order."""

MEMORISATION_SIGN: Mapping[str, int] = MappingProxyType({m: metric_sign(m) for m in METRICS})
"""Sign that turns an ATT of the metric into memorisation (memorisation.md pitfall 11).

Read from the one sign table, :data:`causalmem.panel.schema.METRIC_SIGNS`:
``{"logprob": 1, "sup_seq": -1, "acc_seq": 1, "entr_seq": -1, "avg_rank": -1}``.
"""


@dataclass(frozen=True, slots=True)
class TokenScores:
    """Per-token scores, each ``[batch, positions]``.

    Attributes
    ----------
    logprob
        ``log p(target)`` (float32).
    entropy
        Entropy of the predictive distribution in nats (float32).
    rank
        Number of logits strictly greater than the target's (int64).
    """

    logprob: torch.Tensor
    entropy: torch.Tensor
    rank: torch.Tensor


@dataclass(frozen=True, slots=True)
class SequenceScores:
    """Per-sequence scores, each ``[batch]`` (float64, ``n_tokens`` int64)."""

    logprob: torch.Tensor
    sup_seq: torch.Tensor
    acc_seq: torch.Tensor
    entr_seq: torch.Tensor
    avg_rank: torch.Tensor
    n_tokens: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Columns by name (:data:`METRICS` then ``n_tokens``)."""
        return {name: getattr(self, name) for name in (*METRICS, "n_tokens")}


def token_scores(logits: torch.Tensor, targets: torch.Tensor) -> TokenScores:
    """Score each target token under its logits.

    Parameters
    ----------
    logits
        ``[..., vocab]`` unnormalised scores (any float dtype; computed in float32).
    targets
        ``[...]`` token ids, aligned with ``logits`` (already shifted).

    Returns
    -------
    TokenScores

    Examples
    --------
    >>> s = token_scores(torch.tensor([[0.0, 1.0, 1.0]]), torch.tensor([1]))
    >>> s.rank.tolist(), round(float(s.logprob), 4)
    ([0], -0.862)
    """
    x = logits.float()
    tgt = targets.long().unsqueeze(-1)
    logp = torch.log_softmax(x, dim=-1)
    tgt_logp = logp.gather(-1, tgt).squeeze(-1)
    # rank on the logits themselves: subtracting the normaliser could merge distinct values.
    rank = torch.count_nonzero(x > x.gather(-1, tgt), dim=-1)
    plogp = logp.exp()
    plogp.mul_(logp)
    entropy = -plogp.sum(dim=-1)
    del plogp
    bad = torch.isnan(entropy)
    if bool(bad.any()):
        # -inf logits (masked vocabulary): 0 * log 0 = 0, computed only for affected rows.
        lp = logp[bad]
        p = lp.exp()
        entropy[bad] = -torch.where(p > 0, p * lp, torch.zeros_like(p)).sum(dim=-1)
    return TokenScores(logprob=tgt_logp, entropy=entropy, rank=rank)


def sequence_scores(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_chunk_elements: int = 2**27,
) -> SequenceScores:
    """Aggregate token scores over each sequence's predicted tokens.

    Parameters
    ----------
    logits
        ``[batch, length, vocab]`` model outputs for ``input_ids``.
    input_ids
        ``[batch, length]`` token ids.
    attention_mask
        ``[batch, length]``, 1 for real tokens (right padding); default all ones. Target ``i``
        counts when ``attention_mask[:, i]`` is 1.
    max_chunk_elements
        Bound on ``rows × positions × vocab`` processed at once (limits the float32
        intermediates to a few hundred MB).

    Returns
    -------
    SequenceScores

    Examples
    --------
    >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
    >>> s = sequence_scores(logits, torch.tensor([[0, 1, 2]]))
    >>> round(float(s.sup_seq), 4), float(s.acc_seq), float(s.avg_rank)
    (1.3863, 1.0, 0.0)
    """
    if logits.ndim != 3 or input_ids.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be [batch, length, vocab] matching input_ids {tuple(input_ids.shape)};"
            f" got {tuple(logits.shape)}."
        )
    b, length, vocab = logits.shape
    if length < 2:
        raise ValueError("sequences need at least 2 tokens.")
    mask = (
        torch.ones(b, length - 1, dtype=torch.bool, device=logits.device)
        if attention_mask is None
        else attention_mask[:, 1:].to(device=logits.device, dtype=torch.bool)
    )
    targets = input_ids[:, 1:].to(logits.device)
    rows = max(1, int(max_chunk_elements // max(1, (length - 1) * vocab)))
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, b, rows):
        sl = slice(start, start + rows)
        ts = token_scores(logits[sl, :-1], targets[sl])
        m = mask[sl]
        md = m.double()
        n = m.sum(dim=1)
        lp = (ts.logprob.double() * md).sum(dim=1)
        nd = n.double().clamp(min=1)
        parts.append(
            {
                "logprob": lp,
                "sup_seq": -lp / nd,
                "acc_seq": ((ts.rank == 0) & m).sum(dim=1).double() / nd,
                "entr_seq": (ts.entropy.double() * md).sum(dim=1) / nd,
                "avg_rank": (ts.rank.double() * md).sum(dim=1) / nd,
                "n_tokens": n.long(),
            }
        )
    cols = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return SequenceScores(**cols)
