"""A PEFT LoRA adapter on the LM head that reproduces the hooked steer exactly.

The adapter targets only the head module (``lm_head``; ``embed_out`` for GPT-NeoX) with

    lora_A.weight = A^T   (r' x d),     lora_B.weight = E B^T   (V x r'),     scale = eps,

where ``A, B`` are the folded factors of :mod:`steer.export._common` (``r' = k r`` over the
non-zero slots, or ``d`` when that is smaller). PEFT adds ``scale * lora_B(lora_A(h))`` to the
head's output, which is ``eps * (h A)(E B^T)^T``: the steer's change of the logits. The scale is
``lora_alpha / r'`` with ``lora_alpha = eps * r'``.

**Size.** ``lora_B`` holds ``V x r'`` numbers: with ``k r >= d`` (the default ``rank = d``
with a dummy slot) that is as large as the head itself (SmolLM2: 113 MB in float32), since a
LoRA on the head must produce ``V`` outputs. Train with ``rank < d / k`` for a small adapter.

**Strength.** The adapter is exported at fixed slot values ``s`` (folded into ``lora_A``);
:func:`set_peft_strength` multiplies PEFT's scale by a factor ``c`` after loading, which steers
with values ``c * s``: every exported slot, including a dummy slot, is multiplied. To vary a
labelled slot while holding a dummy slot at 1, export once per setting (the adapters are small).
Negative and fractional factors are fine; ``c = 0`` gives the base model.

**Tied embeddings.** PEFT wraps the head module and adds the LoRA term to its output; the shared
weight is not touched, so the input embeddings stay unsteered. Do not call ``merge_and_unload``
on a tied model: merging writes into the shared matrix and would steer the input embeddings as
well (use :func:`steer.export.bake` for a merged model; PEFT warns about this when loading).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmecon.atomic import atomic_path, atomic_write_text
from steer.core.hooks import head_weight
from steer.core.transform import SteerTransform, ValuesLike
from steer.export._common import (
    check_pair,
    folded_factors,
    head_module_name,
    record,
    resolve_values,
    write_record,
)
from steer.export.errors import UnsupportedExportError

__all__ = ["ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "export_peft", "set_peft_strength"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def export_peft(
    model: nn.Module,
    transform: SteerTransform,
    out: str | Path,
    values: ValuesLike | float | None = None,
    *,
    tokenizer: Any = None,
    allow_other_model: bool = False,
) -> Path:
    """Write the steer as a PEFT LoRA adapter on ``model``'s LM head.

    Parameters
    ----------
    model
        The base model (transformers causal LM); read, not modified.
    transform
        The steer.
    out
        Target folder: ``adapter_config.json``, ``adapter_model.safetensors`` and
        ``steer_export.json``.
    values
        One number ``s`` (labelled slots ``s``, dummy slots 1), ``k`` values, or ``None``
        (every slot 1). :func:`set_peft_strength` rescales them all after loading.
    tokenizer
        Checked against the steer's recorded tokenizer when given.
    allow_other_model
        Export even if the steer records another base model.

    Returns
    -------
    pathlib.Path
        ``out``; load it with ``peft.PeftModel.from_pretrained(base_model, out)``.

    Raises
    ------
    UnsupportedExportError
        If every value is zero (there is nothing to export).
    BaseModelMismatchError, SteerDimensionError, SteerValuesError
        As :func:`steer.attach`.

    Examples
    --------
    >>> export_peft(model, transform, "out/detox-lora", -5.0)  # doctest: +SKIP
    >>> from peft import PeftModel  # doctest: +SKIP
    >>> steered = PeftModel.from_pretrained(model, "out/detox-lora")  # doctest: +SKIP
    >>> set_peft_strength(steered, 0.5)  # half the exported strength  # doctest: +SKIP
    """
    from peft import LoraConfig
    from safetensors.torch import save_file

    check_pair(model, transform, tokenizer, allow_other_model=allow_other_model)
    s = resolve_values(transform, values)
    ab = folded_factors(transform, s)
    if ab is None:
        raise UnsupportedExportError(
            f"every slot value is zero ({s.tolist()}): the steer changes nothing, so there is no "
            "adapter to write; pass the strength to export, e.g. values=-5."
        )
    a, b = ab
    e = head_weight(model).detach()
    lora_a = a.T.contiguous().to(e.dtype)  # [r', d]
    lora_b = (e.to("cpu", torch.float64) @ b.T).to(e.dtype).contiguous()  # [V, r']
    rank = int(lora_a.shape[0])
    name = head_module_name(model)
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    cfg = LoraConfig(
        r=rank,
        lora_alpha=transform.epsilon * rank,  # type: ignore[arg-type]
        target_modules=f"^{re.escape(name)}$",
        lora_dropout=0.0,
        bias="none",
        init_lora_weights=False,
        inference_mode=True,
        base_model_name_or_path=transform.base_model,
    )
    blob = cfg.to_dict()
    for key, value in list(blob.items()):
        if isinstance(value, set):
            blob[key] = sorted(value)
    tensors = {
        f"base_model.model.{name}.lora_A.weight": lora_a.cpu(),
        f"base_model.model.{name}.lora_B.weight": lora_b.cpu(),
    }
    with atomic_path(target / ADAPTER_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "steer": "lmsteer-lora"})
    atomic_write_text(target / ADAPTER_CONFIG, json.dumps(blob, indent=2, default=str) + "\n")
    extra = {"target_module": name, "lora_rank": rank, "lora_alpha": transform.epsilon * rank}
    write_record(target, record(transform, s, "peft-lora", model, tokenizer, extra))
    return target


def set_peft_strength(peft_model: nn.Module, factor: float, adapter_name: str = "default") -> int:
    """Multiply the exported steer's strength by ``factor`` (PEFT's ``set_scale``).

    Parameters
    ----------
    peft_model
        The model returned by ``PeftModel.from_pretrained(base, adapter_dir)``; changed in place
        (this is PEFT's own mutable API, not a copy).
    factor
        ``c``: the adapter then steers with values ``c * s``; 1 restores the exported strength.
    adapter_name
        PEFT's adapter name (``"default"`` unless you chose one at load time).

    Returns
    -------
    int
        The number of LoRA layers rescaled (1 for an exported steer).

    Raises
    ------
    UnsupportedExportError
        If the model holds no LoRA layer with that adapter name.
    """
    from peft.tuners.lora import LoraLayer

    n = 0
    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and adapter_name in module.scaling:
            module.set_scale(adapter_name, float(factor))
            n += 1
    if n == 0:
        raise UnsupportedExportError(
            f"no LoRA layer holds an adapter named {adapter_name!r}; load the adapter with "
            "peft.PeftModel.from_pretrained(base_model, folder) (adapter name 'default')."
        )
    return n
