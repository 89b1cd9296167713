"""A baked model: the steer folded into an untied LM head at one fixed strength.

The baked head is ``E' = E + eps * E M^T`` with ``M = sum_i s_i P1_i P2_i^T`` (see
:mod:`steer.export._common`), so ``h E'^T`` equals the hooked steer's logits for every input and
generation costs exactly what the unsteered model costs. A tied model (SmolLM2, GPT-2, Gemma) is
untied first: the input embeddings keep ``E``, only the output head changes, and the saved
config says ``tie_word_embeddings = false``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from steer.core.hooks import output_head
from steer.core.transform import SteerTransform, ValuesLike
from steer.export._common import baked_head, check_pair, record, resolve_values, write_record

__all__ = ["bake", "export_baked", "untie_config"]


def untie_config(model: nn.Module) -> None:
    """Set ``tie_word_embeddings = False`` on ``model``'s config (and its text sub-config)."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return
    configs = [cfg]
    get_text = getattr(cfg, "get_text_config", None)
    if callable(get_text):
        text = get_text()
        if text is not cfg:
            configs.append(text)
    for c in configs:
        if hasattr(c, "tie_word_embeddings"):
            c.tie_word_embeddings = False


def bake(
    model: nn.Module,
    transform: SteerTransform,
    values: ValuesLike | float | None = None,
    *,
    tokenizer: Any = None,
    allow_other_model: bool = False,
) -> nn.Module:
    """Return a copy of ``model`` whose untied LM head applies the steer at ``values``.

    Parameters
    ----------
    model
        A transformers causal LM (tied or untied head); it is not modified.
    transform
        The steer.
    values
        One number ``s`` (labelled slots ``s``, dummy slots 1), ``k`` slot values, or ``None``
        (every slot 1).
    tokenizer
        The model's tokenizer, checked against the steer's recorded one when given.
    allow_other_model
        Bake even if the steer records another base model.

    Returns
    -------
    torch.nn.Module
        A deep copy with ``lm_head.weight = E + eps * E M^T`` (a new parameter: the input
        embeddings keep ``E``) and ``config.tie_word_embeddings = False``.

    Raises
    ------
    BaseModelMismatchError
        If the steer was trained for another model and ``allow_other_model`` is False.
    SteerDimensionError, NoOutputEmbeddingsError, SteerValuesError
        As :func:`steer.attach`.

    Examples
    --------
    >>> baked = bake(model, transform, -5.0)  # doctest: +SKIP
    >>> baked.generate(**inputs)  # doctest: +SKIP
    """
    check_pair(model, transform, tokenizer, allow_other_model=allow_other_model)
    s = resolve_values(transform, values)
    weight = baked_head(model, transform, s)
    new = copy.deepcopy(model)
    head = output_head(new)
    untie_config(new)
    with torch.no_grad():
        head.weight = nn.Parameter(weight.clone(), requires_grad=False)
    return new


def export_baked(
    model: nn.Module,
    transform: SteerTransform,
    out: str | Path,
    values: ValuesLike | float | None = None,
    *,
    tokenizer: Any = None,
    allow_other_model: bool = False,
) -> Path:
    """Write the baked model (safetensors, ``save_pretrained``) and its tokenizer to ``out``.

    Parameters
    ----------
    model, transform, values, tokenizer, allow_other_model
        As :func:`bake`; the tokenizer (when given) is saved beside the model.
    out
        Target folder (created). Also receives ``steer_export.json`` (the steer, its values, the
        base model's fingerprint and library versions).

    Returns
    -------
    pathlib.Path
        ``out``; load it with ``AutoModelForCausalLM.from_pretrained(out)``.
    """
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    s = resolve_values(transform, values)
    baked = bake(model, transform, s, tokenizer=tokenizer, allow_other_model=allow_other_model)
    baked.save_pretrained(target, safe_serialization=True)  # type: ignore[operator]
    if tokenizer is not None:
        tokenizer.save_pretrained(target)
    write_record(target, record(transform, s, "baked", model, tokenizer))
    return target
