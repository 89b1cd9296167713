"""Keyword evidence: which tokens of a text a steer makes more (or less) likely.

Han et al., *Word Embeddings Are Steers for Language Models* (ACL 2024,
https://arxiv.org/abs/2305.12798), Table 7: for every token ``v_i`` of a text,

    Delta_i = log P_{eps W}(v_i | v_<i) - log P_0(v_i | v_<i)

and the best spans are chosen by a dynamic programme (``find_max_subspans(Delta, n_spans=4,
max_length=10)``). The paper compares with the unsteered model (``baseline="zero"``); the
reference repository's app compares the steer at ``+s`` with ``-s`` (``baseline="negated"``,
labelled slots negated, dummy slots kept); ``baseline="dummy"`` compares with the labelled slots
at 0 and the dummy slots kept, which removes the dummy's label-independent domain shift.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lmecon.result import ResultMixin, frozen_mapping
from steer._types import Baseline
from steer.core.compat import check_base_model, check_sequences
from steer.core.hooks import check_dimension, steering
from steer.core.transform import SteerTransform, ValuesLike, as_values
from steer.errors import SteerInputError

__all__ = [
    "Baseline",
    "Highlight",
    "find_max_subspans",
    "highlight",
    "highlight_grid",
    "highlights_html",
]


def find_max_subspans(
    delta: Sequence[float] | np.ndarray, n_spans: int = 4, max_length: int = 10
) -> tuple[list[tuple[int, int]], float]:
    """Up to ``n_spans`` non-overlapping spans of at most ``max_length`` items with maximal sum.

    Exact dynamic programme, ``O(n * n_spans * max_length)``: ``best[i][j]`` is the largest total
    over the first ``i`` items with at most ``j`` spans; item ``i`` either ends no span or ends a
    span of length ``L <= max_length``. Spans with a non-positive sum never help, so fewer than
    ``n_spans`` spans (possibly none) may be returned. Ties go to fewer spans, then to the
    earlier solution found.

    Parameters
    ----------
    delta
        Scores (finite).
    n_spans
        Maximum number of spans (>= 1).
    max_length
        Maximum span length (>= 1).

    Returns
    -------
    spans, total
        Half-open ``(start, end)`` index pairs in increasing order, and their total score.

    Examples
    --------
    >>> find_max_subspans([1.0, -5.0, 2.0, 2.0, -0.5, 3.0], n_spans=2, max_length=4)
    ([(0, 1), (2, 6)], 7.5)
    """
    x = np.asarray(delta, dtype=np.float64)
    if x.ndim != 1:
        raise SteerInputError(f"delta must be 1-D; got shape {x.shape}.")
    if not np.isfinite(x).all():
        raise SteerInputError("delta must be finite (drop positions without a prediction).")
    if int(n_spans) < 1 or int(max_length) < 1:
        raise SteerInputError(
            f"n_spans and max_length must be >= 1; got {n_spans} and {max_length}."
        )
    n, m, lmax = len(x), int(n_spans), int(max_length)
    csum = np.concatenate([[0.0], np.cumsum(x)])
    best = np.zeros((n + 1, m + 1))
    # choice[i, j] = length of the span ending at item i-1 (0: no span ends there)
    choice = np.zeros((n + 1, m + 1), dtype=np.int64)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            val, arg = best[i - 1, j], 0
            for length in range(1, min(lmax, i) + 1):
                cand = best[i - length, j - 1] + csum[i] - csum[i - length]
                if cand > val:
                    val, arg = cand, length
            best[i, j], choice[i, j] = val, arg
    spans: list[tuple[int, int]] = []
    i, j = n, m
    while i > 0 and j > 0:
        length = int(choice[i, j])
        if length == 0:
            i -= 1
        else:
            spans.append((i - length, i))
            i -= length
            j -= 1
    spans.reverse()
    total = float(sum(csum[e] - csum[s] for s, e in spans))
    return spans, total


def _baseline_values(
    transform: SteerTransform, values: torch.Tensor, baseline: str
) -> torch.Tensor:
    if baseline == "zero":
        return torch.zeros_like(values)
    out = values.clone()
    for i in transform.labelled_slots:
        out[i] = -values[i] if baseline == "negated" else 0.0
    return out


@torch.no_grad()
def _token_logprobs(
    model: nn.Module, transform: SteerTransform, ids: torch.Tensor, rows: torch.Tensor
) -> np.ndarray:
    """``log P(v_i | v_<i)``, ``i = 1..T-1``, of one sequence under each row of slot values.

    One batched forward pass with per-row values (``rows``: ``[n, k]``); returns ``[n, T-1]``.
    """
    dev = next(model.parameters()).device
    x = ids[None].expand(len(rows), -1).to(dev)
    with steering(model, transform, rows):
        logits = model(input_ids=x, attention_mask=torch.ones_like(x), use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].to(torch.float64), dim=-1)
    return logp.gather(-1, x[:, 1:, None]).squeeze(-1).cpu().numpy()


@dataclass(frozen=True, eq=False)
class Highlight(ResultMixin):
    """Per-token steer evidence of one text (result of :func:`highlight`).

    Attributes
    ----------
    text
        The text.
    token_ids
        Its token ids (``[T]``, special tokens the tokenizer adds included).
    pieces
        The text each token covers, including the whitespace before it (their concatenation is
        ``text`` when the tokenizer reports offsets); special tokens cover ``""``.
    logp_steered, logp_base
        ``log P(v_i | v_<i)`` under the steer and the baseline (``[T]``, NaN at position 0).
    delta
        ``logp_steered - logp_base`` (``[T]``, NaN at position 0, which has no prediction).
    spans
        Best spans (half-open token index pairs, positions >= 1) from :func:`find_max_subspans`.
    values, baseline_values
        Slot values of the steered and of the baseline model.
    baseline
        ``"zero"``, ``"negated"`` or ``"dummy"``.
    """

    text: str
    token_ids: tuple[int, ...]
    pieces: tuple[str, ...]
    logp_steered: np.ndarray
    logp_base: np.ndarray
    delta: np.ndarray
    spans: tuple[tuple[int, int], ...]
    values: tuple[float, ...]
    baseline_values: tuple[float, ...]
    baseline: str

    def __post_init__(self) -> None:
        for name in ("logp_steered", "logp_base", "delta"):
            a = np.array(getattr(self, name), dtype=np.float64)
            a.setflags(write=False)
            object.__setattr__(self, name, a)

    @property
    def spec(self) -> Mapping[str, Any]:
        """The comparison: steered ``values``, ``baseline`` and ``baseline_values``."""
        return frozen_mapping(
            {"values": self.values, "baseline": self.baseline,
             "baseline_values": self.baseline_values}
        )  # fmt: skip

    @property
    def provenance(self) -> Mapping[str, Any]:
        """The text's size: ``n_tokens`` and ``n_chars``."""
        return frozen_mapping({"n_tokens": len(self.token_ids), "n_chars": len(self.text)})

    def glance(self) -> pd.DataFrame:
        """One row: the text, the comparison, ``total_delta`` and the number of spans."""
        return pd.DataFrame(
            [
                {
                    "text": self.text,
                    "n_tokens": len(self.token_ids),
                    "values": ",".join(f"{v:g}" for v in self.values),
                    "baseline": self.baseline,
                    "total_delta": self.total_delta,
                    "n_spans": len(self.spans),
                }
            ]
        )

    def summary(self) -> str:
        """Return ``total_delta`` and the best spans as text."""
        vals = ", ".join(f"{v:g}" for v in self.values)
        lines = [
            f"Highlight of {len(self.token_ids)} tokens, values ({vals}) against the "
            f"{self.baseline!r} baseline: total Delta log P {self.total_delta:+.3f}"
        ]
        for r in self.spans_frame().itertuples():
            lines.append(f"  span {r.span}: {r.text!r} ({r.total_delta:+.3f})")
        return "\n".join(lines)

    @property
    def total_delta(self) -> float:
        """``log P_steered(text) - log P_base(text)`` (sum of the defined ``Delta_i``)."""
        return float(np.nansum(self.delta))

    def span_of(self) -> np.ndarray:
        """Span index of every token (``-1`` outside the spans)."""
        out = np.full(len(self.token_ids), -1, dtype=np.int64)
        for k, (s, e) in enumerate(self.spans):
            out[s:e] = k
        return out

    def tidy(self) -> pd.DataFrame:
        """Return one row per token.

        Columns: ``position, token_id, piece, logp_base, logp_steered, delta, span`` (``span``
        is the index of the best span holding the token, -1 outside).
        """
        return pd.DataFrame(
            {
                "position": np.arange(len(self.token_ids)),
                "token_id": np.asarray(self.token_ids, dtype=np.int64),
                "piece": list(self.pieces),
                "logp_base": self.logp_base,
                "logp_steered": self.logp_steered,
                "delta": self.delta,
                "span": self.span_of(),
            }
        )

    def spans_frame(self) -> pd.DataFrame:
        """One row per best span: ``span, start, end, n_tokens, text, total_delta, mean_delta``."""
        rows = []
        for k, (s, e) in enumerate(self.spans):
            d = self.delta[s:e]
            rows.append(
                {
                    "span": k,
                    "start": s,
                    "end": e,
                    "n_tokens": e - s,
                    "text": "".join(self.pieces[s:e]).strip(),
                    "total_delta": float(d.sum()),
                    "mean_delta": float(d.mean()),
                }
            )
        cols = ["span", "start", "end", "n_tokens", "text", "total_delta", "mean_delta"]
        return pd.DataFrame(rows, columns=cols)

    def to_html(self, scale: float | None = None, title: str | None = None) -> str:
        """Render as a self-contained HTML page (see :func:`highlights_html`)."""
        return highlights_html([self], scale=scale, titles=None if title is None else [title])

    def plot(self, **options: Any) -> Any:
        """Per-token ``Delta_i`` as bars coloured by sign, spans outlined (Altair).

        Built by :func:`steer.charts.highlight.delta_chart` from :meth:`tidy`.

        Parameters
        ----------
        **options
            Passed to the chart function (``title``).

        Returns
        -------
        altair.Chart
        """
        from steer.core.charts import delta_chart

        return delta_chart(self.tidy(), **options)


def _rgb(value: float, scale: float) -> str:
    """Diverging colour: blue for positive, red for negative, white at 0 (saturates at scale)."""
    if not np.isfinite(value) or scale <= 0:
        return "transparent"
    a = float(np.clip(abs(value) / scale, 0.0, 1.0))
    lo = (255, 255, 255)
    hi = (33, 102, 172) if value > 0 else (178, 24, 43)
    r, g, b = (round(lo[c] + a * (hi[c] - lo[c])) for c in range(3))
    return f"rgb({r},{g},{b})"


_CSS = """<style>
.steer-hl{font-family:system-ui,sans-serif;line-height:2.1;max-width:60em}
.steer-hl .tok{border-radius:3px;padding:1px 0;white-space:pre-wrap}
.steer-hl .span{outline:2px solid #222;outline-offset:1px}
.steer-hl .legend{font-size:.85em;color:#444}
</style>"""


def highlights_html(
    results: Sequence[Highlight], *, scale: float | None = None, titles: Sequence[str] | None = None
) -> str:
    """Render highlights as one self-contained HTML document (inline CSS, escaped text).

    Each token's background goes from red (the steer makes it less likely) through white to
    blue (more likely), saturating at ``scale`` (default: the largest ``|Delta|`` over all
    results); tokens inside a best span are outlined; hovering shows ``Delta``.

    Parameters
    ----------
    results
        Highlights to render, one paragraph each.
    scale
        ``|Delta|`` at which colours saturate.
    titles
        Optional heading per result.

    Returns
    -------
    str
        An HTML document.
    """
    if not results:
        raise SteerInputError("highlights_html needs at least one highlight.")
    if titles is not None and len(titles) != len(results):
        raise SteerInputError(f"got {len(titles)} titles for {len(results)} highlights.")
    if scale is None:
        finite = [np.nanmax(np.abs(r.delta)) for r in results if np.isfinite(r.delta).any()]
        scale = float(max(finite)) if finite else 1.0
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">', _CSS, "</head><body>"]
    parts.append(
        f'<p class="steer-hl legend">Delta_i = log P_steered(v_i | v_&lt;i) - log P_base; '
        f"blue: more likely under the steer, red: less likely; colours saturate at "
        f"|Delta| = {scale:.3g}; outlined: best spans.</p>"
    )
    for n, r in enumerate(results):
        span_of = r.span_of()
        if titles is not None:
            parts.append(f"<h3>{html.escape(titles[n])}</h3>")
        parts.append(
            f'<p class="steer-hl legend">values {list(r.values)} vs {r.baseline} baseline '
            f"{list(r.baseline_values)}; total Delta = {r.total_delta:+.3f}</p>"
        )
        toks = []
        for i, piece in enumerate(r.pieces):
            d = r.delta[i]
            tip = "no prediction" if not np.isfinite(d) else f"Delta = {d:+.3f}"
            cls = "tok span" if span_of[i] >= 0 else "tok"
            toks.append(
                f'<span class="{cls}" style="background:{_rgb(d, scale)}" '
                f'title="{html.escape(tip)}">{html.escape(piece)}</span>'
            )
        parts.append('<p class="steer-hl">' + "".join(toks) + "</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _pieces(tokenizer: Any, text: str, ids: list[int]) -> list[str]:
    try:
        enc = tokenizer(text, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if list(enc["input_ids"]) != ids:
            raise ValueError
    except (ValueError, NotImplementedError, KeyError, TypeError):
        return [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]
    out, prev = [], 0
    for s, e in offsets:
        if e <= s:  # special token (BOS, ...)
            out.append("")
            continue
        out.append(text[min(prev, s) : e])
        prev = e
    return out


def highlight(
    model: nn.Module,
    tokenizer: Any,
    transform: SteerTransform,
    text: str,
    *,
    values: ValuesLike | float,
    baseline: Baseline = "zero",
    n_spans: int = 4,
    max_length: int = 10,
    max_tokens: int = 256,
) -> Highlight:
    """Per-token steer evidence ``Delta_i`` of a text and its best spans (paper Table 7).

    Parameters
    ----------
    model, tokenizer
        The steer's base model (not modified) and its tokenizer.
    transform
        The steer.
    values
        Steered slot values (``k`` numbers), or one number for the labelled slots (dummy slots
        at 1, as :meth:`SteerTransform.values`).
    baseline
        ``"zero"`` (the unsteered model, as the paper), ``"negated"`` (labelled slots at ``-s``,
        dummy slots kept: the reference app's +1 vs -1) or ``"dummy"`` (labelled slots at 0,
        dummy slots kept).
    n_spans, max_length
        Settings of :func:`find_max_subspans` (paper: 4 and 10).
    max_tokens
        Texts are cut to this many tokens.

    Returns
    -------
    Highlight
        ``Delta_i`` per token (NaN for the first token, which has no prediction), the spans, a
        tidy frame and an HTML rendering.

    Raises
    ------
    SteerInputError
        If the text has fewer than 2 tokens, the baseline is unknown, or the values equal the
        baseline's.
    SteerDimensionError
        If the steer does not fit the model.

    Examples
    --------
    >>> hl = highlight(lm.model, lm.tokenizer, t, "A moving film.", values=5.0)  # doctest: +SKIP
    >>> hl.spans_frame()  # doctest: +SKIP
    """
    return highlight_grid(
        model, tokenizer, transform, text, values=[values], baselines=[baseline],
        n_spans=n_spans, max_length=max_length, max_tokens=max_tokens,
    )[0]  # fmt: skip


def highlight_grid(
    model: nn.Module,
    tokenizer: Any,
    transform: SteerTransform,
    text: str,
    *,
    values: Sequence[ValuesLike | float],
    baselines: Sequence[Baseline] = ("zero",),
    n_spans: int = 4,
    max_length: int = 10,
    max_tokens: int = 256,
) -> list[Highlight]:
    """:func:`highlight` for every (values, baseline) pair of one text, in one forward pass.

    The distinct slot-value rows (steered and baseline) are scored as one batch with per-row
    values, so ``+s`` and ``-s`` against the ``zero``, ``negated`` and ``dummy`` baselines
    cost one batched pass of 4 rows instead of 12 passes.

    Parameters
    ----------
    model, tokenizer, transform, text
        As :func:`highlight`.
    values
        Steered settings (each ``k`` numbers, or one number for the labelled slots).
    baselines
        Baselines to compare each setting with.
    n_spans, max_length, max_tokens
        As :func:`highlight`.

    Returns
    -------
    list of Highlight
        One per (values, baseline), values outer, baselines inner.
    """
    bad = [b for b in baselines if b not in ("zero", "negated", "dummy")]
    if bad or not baselines:
        raise SteerInputError(
            f"baseline must be 'zero', 'negated' or 'dummy'; got {bad or list(baselines)!r}."
        )
    if not isinstance(text, str):
        raise SteerInputError(f"text must be a string; got {type(text).__name__}.")
    if not values:
        raise SteerInputError("pass at least one setting of steer values.")
    check_dimension(model, transform)
    pairs = []
    for v in values:
        vv = transform.values(float(v)) if isinstance(v, int | float) else v
        vals = as_values(vv, transform.num_steers)
        if vals.dim() != 1:
            raise SteerInputError("highlight takes one row of k values per setting.")
        for b in baselines:
            base_vals = _baseline_values(transform, vals, b)
            if torch.equal(vals, base_vals):
                raise SteerInputError(
                    f"the steered values {vals.tolist()} equal the {b!r} baseline's; nothing "
                    "to compare (use non-zero values for the labelled slots)."
                )
            pairs.append((vals, base_vals, b))
    ids = list(tokenizer(text)["input_ids"])[: int(max_tokens)]
    if len(ids) < 2:
        raise SteerInputError(
            f"the text {text!r} has {len(ids)} token(s); highlighting needs at least 2 (the "
            "first token has no prediction)."
        )
    check_sequences(model, [ids], what="text", fix="lower max_tokens or shorten the text")
    check_base_model(model, transform, tokenizer)
    rows: list[tuple[float, ...]] = []
    for vals, base_vals, _ in pairs:
        for r in (tuple(vals.tolist()), tuple(base_vals.tolist())):
            if r not in rows:
                rows.append(r)
    lp = _token_logprobs(model, transform, torch.tensor(ids, dtype=torch.long), torch.tensor(rows))
    lp = np.concatenate([np.full((len(rows), 1), np.nan), lp], axis=1)
    if len(ids) == len(tokenizer(text)["input_ids"]):
        pieces = _pieces(tokenizer, text, ids)
    else:  # cut at max_tokens: decode each token
        pieces = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in ids]
    out = []
    for vals, base_vals, b in pairs:
        lp_s = lp[rows.index(tuple(vals.tolist()))]
        lp_b = lp[rows.index(tuple(base_vals.tolist()))]
        delta = lp_s - lp_b
        spans, _ = find_max_subspans(delta[1:], n_spans=n_spans, max_length=max_length)
        out.append(
            Highlight(
                text=text,
                token_ids=tuple(ids),
                pieces=tuple(pieces),
                logp_steered=lp_s,
                logp_base=lp_b,
                delta=delta,
                spans=tuple((s0 + 1, e0 + 1) for s0, e0 in spans),
                values=tuple(vals.tolist()),
                baseline_values=tuple(base_vals.tolist()),
                baseline=b,
            )
        )
    return out
