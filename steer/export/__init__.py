"""Steers you can ship: the steer as a PEFT LoRA, a baked model, a GGUF file, or an official file.

A steer is an exact low-rank change of the output head, ``logits = h E^T + eps (h A)(E B^T)^T``
(:mod:`steer.export._common`), so every format below reproduces the hooked steer's logits (to
float32 rounding; the tests check 1e-5 relative on tiny GPT-2, GPT-NeoX, Llama, Qwen2, Gemma 2/3
models, tied and untied):

- :func:`export_peft`: a PEFT LoRA adapter on the LM head, strength adjustable after loading
  with :func:`set_peft_strength`;
- :func:`bake` / :func:`export_baked`: a model whose untied head is ``E + eps E M^T`` (zero
  generation overhead), saved with ``save_pretrained`` (safetensors);
- :func:`export_gguf`: the baked model as a GGUF file (llama, qwen2);
- :func:`save_official` / :func:`load_official`: the reference repository's ``.pt`` layout,
  read with safe loading only.

Every exporter refuses a model other than the steer's recorded base model unless
``allow_other_model=True`` (:func:`steer.core.compat.check_base_model`). Importing this package
loads nothing heavy; the exporters import torch, peft and gguf when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmecon.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from steer.export.baked import bake, export_baked
    from steer.export.errors import ExportFormatError, UnsupportedExportError
    from steer.export.gguf import GGUF_ARCHITECTURES, export_gguf
    from steer.export.official import load_official, save_official
    from steer.export.peft import export_peft, set_peft_strength

__all__ = [
    "GGUF_ARCHITECTURES",
    "ExportFormatError",
    "UnsupportedExportError",
    "bake",
    "export_baked",
    "export_gguf",
    "export_peft",
    "load_official",
    "save_official",
    "set_peft_strength",
]

_WHERE = {
    "GGUF_ARCHITECTURES": "gguf",
    "ExportFormatError": "errors",
    "UnsupportedExportError": "errors",
    "bake": "baked",
    "export_baked": "baked",
    "export_gguf": "gguf",
    "export_peft": "peft",
    "load_official": "official",
    "save_official": "official",
    "set_peft_strength": "peft",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
