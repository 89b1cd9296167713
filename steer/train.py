"""``fit_steer``: train LM-Steer on labelled texts with the language model frozen.

Objective (Han et al. 2024, https://arxiv.org/abs/2305.12798, sec. 3; reference repository
``experiments/training/train.py``): for texts ``x`` with labels ``y`` in [-1, 1],

    min_{P1,P2}  mean_{tokens t of x} -log P_{y eps_0 W}(x_t | x_<t)  +  lambda (|P1|^2 + |P2|^2)

with slot values ``s = (y, 1)`` when a dummy slot is present. Only target tokens inside the
attention mask count (pitfall 1: the reference code also trains on padding).

Because the steer acts only on the hidden state ``h`` entering the LM head, the frozen model's
``h`` for every text can be computed once and cached; each step then costs only the head
(``|V| d`` per token) instead of a full forward pass. The cache is checked against the model's
own logits on the first texts (models that post-process logits other than by Gemma-style
soft-capping fall back to running the model each step).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from lmecon.provenance import library_versions, utc_now
from lmecon.result import ResultMixin, frozen_mapping
from steer.config import SteerConfig, SteerTrainConfig
from steer.core.compat import FINGERPRINT_KEY, base_fingerprint, check_sequences
from steer.core.hooks import _attach_function, head_inputs, head_weight, output_head
from steer.core.module import LowRankSteer
from steer.core.transform import SteerTransform
from steer.errors import LabelRangeError, SteerInputError, SteerWarning

__all__ = ["SteerFit", "check_labels", "fit_steer", "model_id"]


@dataclass(frozen=True, eq=False)
class SteerFit(ResultMixin):
    """The result of :func:`fit_steer`.

    Attributes
    ----------
    transform
        The trained steer (float32, CPU).
    steer_config, train_config
        The configuration used.
    loss, nll, penalty, seconds
        Per-step history: total loss, mean token negative log-likelihood (nats), the
        ``lambda``-weighted penalty, and wall-clock seconds of the step.
    hidden_cache_used
        Whether training ran on cached final hidden states.
    cache_seconds
        Time spent computing the cached hidden states (0 without a cache).
    train_seconds
        Time spent in the optimisation loop.
    n_texts, n_tokens, n_dropped
        Texts and target tokens trained on, and texts dropped for having fewer than 2 tokens.
    """

    transform: SteerTransform
    steer_config: SteerConfig
    train_config: SteerTrainConfig
    loss: tuple[float, ...]
    nll: tuple[float, ...]
    penalty: tuple[float, ...]
    seconds: tuple[float, ...]
    hidden_cache_used: bool
    cache_seconds: float
    train_seconds: float
    n_texts: int
    n_tokens: int
    n_dropped: int

    @property
    def spec(self) -> Mapping[str, Any]:
        """The call's settings: ``steer_config`` and ``train_config`` (frozen dataclasses)."""
        return frozen_mapping(
            {"steer_config": self.steer_config, "train_config": self.train_config}
        )

    @property
    def provenance(self) -> Mapping[str, Any]:
        """The trained steer's provenance (time, library versions, configs, data sizes)."""
        return self.transform.provenance

    def tidy(self) -> pd.DataFrame:
        """Return the per-step history (:meth:`history_frame`)."""
        return self.history_frame()

    def glance(self) -> pd.DataFrame:
        """One row: the steer's shape, the data, the final loss and the timings."""
        t = self.transform
        return pd.DataFrame(
            [
                {
                    "base_model": t.base_model,
                    "num_steers": t.num_steers,
                    "hidden_size": t.hidden_size,
                    "rank": t.rank,
                    "epsilon": t.epsilon,
                    "steps": len(self.loss),
                    "n_texts": self.n_texts,
                    "n_tokens": self.n_tokens,
                    "n_dropped": self.n_dropped,
                    "final_loss": self.loss[-1] if self.loss else float("nan"),
                    "final_nll": self.nll[-1] if self.nll else float("nan"),
                    "hidden_cache_used": self.hidden_cache_used,
                    "cache_seconds": self.cache_seconds,
                    "train_seconds": self.train_seconds,
                }
            ]
        )

    def summary(self) -> str:
        """Return the steer's shape, the data and the loss as text."""
        g = self.glance().iloc[0]
        return (
            f"Steer for {g['base_model']}: {g['num_steers']} slots, d = {g['hidden_size']}, "
            f"r = {g['rank']}, eps_0 = {g['epsilon']:g}; {g['steps']} steps on {g['n_texts']} "
            f"texts ({g['n_tokens']} tokens, {g['n_dropped']} dropped); final loss "
            f"{g['final_loss']:.4f} (token NLL {g['final_nll']:.4f}); training "
            f"{self.train_seconds:.1f} s, caching {self.cache_seconds:.1f} s."
        )

    def _table(self) -> pd.DataFrame:
        return self.glance()

    def history_frame(self, gamma: float = 0.99) -> pd.DataFrame:
        """Per-step history as a frame.

        Parameters
        ----------
        gamma
            Decay of the bias-corrected running mean of the loss (the reference repository logs
            a running mean with 0.99).

        Returns
        -------
        pandas.DataFrame
            Columns ``step, loss, nll, penalty, seconds, running_loss``.
        """
        loss = np.asarray(self.loss, dtype=np.float64)
        run = np.empty_like(loss)
        acc = 0.0
        for i, v in enumerate(loss):
            acc = gamma * acc + (1 - gamma) * v
            run[i] = acc / (1 - gamma ** (i + 1))
        return pd.DataFrame(
            {
                "step": np.arange(1, len(loss) + 1),
                "loss": loss,
                "nll": np.asarray(self.nll),
                "penalty": np.asarray(self.penalty),
                "seconds": np.asarray(self.seconds),
                "running_loss": run,
            }
        )


def model_id(model: nn.Module) -> str:
    """Return a best-effort identifier of a transformers model (``config._name_or_path``)."""
    cfg = getattr(model, "config", None)
    name = getattr(cfg, "_name_or_path", "") or getattr(cfg, "name_or_path", "")
    return str(name) or type(model).__name__


def _has_booleans(labels: Any) -> bool:
    """Whether ``labels`` is or holds a boolean (numpy, pandas, nested lists)."""
    if isinstance(labels, bool | np.bool_):
        return True
    if hasattr(labels, "to_numpy"):
        labels = labels.to_numpy()
    dtype = getattr(labels, "dtype", None)
    if dtype is not None:
        if str(dtype) in ("bool", "boolean"):
            return True
        return str(dtype) == "object" and any(_has_booleans(x) for x in np.ravel(labels))
    if isinstance(labels, list | tuple):
        return any(
            _has_booleans(x) if isinstance(x, list | tuple | np.ndarray)
            else isinstance(x, bool | np.bool_)
            for x in labels
        )  # fmt: skip
    return False


def check_labels(labels: Any, n_texts: int, num_steers: int) -> np.ndarray:
    """Validate labels and return them as ``float64`` of shape ``[n, num_steers]``.

    Label convention: positive labels push towards the attribute, negative labels away from it,
    0 is neutral. Booleans are refused, because ``True``/``False`` would become 1/0 and turn
    the negative examples into neutral ones; map them explicitly (``np.where(b, 1.0, -1.0)``).

    Parameters
    ----------
    labels
        ``[n]`` (one labelled slot) or ``[n, num_steers]``; binary (-1/+1) or graded, in [-1, 1].
    n_texts
        Number of texts.
    num_steers
        Labelled slots.

    Returns
    -------
    numpy.ndarray
        ``[n, num_steers]`` labels.

    Raises
    ------
    LabelRangeError
        If a label is missing, not finite, outside [-1, 1] or a boolean.
    SteerInputError
        If the shape does not match the texts and slots.
    """
    if _has_booleans(labels):
        raise LabelRangeError(
            "labels are booleans (True/False); as numbers they would become 1/0, so the False "
            "texts would count as neutral instead of negative. Map them explicitly: "
            "np.where(labels, 1.0, -1.0) for positive/negative (or 1.0/0.0 if False means "
            "neutral)."
        )
    try:
        y = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise LabelRangeError(f"labels must be numbers in [-1, 1]; got {labels!r}.") from exc
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape != (n_texts, num_steers):
        raise SteerInputError(
            f"labels have shape {np.asarray(labels).shape}; expected ({n_texts},) or "
            f"({n_texts}, {num_steers}) for {n_texts} texts and {num_steers} labelled slot(s)."
        )
    bad = ~np.isfinite(y) | (np.abs(y) > 1.0)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise LabelRangeError(
            f"{len(rows)} label(s) are missing or outside [-1, 1] (first at text {rows[0]}: "
            f"{y[rows[0]].tolist()}); map ratings into [-1, 1] first, e.g. rating / max_rating "
            "(positive = the direction the steer should push to)."
        )
    return y


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise SteerInputError("texts must be a sequence of strings.")
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [list(map(int, ids)) for ids in enc["input_ids"]]


def pad_id(tokenizer: Any) -> int:
    """Return the tokenizer's pad id, else its EOS id, else 0 (padding is always masked out)."""
    for attr in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, attr, None)
        if isinstance(v, int):
            return v
    return 0


def pad_batch(
    seqs: Sequence[Sequence[int]], pad: int, side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists into ``input_ids`` and ``attention_mask`` (``[B, T]``, int64)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if side == "right":
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        else:
            ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s) :] = 1
    return ids, mask


class _Head:
    """The LM head as a pure function of ``h``.

    ``F.linear`` on the detached weight, with Gemma-style final-logit soft-capping when the
    config asks for it.
    """

    def __init__(self, model: nn.Module) -> None:
        head = output_head(model)
        self.ok = isinstance(head, nn.Linear)
        self.weight = head_weight(model).detach()
        bias = getattr(head, "bias", None)
        self.bias = bias.detach() if isinstance(bias, torch.Tensor) else None
        cfg: Any = getattr(model, "config", None)
        text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        cap = getattr(text_cfg, "final_logit_softcapping", None)
        self.softcap = float(cap) if cap else None

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        z = F.linear(h, self.weight, self.bias)
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z

    def nll(self, h: torch.Tensor, targets: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Mean next-token NLL of ``targets`` given head inputs ``h`` (``[N, d]``), fused.

        Equal to ``F.cross_entropy(self(h), targets)`` with its gradient for ``h``, computed in
        chunks of rows so that the ``[N, V]`` logits and their gradient are never stored.
        """
        return _FusedHeadNLL.apply(h, self.weight, self.bias, targets, self.softcap, chunk)


class _FusedHeadNLL(torch.autograd.Function):
    """``mean_n -log softmax(cap(h_n E^T + b))[y_n]`` with the gradient for ``h`` only.

    The gradient is formed in the forward pass chunk by chunk (``(softmax - onehot) E``, times
    ``1 - tanh^2`` under soft-capping); the frozen ``E`` and ``b`` get none.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        h: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        softcap: float | None,
        chunk: int,
    ) -> torch.Tensor:
        n = h.shape[0]
        grad = torch.empty_like(h)
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for s in range(0, n, chunk):
            e = min(s + chunk, n)
            z = F.linear(h[s:e], weight, bias).float()
            if softcap:
                t = torch.tanh(z / softcap)
                z = t * softcap
            lse = torch.logsumexp(z, dim=-1, keepdim=True)
            rows = torch.arange(e - s, device=h.device)
            tgt = targets[s:e]
            total += (lse.squeeze(-1) - z[rows, tgt]).double().sum()
            p = z.sub_(lse).exp_()
            p[rows, tgt] -= 1.0
            if softcap:
                p.mul_(1.0 - t.square())
            grad[s:e] = (p.to(weight.dtype) @ weight).to(h.dtype)
        ctx.save_for_backward(grad / n)
        return (total / n).to(torch.float32)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return g.to(grad.dtype) * grad, None, None, None, None, None


def _masked_nll(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over target positions inside the attention mask (pitfall 1)."""
    lg = logits[:, :-1].float()
    tgt = ids[:, 1:]
    m = (mask[:, 1:] * mask[:, :-1]).bool()
    return F.cross_entropy(lg[m], tgt[m])


def _verify_head(model: nn.Module, head: _Head, seqs: list[list[int]], pad: int) -> bool:
    """Whether ``head(h)`` reproduces the model's logits on a few texts."""
    if not head.ok:
        return False
    ids, mask = pad_batch(seqs, pad)
    dev = head.weight.device
    ids, mask = ids.to(dev), mask.to(dev)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        got = head(head_inputs(model, ids, mask))
    m = mask.bool()
    if ref.shape != got.shape:
        return False
    a, b = ref[m].float(), got[m].float()
    return bool((a - b).abs().max() <= 1e-4 * (1.0 + a.abs().max()))


class _Cache:
    """Flat cache of final hidden states: rows ``h_t`` predicting ``x_{t+1}`` for every text."""

    def __init__(
        self, model: nn.Module, seqs: list[list[int]], pad: int, batch_size: int, progress: bool
    ) -> None:
        from tqdm.auto import tqdm

        dev = head_weight(model).device
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
        per_text: list[torch.Tensor | None] = [None] * len(seqs)
        bar = tqdm(total=len(seqs), desc="caching hidden states", unit="text", disable=not progress)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask = pad_batch([seqs[i] for i in chunk], pad)
            h = head_inputs(model, ids.to(dev), mask.to(dev))
            for row, i in enumerate(chunk):
                per_text[i] = h[row, : len(seqs[i]) - 1].clone()
            bar.update(len(chunk))
        bar.close()
        lengths = torch.tensor([len(s) - 1 for s in seqs])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
        self.hidden = torch.cat([t for t in per_text if t is not None])  # [N_tok, d]
        self.targets = torch.cat([torch.tensor(s[1:], dtype=torch.long) for s in seqs]).to(dev)
        self.owner = torch.repeat_interleave(torch.arange(len(seqs)), lengths).to(dev)

    def rows(self, texts: torch.Tensor) -> torch.Tensor:
        """Row indices of the given texts' target tokens."""
        return torch.cat(
            [torch.arange(int(self.offsets[i]), int(self.offsets[i + 1])) for i in texts.tolist()]
        ).to(self.hidden.device)


class _Batches:
    """Batches of text indices: shuffled epochs drawn from an explicit generator."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator) -> None:
        self.n, self.bs, self.g = n, min(batch_size, n), generator
        self.perm = torch.randperm(n, generator=generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.bs > self.n:
            self.perm = torch.randperm(self.n, generator=self.g)
            self.pos = 0
        out = self.perm[self.pos : self.pos + self.bs]
        self.pos += self.bs
        return out


def fit_steer(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    labels: Any,
    steer_config: SteerConfig | None = None,
    train_config: SteerTrainConfig | None = None,
    *,
    base_model: str | None = None,
) -> SteerFit:
    """Train an LM-Steer on labelled texts; the language model stays frozen and unmodified.

    Implements the training objective of Han et al. (2024), https://arxiv.org/abs/2305.12798:
    maximise the likelihood of each text under the model steered with ``eps = y eps_0`` (and the
    dummy slot at 1), with Adam and ``lambda (||P1||^2 + ||P2||^2)``. Padding never enters the
    loss. Randomness (initialisation, batch order) comes from ``train_config.seed`` only.

    Parameters
    ----------
    model
        A transformers causal LM (any architecture with a linear LM head). Its parameters,
        gradients and dtype are not touched; its train/eval flag is restored on return.
    tokenizer
        The model's tokenizer (called, never modified).
    texts
        Training texts.
    labels
        One label in [-1, 1] per text (``[n]``) or one per labelled slot (``[n, num_steers]``);
        binary (+1/-1) or graded (e.g. SST-5's ``label / 2 - 1``). Positive labels define the
        direction of positive steer values. Booleans are refused (``False`` would become the
        neutral 0); map them to +1/-1 first.
    steer_config
        Shape of the steer (default :class:`SteerConfig`).
    train_config
        Optimisation settings (default :class:`SteerTrainConfig`).
    base_model
        Identifier recorded in the transform (default: the model's ``_name_or_path``). The
        transform's provenance also records the model's and the tokenizer's fingerprint
        (``base_fingerprint``, see :mod:`steer.core.compat`), checked whenever the steer is
        attached to a model.

    Returns
    -------
    SteerFit
        The frozen transform, the loss history and timings.

    Raises
    ------
    LabelRangeError
        If a label is outside [-1, 1], not finite or a boolean.
    SteerInputError
        If the texts are empty or do not match the labels, a token id is outside the model's
        vocabulary (another model's tokenizer), or ``max_length`` exceeds the model's context
        for some text.

    Examples
    --------
    >>> fit = fit_steer(model, tok, ["great film", "awful film"], [1.0, -1.0],
    ...                 train_config=SteerTrainConfig(steps=50))  # doctest: +SKIP
    >>> with steering(model, fit.transform, fit.transform.values(3.0)):  # doctest: +SKIP
    ...     ...
    """
    sc = steer_config or SteerConfig()
    tc = train_config or SteerTrainConfig()
    weight = head_weight(model)
    d = int(weight.shape[1])
    texts = list(texts) if not isinstance(texts, str) else texts
    if len(texts) == 0:
        raise SteerInputError("fit_steer needs at least one text.")
    y = check_labels(labels, len(texts), sc.num_steers)
    seqs_all = _tokenize(tokenizer, texts, tc.max_length)
    check_sequences(
        model, seqs_all, what="text", fix=f"lower max_length (now {tc.max_length}) to the context"
    )
    keep = [i for i, s in enumerate(seqs_all) if len(s) >= 2]
    if not keep:
        raise SteerInputError("every text has fewer than 2 tokens; nothing to predict.")
    seqs = [seqs_all[i] for i in keep]
    y = y[keep]
    pad = pad_id(tokenizer)
    dev = weight.device
    k = sc.total_slots
    values = torch.ones((len(seqs), k), dtype=torch.float32)
    values[:, : sc.num_steers] = torch.from_numpy(y).float()
    values = values.to(dev)

    gen = torch.Generator().manual_seed(int(tc.seed))
    steer = LowRankSteer(k, d, sc.rank, sc.epsilon, sc.init_var, gen).to(dev)
    params: list[torch.Tensor] = list(steer.parameters())
    opt = torch.optim.Adam(params, lr=tc.lr)
    batches = _Batches(len(seqs), tc.batch_size, gen)
    head = _Head(model)

    was_training = model.training
    model.eval()
    try:
        use_cache = tc.hidden_cache != "never"
        if use_cache and not _verify_head(model, head, seqs[:2], pad):
            if tc.hidden_cache == "always":
                raise SteerInputError(
                    f"{type(model).__name__}'s logits are not F.linear(h, head.weight) (+ "
                    "soft-capping) of the head input, so hidden states cannot be cached; use "
                    "hidden_cache='never'."
                )
            warnings.warn(
                f"{type(model).__name__}'s logits could not be reproduced from cached hidden "
                "states; training runs the whole model each step (hidden_cache='never').",
                SteerWarning,
                stacklevel=2,
            )
            use_cache = False
        t0 = time.perf_counter()
        cache = _Cache(model, seqs, pad, tc.cache_batch_size, tc.progress) if use_cache else None
        cache_seconds = time.perf_counter() - t0 if use_cache else 0.0
        n_tokens = sum(len(s) - 1 for s in seqs)
        losses, nlls, pens, secs = _optimise(
            model, steer, params, opt, batches, head, cache, seqs, values, pad, tc
        )
    finally:
        model.train(was_training)
    train_seconds = float(sum(secs))
    base = base_model or model_id(model)
    provenance = {
        "created_at": utc_now(),
        "versions": library_versions(),
        "steer_config": sc.to_dict(),
        "train_config": tc.to_dict(),
        "n_texts": len(seqs),
        "n_tokens": n_tokens,
        "hidden_cache_used": cache is not None,
        "final_loss": losses[-1],
        FINGERPRINT_KEY: base_fingerprint(model, tokenizer),
    }
    transform = steer.to_transform(base, sc.all_slot_names, sc.dummy_slots, provenance)
    return SteerFit(
        transform=transform,
        steer_config=sc,
        train_config=tc,
        loss=tuple(losses),
        nll=tuple(nlls),
        penalty=tuple(pens),
        seconds=tuple(secs),
        hidden_cache_used=cache is not None,
        cache_seconds=cache_seconds,
        train_seconds=train_seconds,
        n_texts=len(seqs),
        n_tokens=n_tokens,
        n_dropped=len(texts) - len(seqs),
    )


def _optimise(
    model: nn.Module,
    steer: LowRankSteer,
    params: list[torch.Tensor],
    opt: torch.optim.Optimizer,
    batches: _Batches,
    head: _Head,
    cache: _Cache | None,
    seqs: list[list[int]],
    values: torch.Tensor,
    pad: int,
    tc: SteerTrainConfig,
) -> tuple[list[float], list[float], list[float], list[float]]:
    from tqdm.auto import tqdm

    losses: list[float] = []
    nlls: list[float] = []
    pens: list[float] = []
    secs: list[float] = []
    bar = tqdm(total=tc.steps, desc="training steer", unit="step", disable=not tc.progress)
    for _ in range(tc.steps):
        t0 = time.perf_counter()
        texts = batches.next()
        with torch.enable_grad():
            if cache is not None:
                nll = _cached_nll(steer, head, cache, values, texts)
            else:
                nll = _end_to_end_nll(model, steer, seqs, values, texts, pad)
            pen = tc.regularization * steer.penalty() if tc.regularization else nll.new_zeros(())
            loss = nll + pen
            grads = torch.autograd.grad(loss, params)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        nlls.append(float(nll.detach()))
        pens.append(float(pen.detach()))
        secs.append(time.perf_counter() - t0)
        if not math.isfinite(losses[-1]):
            bar.close()
            raise SteerInputError(
                f"the loss became {losses[-1]} at step {len(losses)}; lower lr or epsilon."
            )
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
        bar.update(1)
    bar.close()
    return losses, nlls, pens, secs


def _cached_nll(
    steer: LowRankSteer, head: _Head, cache: _Cache, values: torch.Tensor, texts: torch.Tensor
) -> torch.Tensor:
    rows = cache.rows(texts)
    h = steer(cache.hidden[rows], values[cache.owner[rows]])
    return head.nll(h, cache.targets[rows])


def _end_to_end_nll(
    model: nn.Module,
    steer: LowRankSteer,
    seqs: list[list[int]],
    values: torch.Tensor,
    texts: torch.Tensor,
    pad: int,
) -> torch.Tensor:
    dev = values.device
    ids, mask = pad_batch([seqs[i] for i in texts.tolist()], pad)
    ids, mask = ids.to(dev), mask.to(dev)
    rows = values[texts.to(dev)]
    # h is detached: gradients flow only into the steer, never into the frozen model.
    hook = _attach_function(model, lambda h: steer(h.detach(), rows))
    try:
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    finally:
        hook.remove()
    return _masked_nll(logits, ids, mask)
