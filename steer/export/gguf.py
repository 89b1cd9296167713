"""A GGUF file of the baked model (llama.cpp's format), verified with transformers' GGUF reader.

:func:`export_gguf` bakes the steer into an untied head (:func:`steer.export.bake`) and writes the
whole model as one GGUF file in float32 (default) or float16, with llama.cpp's tensor names
(``gguf.get_tensor_name_map``), its metadata keys and its layout conventions: for ``llama`` the
query and key projections are permuted as llama.cpp's ``convert_hf_to_gguf.py`` does (transformers'
reader undoes it), ``qwen2`` is stored as is. The baked head is written as ``output.weight``
beside ``token_embd.weight``, so readers see an untied model. A byte-level BPE tokenizer (SmolLM2,
Qwen2, Llama 3) is written as ``tokenizer.ggml.*`` (tokens, types, merges, special ids).

Supported architectures: ``llama`` (SmolLM, Llama, Mistral-style without attention biases) and
``qwen2``; other architectures raise :class:`~steer.export.errors.UnsupportedExportError` (use
the baked safetensors folder with llama.cpp's own converter). The tests load every file back with
``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`` and compare logits.

A llama.cpp LoRA adapter GGUF is not written: no llama.cpp runtime is available here to verify
one, and transformers cannot read GGUF adapters.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lmecon.atomic import atomic_path
from steer.core.transform import SteerTransform, ValuesLike
from steer.errors import SteerWarning
from steer.export._common import EXPORT_RECORD, record, resolve_values
from steer.export.baked import bake
from steer.export.errors import UnsupportedExportError

__all__ = ["GGUF_ARCHITECTURES", "export_gguf"]

GGUF_ARCHITECTURES = ("llama", "qwen2")
"""Model types :func:`export_gguf` writes (and the tests read back with transformers)."""


def _permute(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp's q/k row permutation (``LlamaModel.permute`` in ``convert_hf_to_gguf.py``)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _rope_theta(cfg: Any) -> float:
    params = getattr(cfg, "rope_parameters", None) or {}
    if isinstance(params, dict):
        kind = params.get("rope_type", "default")
        if kind not in (None, "default"):
            raise UnsupportedExportError(
                f"rope_type {kind!r} (rope scaling) is not written by export_gguf; convert the "
                "baked folder with llama.cpp's convert_hf_to_gguf.py instead."
            )
        if "rope_theta" in params:
            return float(params["rope_theta"])
    return float(getattr(cfg, "rope_theta", 10000.0))


def _check_supported(model: nn.Module) -> tuple[str, Any]:
    cfg = getattr(model, "config", None)
    arch = str(getattr(cfg, "model_type", ""))
    if arch not in GGUF_ARCHITECTURES:
        raise UnsupportedExportError(
            f"export_gguf writes {list(GGUF_ARCHITECTURES)} models; {type(model).__name__} is "
            f"{arch!r}. Export the baked folder (format 'baked') and convert it with llama.cpp's "
            "convert_hf_to_gguf.py."
        )
    if arch == "llama" and (
        getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False)
    ):
        raise UnsupportedExportError(
            "this llama model has attention/MLP biases, which GGUF readers of 'llama' ignore."
        )
    return arch, cfg


def _pre_tokenizer(arch: str, base_model: str, given: str | None) -> str:
    """llama.cpp's pre-tokenizer name (``tokenizer.ggml.pre``): given, or known by model family.

    llama.cpp's converter identifies the pre-tokenizer by hashing the tokenizer's output on a
    test text; here the families this module supports are recognised by name, and anything else
    needs ``tokenizer_pre`` (llama.cpp's ``LLAMA_VOCAB_PRE_TYPE`` names: ``llama-bpe``,
    ``qwen2``, ``smollm``, ...).
    """
    if given:
        return given
    name = base_model.lower()
    if "smollm" in name:
        return "smollm"
    if arch == "qwen2" or "qwen" in name:
        return "qwen2"
    if "llama-3" in name or "llama3" in name:
        return "llama-bpe"
    warnings.warn(
        f"export_gguf: llama.cpp's pre-tokenizer for {base_model!r} is not known here; wrote "
        "'default'. llama.cpp may split text differently from transformers: pass "
        "tokenizer_pre= (the name llama.cpp's convert_hf_to_gguf.py prints for this model).",
        SteerWarning,
        stacklevel=3,
    )
    return "default"


def _tokenizer_fields(writer: Any, tokenizer: Any, arch: str, base: str, pre: str | None) -> bool:
    """Write a byte-level BPE tokenizer as ``tokenizer.ggml.*``; False if it is not one."""
    import gguf

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    spec = json.loads(backend.to_str())
    model = spec.get("model", {})
    if model.get("type") != "BPE":
        return False
    vocab: dict[str, int] = dict(model.get("vocab", {}))
    added = {a["content"]: a for a in spec.get("added_tokens", [])}
    for content, a in added.items():
        vocab.setdefault(content, int(a["id"]))
    n = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for tok, i in vocab.items():
        tokens[i] = tok
        a = added.get(tok)
        if a is None:
            types[i] = gguf.TokenType.NORMAL
        else:
            types[i] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(arch, base, pre))
    writer.add_token_list(tokens)
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges(merges)
    for attr, add in (
        ("bos_token_id", writer.add_bos_token_id),
        ("eos_token_id", writer.add_eos_token_id),
        ("unk_token_id", writer.add_unk_token_id),
        ("pad_token_id", writer.add_pad_token_id),
    ):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            add(value)
    add_bos = getattr(tokenizer, "add_bos_token", None)
    if isinstance(add_bos, bool):
        writer.add_add_bos_token(add_bos)
    writer.add_add_space_prefix(False)  # byte-level BPE marks spaces itself
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        writer.add_chat_template(template)
    return True


def export_gguf(
    model: nn.Module,
    transform: SteerTransform,
    out: str | Path,
    values: ValuesLike | float | None = None,
    *,
    tokenizer: Any = None,
    dtype: str = "f32",
    tokenizer_pre: str | None = None,
    allow_other_model: bool = False,
) -> Path:
    """Write the baked model (steer at ``values``) as a GGUF file.

    Parameters
    ----------
    model
        A ``llama`` or ``qwen2`` causal LM (tied or untied); not modified.
    transform
        The steer.
    out
        The ``.gguf`` file to write (atomically); ``<out>.steer_export.json`` records the steer.
    values
        One number ``s`` (labelled slots ``s``, dummy slots 1), ``k`` values, or ``None``.
    tokenizer
        The model's tokenizer: written into the file when it is a byte-level BPE tokenizer
        (needed by llama.cpp; transformers reads the model without it).
    dtype
        ``"f32"`` (exact) or ``"f16"`` (half the size; 2-D weights in float16, norms in float32).
    tokenizer_pre
        llama.cpp's pre-tokenizer name (``tokenizer.ggml.pre``); default: ``smollm`` for
        SmolLM, ``qwen2`` for Qwen2, ``llama-bpe`` for Llama 3, else ``default`` with a
        :class:`~steer.errors.SteerWarning`.
    allow_other_model
        Export even if the steer records another base model.

    Returns
    -------
    pathlib.Path
        The file; read it with ``AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)``
        or llama.cpp.

    Raises
    ------
    UnsupportedExportError
        For architectures other than llama/qwen2, rope scaling, or llama with biases.
    """
    import gguf

    if dtype not in ("f32", "f16"):
        raise UnsupportedExportError(f"dtype must be 'f32' or 'f16'; got {dtype!r}.")
    arch, cfg = _check_supported(model)
    s = resolve_values(transform, values)
    baked = bake(model, transform, s, tokenizer=tokenizer, allow_other_model=allow_other_model)
    n_layer = int(cfg.num_hidden_layers)
    n_head = int(cfg.num_attention_heads)
    n_kv = int(getattr(cfg, "num_key_value_heads", None) or n_head)
    d = int(cfg.hidden_size)
    head_dim = int(getattr(cfg, "head_dim", None) or d // n_head)
    gguf_arch = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(gguf_arch, n_layer)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        w = gguf.GGUFWriter(str(tmp), arch)
        w.add_name(f"{transform.base_model} + steer")
        w.add_context_length(int(cfg.max_position_embeddings))
        w.add_block_count(n_layer)
        w.add_embedding_length(d)
        w.add_feed_forward_length(int(cfg.intermediate_size))
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_rope_dimension_count(head_dim)
        w.add_rope_freq_base(_rope_theta(cfg))
        w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
        w.add_vocab_size(int(cfg.vocab_size))
        w.add_file_type(
            gguf.LlamaFileType.ALL_F32 if dtype == "f32" else gguf.LlamaFileType.MOSTLY_F16
        )
        if tokenizer is not None and not _tokenizer_fields(
            w, tokenizer, arch, transform.base_model, tokenizer_pre
        ):
            warnings.warn(
                f"export_gguf: {type(tokenizer).__name__} is not a byte-level BPE tokenizer, so "
                "the GGUF file holds no tokenizer (transformers reads the model without one; "
                "llama.cpp needs one).",
                SteerWarning,
                stacklevel=2,
            )
        written = set()
        state = baked.state_dict()
        for key, tensor in state.items():
            stem, _, suffix = key.rpartition(".")
            gname = names.get_name(stem)
            if gname is None:
                raise UnsupportedExportError(f"no GGUF name for tensor {key!r} of {arch!r}.")
            full = f"{gname}.{suffix}"
            if full in written:  # tied duplicates (not expected after baking)
                continue
            t = tensor.detach().to("cpu", torch.float32)
            if arch == "llama" and stem.endswith("self_attn.q_proj"):
                t = _permute(t, n_head)
            elif arch == "llama" and stem.endswith("self_attn.k_proj"):
                t = _permute(t, n_kv)
            arr = t.numpy()
            if dtype == "f16" and arr.ndim == 2:
                arr = arr.astype(np.float16)
            w.add_tensor(full, np.ascontiguousarray(arr))
            written.add(full)
        if "output.weight" not in written:
            raise UnsupportedExportError(f"{arch!r}: the baked head was not written (no lm_head).")
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    side = target.with_name(f"{target.name}.{EXPORT_RECORD}")
    rec = record(transform, s, f"gguf-{dtype}", model, tokenizer, {"architecture": arch})
    with atomic_path(side) as tmp_side:
        Path(tmp_side).write_text(json.dumps(rec, indent=2, default=str) + "\n")
    return target
