"""How closely a transferred steer reproduces its source steer, on held-out texts.

For every prefix of a text that both tokenisations end at (both models have read the same
text), the steers' logit shifts over the shared vocabulary are compared (correlation, top-k and
bottom-k overlap, scale); per text, ``Delta log P(text)``; per token too when both models
tokenise every text identically.
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
from steer.core.hooks import check_dimension, head_weight, steering
from steer.core.transform import SteerTransform, ValuesLike, as_values
from steer.crossmodel.vocab import _aligned_pairs, _ends, shared_vocabulary
from steer.errors import SteerInputError

__all__ = ["TransferFidelity", "transfer_fidelities", "transfer_fidelity"]


@dataclass(frozen=True, eq=False)
class TransferFidelity(ResultMixin):
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
    spec
        The call's settings (slot values, ``top_k``, ``max_tokens``, number of texts).
    provenance
        The steers compared (their base models and the target steer's name).
    """

    positions: pd.DataFrame
    texts: pd.DataFrame
    token_corr: float
    top_k: int
    overlap: int
    spec: Mapping[str, Any] = field(default_factory=dict)
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec", frozen_mapping(dict(self.spec)))
        object.__setattr__(self, "provenance", frozen_mapping(dict(self.provenance)))

    @property
    def chance(self) -> float:
        """Expected top-k overlap of two unrelated rankings."""
        return self.top_k / self.overlap if self.overlap else float("nan")

    def summary_dict(self) -> dict[str, float]:
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

    def glance(self) -> pd.DataFrame:
        """One row: :meth:`summary_dict`."""
        return pd.DataFrame([self.summary_dict()])

    def summary(self) -> str:
        """Return a one-paragraph description of the fidelity."""
        s = self.summary_dict()
        return (
            f"Transfer fidelity over {s['overlap']} shared tokens, {s['n_positions']} aligned "
            f"contexts of {s['n_texts']} texts: logit-shift correlation mean "
            f"{s['logit_corr_mean']:.3f} (median {s['logit_corr_median']:.3f}); top-{self.top_k} "
            f"overlap {s['topk_overlap_mean']:.3f} (chance {self.chance:.3f}); scale ratio "
            f"{s['scale_ratio_median']:.3f}; Delta log P correlation "
            f"{s['text_delta_logp_corr']:.3f} per text, {s['token_delta_logp_corr']:.3f} per token."
        )

    def _table(self) -> pd.DataFrame:
        return self.glance()

    def plot(self) -> Any:
        """Histogram of the per-context correlation of source and target logit shifts (Altair).

        Built by :func:`steer.charts.transfer.fidelity_chart` from :meth:`tidy`.

        Returns
        -------
        altair.Chart
        """
        from steer.core.charts import fidelity_chart

        return fidelity_chart(self.tidy())


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
        Per-context and per-text frames and a :meth:`TransferFidelity.summary_dict`.

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
    sv = _slot_values(source_transform, values)
    targets = {name: (t, _slot_values(t, values)) for name, t in target_transforms.items()}
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
    accs = {name: _Rows() for name in targets}
    tok_src: list[np.ndarray] = []
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
        pairs = _aligned_pairs(s_ends, t_ends)
        shifts_s = {i: (ss[i] - sb[i])[sid].numpy() for i, _ in pairs}
        text_row = {"text_index": n, "text": text, "source_delta_logp": float(ds.sum())}
        for name, (t, tv) in targets.items():
            tb, ts = _run(target_model, t_ids, t, tv)
            dt = _delta_logp(tb, ts, t_ids)
            accs[name].texts.append(
                {**text_row, "target_delta_logp": float(dt.sum()), "source_tokens": len(s_ids),
                 "target_tokens": len(t_ids)}
            )  # fmt: skip
            if aligned:
                accs[name].tokens.append(dt)
            for i, j in pairs:
                shift_t = (ts[j] - tb[j])[tid].numpy()
                accs[name].positions.append(
                    _context_row(n, s_ends[i], i, j, shifts_s[i], shift_t, kk)
                )
    if not next(iter(accs.values())).positions:
        raise SteerInputError(
            "no text has a prefix that both tokenisations end at (or every text is shorter "
            "than 2 tokens); pass longer texts."
        )
    spec = {"source_values": tuple(sv.reshape(-1).tolist()), "top_k": int(top_k),
            "max_tokens": int(max_tokens), "n_texts": len(texts)}  # fmt: skip
    return {
        name: TransferFidelity(
            positions=pd.DataFrame(acc.positions),
            texts=pd.DataFrame(acc.texts),
            token_corr=(
                _pearson(np.concatenate(tok_src), np.concatenate(acc.tokens))
                if same_tokens and tok_src
                else float("nan")
            ),
            top_k=kk,
            overlap=len(sid),
            spec=spec,
            provenance={
                "source_model": source_transform.base_model,
                "target_steer": name,
                "target_model": targets[name][0].base_model,
            },  # fmt: skip
        )
        for name, acc in accs.items()
    }


@dataclass
class _Rows:
    """Rows collected for one target steer."""

    positions: list[dict[str, Any]] = field(default_factory=list)
    texts: list[dict[str, Any]] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)


def _slot_values(t: SteerTransform, values: ValuesLike | float) -> torch.Tensor:
    """Slot values of one steer: one number sets the labelled slots (dummy slots at 1)."""
    if isinstance(values, int | float):
        return as_values(t.values(float(values)), t.num_steers)
    return as_values(values, t.num_steers)


def _context_row(
    n: int, char_end: int, i: int, j: int, a: np.ndarray, b: np.ndarray, kk: int
) -> dict[str, Any]:
    """Compare the source's (``a``) and the target's (``b``) logit shifts at one context."""
    top_a, top_b = np.argsort(-a)[:kk], np.argsort(-b)[:kk]
    bot_a, bot_b = np.argsort(a)[:kk], np.argsort(b)[:kk]
    return {
        "text_index": n,
        "char_end": char_end,
        "source_pos": i,
        "target_pos": j,
        "logit_corr": _pearson(a, b),
        "topk_overlap": len(set(top_a) & set(top_b)) / kk,
        "bottomk_overlap": len(set(bot_a) & set(bot_b)) / kk,
        "scale_ratio": float(b.std() / a.std()) if a.std() > 0 else float("nan"),
    }
