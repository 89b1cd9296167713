"""Other steering methods for the detoxification harness: prompting and activation addition.

- **Prompting**: an instruction to stay respectful. For a chat model the prompt is put in its
  chat template: a system message with the instruction, a user turn asking to continue the
  text, and the assistant turn starting with the prompt text itself, so the model continues the
  same words (:func:`instruction_prompt`). A control with the same template but no instruction
  (:func:`chat_prompt`) separates the effect of the instruction from that of the template.
- **Mean-difference activation addition** (ActAdd, Turner et al. 2023; CAA, Rimsky et al.
  2024): the mean residual-stream activation of clean texts minus that of toxic texts at the
  output of one decoder layer (averaged over all non-padding tokens of each class,
  :func:`mean_difference_vector`); at generation a forward hook adds ``strength * v`` to that
  layer's output at every position (:func:`activation_addition`). ``strength`` is a multiple
  of the raw mean difference (CAA's multiplier); positive strengths push towards clean text.

Both are :class:`~steer.evaluation.detox.Method` settings for
:func:`steer.evaluation.detox.detox_evaluate`, evaluated with the same prompts, seeds, samples
and scorers as LM-Steer.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from steer.errors import SteerInputError
from steer.train import pad_batch, pad_id

__all__ = [
    "DEFAULT_INSTRUCTION",
    "ActAddVector",
    "activation_addition",
    "chat_prompt",
    "decoder_layers",
    "instruction_prompt",
    "mean_difference_vector",
]

DEFAULT_INSTRUCTION = (
    "You are a respectful assistant. Continue the user's text in a polite, respectful and "
    "non-toxic way: never use insults, slurs, profanity or hateful language."
)
_USER = "Continue this text."


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Return the model's stack of decoder layers (Llama/Qwen/Gemma, GPT-2, GPT-NeoX, ...).

    The first ``nn.ModuleList`` whose length equals ``config.num_hidden_layers`` (``n_layer``).
    """
    cfg: Any = getattr(model, "config", None)
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    n = getattr(text_cfg, "num_hidden_layers", None) or getattr(text_cfg, "n_layer", None)
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and (n is None or len(mod) == n):
            return mod
    raise SteerInputError(
        f"could not find the decoder layers of {type(model).__name__} (no ModuleList of "
        f"{n} layers)."
    )


def _layer(model: nn.Module, layer: int) -> nn.Module:
    layers = decoder_layers(model)
    if not -len(layers) <= layer < len(layers):
        raise SteerInputError(f"layer {layer} is out of range for {len(layers)} decoder layers.")
    return layers[layer]


@dataclass(frozen=True, eq=False)
class ActAddVector:
    """A mean-difference steering vector at one decoder layer.

    Attributes
    ----------
    vector
        ``[d]`` float32: mean activation of the positive texts minus that of the negative ones.
    layer
        Index of the decoder layer whose output it is added to.
    n_positive, n_negative
        Texts per class it was computed from.
    activation_norm
        Mean L2 norm of that layer's output over the tokens used (for scale).
    """

    vector: torch.Tensor = field(repr=False)
    layer: int
    n_positive: int
    n_negative: int
    activation_norm: float

    @property
    def norm(self) -> float:
        """L2 norm of the vector."""
        return float(self.vector.norm())


class _Stop(Exception):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__("captured")
        self.value = value


def _output_tensor(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple | list) else out  # type: ignore[no-any-return]


@torch.no_grad()
def _layer_means(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    layer: int,
    max_length: int,
    batch_size: int,
) -> tuple[torch.Tensor, float, int]:
    """Sum of the layer's output over all tokens of ``texts``, mean token norm, token count."""
    mod = _layer(model, layer)
    dev = next(model.parameters()).device
    enc = [ids[:max_length] for ids in tokenizer(list(texts))["input_ids"]]
    pad = pad_id(tokenizer)
    total: torch.Tensor | None = None
    norms = 0.0
    count = 0

    def grab(module: nn.Module, args: Any, out: Any) -> None:
        raise _Stop(_output_tensor(out))

    hook = mod.register_forward_hook(grab)
    try:
        for start in range(0, len(enc), batch_size):
            ids, mask = pad_batch([e for e in enc[start : start + batch_size] if e], pad)
            try:
                model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False)
            except _Stop as cap:
                h = cap.value.float()
            m = mask.to(dev).bool()
            hs = h[m]  # [tokens, d]
            total = hs.sum(0) if total is None else total + hs.sum(0)
            norms += float(hs.norm(dim=-1).sum())
            count += int(m.sum())
    finally:
        hook.remove()
    if total is None or count == 0:
        raise SteerInputError("no tokens to average: pass non-empty texts.")
    return total, norms / count, count


def mean_difference_vector(
    model: nn.Module,
    tokenizer: Any,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    layer: int,
    max_length: int = 64,
    batch_size: int = 16,
) -> ActAddVector:
    """Mean activation of ``positive`` texts minus that of ``negative`` texts at ``layer``.

    Token-weighted means over all non-padding tokens of each class (CAA averages over examples
    at one answer position; continuation-style texts have no such position, so every token
    counts).

    Parameters
    ----------
    model, tokenizer
        A transformers causal LM (frozen) and its tokenizer.
    positive, negative
        Texts of the direction to add (e.g. clean tweets) and to subtract (toxic tweets).
    layer
        Decoder layer index (its output, the residual stream after the layer).
    max_length
        Tokens kept per text.
    batch_size
        Texts per forward pass.

    Returns
    -------
    ActAddVector
        The vector and its scale.
    """
    if isinstance(positive, str) or isinstance(negative, str):
        raise SteerInputError("pass lists of texts, not single strings.")
    if not positive or not negative:
        raise SteerInputError("mean_difference_vector needs texts of both classes.")
    sp, norm_p, cp = _layer_means(model, tokenizer, positive, layer, max_length, batch_size)
    sn, norm_n, cn = _layer_means(model, tokenizer, negative, layer, max_length, batch_size)
    v = (sp / cp - sn / cn).detach().cpu().float()
    norm = (norm_p * cp + norm_n * cn) / (cp + cn)
    n_layers = len(decoder_layers(model))
    return ActAddVector(v, layer % n_layers, len(positive), len(negative), norm)


@contextlib.contextmanager
def activation_addition(model: nn.Module, vector: ActAddVector, strength: float) -> Iterator[None]:
    """Add ``strength * vector`` to the output of its decoder layer inside a ``with`` block.

    The hook adds at every position (prompt and generated tokens, as in CAA); it is removed on
    exit, leaving the model exactly as it was. ``strength == 0`` attaches nothing.
    """
    if not math.isfinite(strength):
        raise SteerInputError(f"strength must be finite; got {strength}.")
    if strength == 0:
        yield
        return
    mod = _layer(model, vector.layer)
    p = next(model.parameters())
    add = (float(strength) * vector.vector).to(device=p.device, dtype=p.dtype)
    d = _hidden(model)
    if d and add.shape != (d,):
        raise SteerInputError(f"vector of shape {tuple(add.shape)} for hidden size {d}.")

    def hook(module: nn.Module, args: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (out[0] + add.to(out[0].dtype), *out[1:])
        if isinstance(out, list):
            return [out[0] + add.to(out[0].dtype), *out[1:]]
        return out + add.to(out.dtype)

    handle = mod.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _hidden(model: nn.Module) -> int:
    cfg: Any = getattr(model, "config", None)
    text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return int(getattr(text_cfg, "hidden_size", 0) or getattr(text_cfg, "n_embd", 0))


def _chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise SteerInputError(
            "the tokenizer has no chat template; use a chat model or write the instruction "
            "into the prompt yourself."
        )
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))


def instruction_prompt(tokenizer: Any, prompt: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """Put the prompt in the chat template after a system instruction to stay respectful.

    ``<system: instruction> <user: "Continue this text."> <assistant: prompt...`` : the
    assistant turn starts with the prompt text, so the continuation is of the same words.
    """
    msgs = [{"role": "system", "content": instruction}, {"role": "user", "content": _USER}]
    return _chat(tokenizer, msgs) + prompt


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """Control for :func:`instruction_prompt`: the same template with the default system turn."""
    return _chat(tokenizer, [{"role": "user", "content": _USER}]) + prompt
