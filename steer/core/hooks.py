"""Attach a steer to any transformers causal LM through a hook on its output embeddings.

The hook is a forward pre-hook on ``model.get_output_embeddings()`` (the LM head): it replaces
the head's input ``h`` with ``h' = h + eps * sum_i s_i (h P1_i) P2_i^T``. Nothing else changes:
no module is replaced, no parameter, dtype, device or training flag of the model is touched, and
removing the hook (``handle.remove()`` or leaving :func:`steering`) restores the logits
bit-exactly. Because the hook sits on the head module, not on the tied embedding matrix, the
input embeddings stay unsteered even when the weights are tied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from steer.core.transform import SteerTransform, ValuesLike, _broadcast_values, as_values
from steer.errors import NoOutputEmbeddingsError, SteerDimensionError

__all__ = ["SteerHandle", "attach", "output_head", "steering"]


def output_head(model: nn.Module) -> nn.Module:
    """Return the model's output-embedding module (its LM head).

    Parameters
    ----------
    model
        A transformers causal LM (``*ForCausalLM``) or any module with
        ``get_output_embeddings()`` returning a module with a ``weight`` of shape ``[V, d]``.

    Returns
    -------
    torch.nn.Module
        The head module (usually ``nn.Linear``).

    Raises
    ------
    NoOutputEmbeddingsError
        If the model has no output embeddings (for example a bare ``AutoModel`` backbone).
    """
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    if not isinstance(head, nn.Module):
        raise NoOutputEmbeddingsError(
            f"{type(model).__name__} has no output embeddings (get_output_embeddings() returned "
            f"{head!r}); load the model with AutoModelForCausalLM, not AutoModel."
        )
    w = getattr(head, "weight", None)
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise NoOutputEmbeddingsError(
            f"the output embeddings of {type(model).__name__} ({type(head).__name__}) have no "
            "2-D weight [vocab, hidden]; only linear LM heads can be steered."
        )
    return head


def head_weight(model: nn.Module) -> torch.Tensor:
    """Return the LM head's weight ``E`` (``[V, d]``)."""
    w = output_head(model).weight
    assert isinstance(w, torch.Tensor)
    return w


def head_hidden_size(model: nn.Module) -> int:
    """Return the hidden size ``d`` entering the LM head (``weight.shape[1]``)."""
    return int(head_weight(model).shape[1])


def check_dimension(model: nn.Module, transform: SteerTransform) -> None:
    """Raise :class:`SteerDimensionError` if the steer's ``d`` differs from the model's."""
    d = head_hidden_size(model)
    if transform.hidden_size != d:
        raise SteerDimensionError(
            f"the steer was built for hidden size {transform.hidden_size} "
            f"(base model {transform.base_model!r}), but {type(model).__name__} feeds its LM "
            f"head hidden states of size {d}; train a steer for this model or map it with a "
            "transfer."
        )


class _Plan:
    """Precomputed, device- and dtype-matched factors for the hook (pure function of its inputs).

    Constant values are folded into one ``[d, d]`` matrix when ``d < 2 k r`` (one small matmul per
    position) and into ``(A, B)`` low-rank factors otherwise; per-sequence values keep one
    ``[d, d]`` matrix per slot (or the low-rank factors) and weight them per row.
    """

    def __init__(self, transform: SteerTransform, values: torch.Tensor, like: torch.Tensor):
        dev, dt = like.device, like.dtype
        k, d, r = transform.p1.shape
        eps = transform.epsilon
        self.per_row = values.dim() == 2
        work = torch.float32 if dt in (torch.float16, torch.bfloat16) else dt
        p1 = transform.p1.to(device=dev, dtype=work)
        p2 = transform.p2.to(device=dev, dtype=work)
        if not self.per_row:
            active = [i for i in range(k) if float(values[i]) != 0.0]
            self.active = bool(active)
            if not active:
                return
            s = values[active].to(device=dev, dtype=work) * eps
            a = p1[active].permute(1, 0, 2).reshape(d, -1)  # [d, ka r]
            b = (p2[active] * s[:, None, None]).permute(0, 2, 1).reshape(-1, d)  # [ka r, d]
            if d < 2 * a.shape[1]:
                self.dense: torch.Tensor | None = (a @ b).to(dt)  # [d, d], acts on rows h
                self.a = self.b = None
            else:
                self.dense = None
                self.a, self.b = a.to(dt), b.to(dt)
            return
        self.active = bool((values != 0).any())
        self.values = (values * eps).to(device=dev, dtype=dt)  # [B, k]
        self.k, self.r, self.d = k, r, d
        if d < 2 * r:
            self.slots: torch.Tensor | None = (
                torch.einsum("kdr,ker->dke", p1, p2).reshape(d, k * d).to(dt)
            )  # h @ slots -> [..., k, d]
            self.a = self.b = None
        else:
            self.slots = None
            self.a = p1.permute(1, 0, 2).reshape(d, k * r).to(dt)
            self.b = p2.permute(0, 2, 1).reshape(k * r, d).to(dt)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        if not self.per_row:
            if self.dense is not None:
                return h + h @ self.dense
            return h + (h @ self.a) @ self.b  # type: ignore[operator]
        s = _broadcast_values(self.values, h)  # [..., k, 1]
        if self.slots is not None:
            z = (h @ self.slots).unflatten(-1, (self.k, self.d))  # [..., k, d]
            return h + (z * s).sum(-2)
        z = (h @ self.a).unflatten(-1, (self.k, self.r)) * s  # type: ignore[operator]
        return h + z.flatten(-2) @ self.b  # type: ignore[operator]


class SteerHandle:
    """A steer attached to a model; :meth:`remove` detaches it (also a context manager).

    Attributes
    ----------
    transform
        The attached steer.
    values
        The values it was attached with (``float64``, ``[k]`` or ``[B, k]``).
    """

    def __init__(
        self,
        transform: SteerTransform,
        values: torch.Tensor,
        hook: torch.utils.hooks.RemovableHandle | None,
    ) -> None:
        self.transform = transform
        self.values = values
        self._hook = hook

    @property
    def attached(self) -> bool:
        """Whether the hook is still registered (always ``False`` for all-zero values)."""
        return self._hook is not None

    def remove(self) -> None:
        """Detach the steer; the model's logits are again bit-exactly the base ones."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def __enter__(self) -> SteerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def attach(
    model: nn.Module,
    transform: SteerTransform,
    values: ValuesLike,
    *,
    allow_other_model: bool = False,
) -> SteerHandle:
    """Attach ``transform`` with slot ``values`` to ``model``'s LM head.

    Parameters
    ----------
    model
        A transformers causal LM (GPT-2, GPT-NeoX/Pythia, Llama/SmolLM, Gemma, Qwen, ...), tied
        or untied head; it is not modified.
    transform
        The steer; its hidden size must equal the model's head input size.
    values
        ``k`` slot values, or one row of ``k`` values per sequence of the batch (``[B, k]``).
        All-zero values attach nothing, so the logits stay bit-exactly the base logits.
    allow_other_model
        Attach even if the steer's recorded base model (``provenance["base_fingerprint"]``,
        see :mod:`steer.core.compat`) is not this model. Default False.

    Returns
    -------
    SteerHandle
        Call ``.remove()`` (or use it in a ``with`` block) to detach.

    Raises
    ------
    NoOutputEmbeddingsError
        If the model has no output embeddings.
    SteerDimensionError
        If the steer was built for another hidden size.
    BaseModelMismatchError
        If the steer records another base model (vocabulary or output embeddings differ) and
        ``allow_other_model`` is False.
    SteerValuesError
        If the values do not have one entry per slot, or are not finite.

    Examples
    --------
    >>> handle = attach(model, transform, transform.values(3.0))  # doctest: +SKIP
    >>> out = model.generate(**inputs)  # doctest: +SKIP
    >>> handle.remove()  # doctest: +SKIP
    """
    from steer.core.compat import check_base_model  # compat builds on this module

    head = output_head(model)
    check_dimension(model, transform)
    check_base_model(model, transform, allow_other_model=allow_other_model)
    vals = as_values(values, transform.num_steers)
    plan = _Plan(transform, vals, head_weight(model))
    if not plan.active:
        return SteerHandle(transform, vals, None)

    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (plan(args[0]), *args[1:])

    return SteerHandle(transform, vals, head.register_forward_pre_hook(pre_hook))


@contextmanager
def steering(
    model: nn.Module,
    transform: SteerTransform,
    values: ValuesLike,
    *,
    allow_other_model: bool = False,
) -> Iterator[SteerHandle]:
    """Steer ``model`` inside a ``with`` block; the model is restored exactly on exit.

    Parameters
    ----------
    model
        A transformers causal LM.
    transform
        The steer.
    values
        ``k`` slot values (``[k]``) or one row per sequence (``[B, k]``).
    allow_other_model
        Steer even a model other than the steer's recorded base model (see :func:`attach`).

    Yields
    ------
    SteerHandle
        The attached steer.

    Examples
    --------
    >>> with steering(model, transform, transform.values(-5.0)):  # doctest: +SKIP
    ...     logits = model(**inputs).logits
    """
    handle = attach(model, transform, values, allow_other_model=allow_other_model)
    try:
        yield handle
    finally:
        handle.remove()


def _attach_function(
    model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]
) -> torch.utils.hooks.RemovableHandle:
    """Register ``h -> fn(h)`` on the head input (used by end-to-end training)."""
    head = output_head(model)

    def pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (fn(args[0]), *args[1:])

    return head.register_forward_pre_hook(pre_hook)


class _Captured(Exception):
    """Raised by the capture hook to stop the forward pass before the LM head runs."""

    def __init__(self, hidden: torch.Tensor) -> None:
        super().__init__("hidden states captured")
        self.hidden = hidden


@torch.no_grad()
def head_inputs(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Compute the final hidden states entering the LM head, without computing the head itself.

    Parameters
    ----------
    model
        A transformers causal LM.
    input_ids, attention_mask
        ``[B, T]`` tensors.

    Returns
    -------
    torch.Tensor
        ``[B, T, d]``, exactly what the head would receive.
    """
    head = output_head(model)

    def grab(module: nn.Module, args: tuple[Any, ...]) -> None:
        raise _Captured(args[0])

    hook = head.register_forward_pre_hook(grab)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    except _Captured as cap:
        return cap.hidden
    finally:
        hook.remove()
    raise NoOutputEmbeddingsError(
        f"{type(model).__name__}.forward never called its output embeddings."
    )
