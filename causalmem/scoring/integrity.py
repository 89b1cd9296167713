"""Checks that keep the scoring stage from producing or trusting wrong numbers.

* :func:`check_compatibility`: before the first checkpoint is scored, every checkpoint's
  vocabulary and context (read from its ``config.json``) is compared with the instances, and the
  checkpoints of one run must share a vocabulary.
* :func:`check_model_fits`: the same check on a loaded model (used right before a forward
  pass, so a raw ``IndexError`` / CUDA assert never reaches the user).
* :func:`check_finite_logits`: NaN or ``+inf`` logits fail the checkpoint (they would score as a
  perfect model: ``acc_seq = 1``, ``entr_seq = 0``).
* :func:`content_checksum`, :func:`source_fingerprint`, :func:`shard_path`: what the runner
  records per shard and how it finds a shard without ever leaving the output folder.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from causalmem.errors import CheckpointCompatibilityError, NonFiniteScoresError
from causalmem.instances import Instances

if TYPE_CHECKING:
    import torch

    from causalmem.scoring.checkpoints import Checkpoint

__all__ = [
    "check_compatibility",
    "check_finite_logits",
    "check_finite_scores",
    "check_model_fits",
    "content_checksum",
    "shard_path",
    "source_fingerprint",
]

SHARD_RE = re.compile(r"step-(\d{9,})\.parquet")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length")


# ----------------------------------------------------------------------------- files
def shard_path(out_dir: Path, name: object, shards: str = "shards") -> Path | None:
    """Path of a shard named ``name`` inside ``out_dir/shards``, or None when it cannot be one.

    Only canonical names (``step-000001000.parquet``) are accepted: no separators, no ``..``, so
    a name taken from a manifest or a shard's metadata can never point outside the folder.
    Symbolic links are refused for the same reason.
    """
    if not isinstance(name, str) or not SHARD_RE.fullmatch(name):
        return None
    path = out_dir / shards / name
    if path.is_symlink():
        return None
    return path


def content_checksum(frame: pd.DataFrame) -> str:
    """SHA-256 of a shard's rows: column names and values in a canonical numeric form.

    Independent of the parquet encoding and of pandas' nullable dtypes, so the checksum of the
    frame before writing equals the checksum of the frame read back.
    """
    h = hashlib.sha256()
    for name in sorted(frame.columns):
        col = frame[name]
        if pd.api.types.is_integer_dtype(col.dtype):  # int64 or nullable Int64
            has_na = bool(col.isna().any())
            values = (
                col.to_numpy(dtype=np.float64, na_value=np.nan)
                if has_na
                else col.to_numpy(dtype=np.int64)
            )
        elif pd.api.types.is_float_dtype(col.dtype):
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            values = col.astype(str).to_numpy(dtype=str)
        h.update(str(name).encode())
        h.update(str(values.dtype).encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def source_fingerprint(checkpoint: Checkpoint) -> str | None:
    """Cheap fingerprint of where a checkpoint's weights come from, without reading them.

    A local folder: its files' names, sizes and modification times. A hub revision: the commit
    its branch or tag resolves to in the local Hugging Face cache (``"hub:<commit>"``), so a
    branch moved on the hub and downloaded again is noticed. When it changes between runs, the
    runner re-hashes the weights before trusting an old shard. None when it cannot be told.
    """
    if not checkpoint.is_local:
        return _hub_commit(checkpoint)
    h = hashlib.sha256()
    for entry in sorted(os.scandir(checkpoint.model), key=lambda e: e.name):
        if entry.is_file():
            st = entry.stat()
            h.update(f"{entry.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def _hub_commit(checkpoint: Checkpoint) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(
            checkpoint.model, "config.json", revision=checkpoint.revision or "main"
        )
    except Exception:  # noqa: BLE001 - no cache, odd repo id: nothing can be told
        return None
    if not isinstance(found, str | os.PathLike):
        return None
    return f"hub:{Path(found).parent.name}"


# ----------------------------------------------------------------------------- fit checks
def _context(config: Any) -> int | None:
    for key in _CONTEXT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _token_problems(
    label: str, vocab: int | None, context: int | None, instances: Instances
) -> list[str]:
    problems: list[str] = []
    if vocab is not None:
        valid = np.arange(instances.seq_len)[None, :] < instances.lengths[:, None]
        too_big = (instances.tokens >= vocab) & valid
        rows = np.flatnonzero(too_big.any(axis=1))
        if rows.size:
            top = int(instances.tokens[valid].max())
            units = ", ".join(str(u) for u in instances.unit[rows[:5]])
            problems.append(
                f"checkpoint {label!r} has a vocabulary of {vocab:,} tokens but {rows.size:,} "
                f"of {instances.n:,} instances hold token ids >= {vocab:,} (largest {top:,}; "
                f"units {units}{', …' if rows.size > 5 else ''}). The instances were tokenised "
                "for another model: tokenise them with this checkpoint's tokenizer, or score a "
                "checkpoint of the model they were made for."
            )
    if context is not None:
        longest = int(instances.lengths.max())
        if longest > context:
            n_long = int((instances.lengths > context).sum())
            problems.append(
                f"checkpoint {label!r} has a context of {context:,} tokens but {n_long:,} of "
                f"{instances.n:,} instances are longer (up to {longest:,} tokens); positions "
                f"past {context:,} would be scored without a word. Cut the instances to at most "
                f"{context:,} tokens (e.g. chunk the texts) or use a model with a longer context."
            )
    return problems


def check_model_fits(model: Any, instances: Instances, label: str = "the model") -> None:
    """Refuse instances a loaded model cannot score (token ids past its vocabulary, too long).

    Raises
    ------
    CheckpointCompatibilityError
        With the checkpoint, the count of offending instances and the fix.
    """
    vocab: int | None = None
    emb = getattr(model, "get_input_embeddings", None)
    if callable(emb):
        weight = getattr(emb(), "weight", None)
        if weight is not None and getattr(weight, "ndim", 0) == 2:
            vocab = int(weight.shape[0])
    problems = _token_problems(label, vocab, _context(getattr(model, "config", None)), instances)
    if problems:
        raise CheckpointCompatibilityError(" ".join(problems))


def _read_config(checkpoint: Checkpoint, local_files_only: bool | None) -> Any | None:
    """Return the checkpoint's transformers config, or None when it cannot be read here."""
    try:
        from transformers import AutoConfig

        from causalmem.scoring.checkpoints import hub_offline, quiet_transformers

        kwargs: dict[str, Any] = {}
        if checkpoint.is_local:
            kwargs["local_files_only"] = True
        else:
            kwargs["revision"] = checkpoint.revision
            kwargs["local_files_only"] = (
                hub_offline() if local_files_only is None else bool(local_files_only)
            )
        with quiet_transformers():
            return AutoConfig.from_pretrained(checkpoint.model, **kwargs)
    except Exception:  # noqa: BLE001 - the load itself reports a checkpoint it cannot read
        return None


def check_compatibility(
    checkpoints: Sequence[Checkpoint],
    instances: Instances,
    *,
    local_files_only: bool | None = None,
) -> None:
    """Check every checkpoint against the instances and each other before anything is scored.

    Reads each checkpoint's ``config.json`` only (no weights). Checkpoints whose config cannot
    be read here (e.g. not cached on a Ray driver) are checked when their worker loads them.

    Raises
    ------
    CheckpointCompatibilityError
        Token ids at or past a checkpoint's vocabulary size, instances longer than its context,
        or checkpoints with different vocabulary sizes in one run.
    """
    vocabs: dict[int, list[str]] = {}
    problems: list[str] = []
    for ck in checkpoints:
        cfg = _read_config(ck, local_files_only)
        if cfg is None:
            continue
        raw_vocab = getattr(cfg, "vocab_size", None)
        vocab = int(raw_vocab) if isinstance(raw_vocab, int) and raw_vocab > 0 else None
        if vocab is not None:
            vocabs.setdefault(vocab, []).append(ck.label)
        problems.extend(_token_problems(ck.label, vocab, _context(cfg), instances))
        if problems:
            break  # one checkpoint's problem is enough to act on
    if not problems and len(vocabs) > 1:
        parts = "; ".join(
            f"{size:,} tokens: {', '.join(repr(x) for x in labels[:3])}"
            f"{' …' if len(labels) > 3 else ''}"
            for size, labels in sorted(vocabs.items())
        )
        problems.append(
            f"the checkpoints of one run have different vocabulary sizes ({parts}); the "
            "instances' token ids cannot mean the same text under all of them. Score each "
            "model's checkpoints into its own output folder."
        )
    if problems:
        raise CheckpointCompatibilityError(problems[0] + " Nothing was scored.")


# ----------------------------------------------------------------------------- logits
def check_finite_logits(
    logits: torch.Tensor, label: str, units: Sequence[int] | np.ndarray
) -> None:
    """Refuse NaN or ``+inf`` logits (``-inf`` marks masked vocabulary entries and is allowed).

    Raises
    ------
    NonFiniteScoresError
        Naming the checkpoint, the affected instances and what to do.
    """
    import torch

    bad = torch.isnan(logits) | torch.isposinf(logits)
    if not bool(bad.any()):
        return
    per_row = bad.flatten(1).any(dim=1).cpu().numpy()
    rows = np.flatnonzero(per_row)
    shown = ", ".join(str(u) for u in np.asarray(units)[rows[:5]])
    n_nan = int(torch.isnan(logits).sum())
    n_inf = int(torch.isposinf(logits).sum())
    raise NonFiniteScoresError(
        f"checkpoint {label!r} produced non-finite logits ({n_nan:,} NaN, {n_inf:,} +inf of "
        f"{logits.numel():,} values) for {rows.size:,} of {per_row.size:,} instances in a batch "
        f"(units {shown}{', …' if rows.size > 5 else ''}); they would score as a perfect model "
        "(acc_seq = 1, entr_seq = 0). No shard was written for it. Check its weights (corrupted "
        "file?), use dtype='bfloat16' or 'float32' instead of 'float16' (overflow), or leave "
        "the checkpoint out of the run."
    )


def check_finite_scores(
    cols: dict[str, Any], label: str, units: Sequence[int] | np.ndarray
) -> None:
    """Refuse non-finite per-sequence scores (e.g. a target token with probability 0).

    Raises
    ------
    NonFiniteScoresError
        Naming the checkpoint, the columns and the affected instances.
    """
    bad_cols = [k for k, v in cols.items() if not bool(np.isfinite(np.asarray(v, float)).all())]
    if not bad_cols:
        return
    rows = np.flatnonzero(
        np.any([~np.isfinite(np.asarray(cols[k], float)) for k in bad_cols], axis=0)
    )
    shown = ", ".join(str(u) for u in np.asarray(units)[rows[:5]])
    raise NonFiniteScoresError(
        f"checkpoint {label!r} gave non-finite {', '.join(bad_cols)} for {rows.size:,} "
        f"instances (units {shown}{', …' if rows.size > 5 else ''}): a target token got "
        "probability 0 (a -inf logit). No shard was written for it. Check the checkpoint's "
        "weights and that the instances were tokenised for this model."
    )
