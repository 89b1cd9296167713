"""Checkpoint specs, Pythia's step grid, offline loading and weight hashing.

A :class:`Checkpoint` names a transformers causal LM: a hub id plus a ``revision`` (Pythia
publishes ``step0`` … ``step143000`` as branches), or a local ``save_pretrained`` folder. Its
``step`` is the panel's time.

Loading respects ``HF_HUB_OFFLINE`` (read at call time): offline, only local folders and the
Hugging Face cache are used, and a missing revision raises :class:`CheckpointNotFoundError`
with a hint. Nothing here changes global torch state.

Duplicate weights (memorisation.md pitfall 10): EleutherAI/pythia#205 (86 of 154
``pythia-2.8b`` branches serve final-era weights) and #206 (``pythia-12b`` step50000/58000
serve the final model's first shard). :func:`weights_hash` fingerprints the loaded parameters so
the runner can refuse a checkpoint identical to another one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from causalmem.errors import CausalmemError
from causalmem.panel.pythia import pythia_checkpoint_steps

if TYPE_CHECKING:
    import torch

__all__ = [
    "Checkpoint",
    "CheckpointNotFoundError",
    "DuplicateWeightsError",
    "hub_offline",
    "load_causal_lm",
    "local_checkpoints",
    "pythia_checkpoints",
    "pythia_revisions",
    "quiet_transformers",
    "weights_hash",
]

_STEP_RE = re.compile(r"(?:^|[^0-9a-zA-Z])step[_=-]?(\d+)$|^step(\d+)$")


class DuplicateWeightsError(CausalmemError, ValueError):
    """Two checkpoints have identical weights (e.g. Pythia #205/#206); refused by default."""


class CheckpointNotFoundError(CausalmemError, OSError):
    """A checkpoint cannot be loaded (missing folder, revision not cached while offline, …)."""


def _parse_step(text: str) -> int | None:
    m = _STEP_RE.search(text)
    if not m:
        return None
    return int(m.group(1) or m.group(2))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One checkpoint of a causal LM; immutable value.

    Parameters
    ----------
    model
        Hub id (``"EleutherAI/pythia-70m-deduped"``) or a local ``save_pretrained`` folder.
    revision
        Hub branch / tag / commit (``"step1000"``); must be None for a local folder.
    step
        Training step (the panel's time). Parsed from ``revision`` or the folder name
        (``step1000``) when not given.
    label
        Display / bookkeeping name; default ``model@revision`` or the folder path.

    Examples
    --------
    >>> Checkpoint("EleutherAI/pythia-70m-deduped", "step1000").step
    1000
    """

    model: str
    revision: str | None = None
    step: int | None = None
    label: str = ""

    def __post_init__(self) -> None:
        model = os.fspath(self.model)
        object.__setattr__(self, "model", model)
        step = self.step
        if step is None:
            step = _parse_step(self.revision) if self.revision else _parse_step(Path(model).name)
        if step is None:
            raise ValueError(
                f"cannot infer the step of checkpoint {model!r} (revision {self.revision!r}); "
                "pass step=."
            )
        if isinstance(step, bool) or int(step) != step or step < 0:
            raise ValueError(f"step must be a non-negative integer; got {step!r}.")
        object.__setattr__(self, "step", int(step))
        if not self.label:
            lab = f"{model}@{self.revision}" if self.revision else model
            object.__setattr__(self, "label", lab)

    @property
    def is_local(self) -> bool:
        """Whether ``model`` is an existing local folder."""
        return Path(self.model).is_dir()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable mapping (round-trips through :meth:`from_dict`)."""
        return {
            "model": self.model,
            "revision": self.revision,
            "step": self.step,
            "label": self.label,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Checkpoint:
        """Inverse of :meth:`to_dict`."""
        return cls(
            model=str(data["model"]),
            revision=data.get("revision"),
            step=data.get("step"),
            label=str(data.get("label", "")),
        )


def pythia_revisions(include_log_spaced: bool = True) -> list[str]:
    """Pythia's published branch names: ``step0``, ``step1``, ``step2``, ``step4`` … ``step143000``.

    Parameters
    ----------
    include_log_spaced
        Include the 10 log-spaced early branches (154 in all) or only the 1k grid (144).

    Examples
    --------
    >>> r = pythia_revisions(); len(r), r[:4], r[-1]
    (154, ['step0', 'step1', 'step2', 'step4'], 'step143000')
    """
    return [f"step{int(s)}" for s in pythia_checkpoint_steps(include_log_spaced)]


def pythia_checkpoints(
    model: str = "EleutherAI/pythia-70m-deduped",
    steps: Iterable[int] | None = None,
    *,
    include_log_spaced: bool = True,
) -> tuple[Checkpoint, ...]:
    """Checkpoints of a Pythia model on its published step grid.

    Parameters
    ----------
    model
        Hub id (any Pythia size, deduped or not).
    steps
        A subset of the published steps (default: all of them).
    include_log_spaced
        With ``steps=None``: the 154 published checkpoints, or only the 144 on the 1k grid.

    Returns
    -------
    tuple of Checkpoint

    Examples
    --------
    >>> [c.revision for c in pythia_checkpoints(steps=[0, 512, 1000])]
    ['step0', 'step512', 'step1000']
    """
    grid = pythia_checkpoint_steps(include_log_spaced=True)
    chosen: npt.NDArray[np.int64] = (
        pythia_checkpoint_steps(include_log_spaced)
        if steps is None
        else np.asarray(sorted({int(s) for s in steps}), dtype=np.int64)
    )
    bad = sorted(set(chosen.tolist()) - set(grid.tolist()))
    if bad:
        raise ValueError(f"steps {bad[:5]} are not published Pythia checkpoints.")
    return tuple(Checkpoint(model, f"step{int(s)}", int(s)) for s in chosen)


def local_checkpoints(directory: str | os.PathLike[str]) -> tuple[Checkpoint, ...]:
    """Checkpoints saved as ``<directory>/step<N>/`` folders (as the lab writes them).

    Parameters
    ----------
    directory
        Parent folder; hidden and unfinished (``.tmp``) folders are ignored.

    Returns
    -------
    tuple of Checkpoint
        Sorted by step.
    """
    root = Path(directory)
    if not root.is_dir():
        raise CheckpointNotFoundError(f"{root} is not a folder of checkpoints.")
    out = []
    for p in root.iterdir():
        if p.is_dir() and not p.name.startswith(".") and (p / "config.json").exists():
            step = _parse_step(p.name)
            if step is not None:
                out.append(Checkpoint(str(p), None, step))
    return tuple(sorted(out, key=lambda c: c.step or 0))


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' tqdm bars (loading / writing shards) and info logs; restored after.

    The caller's progress display (rich) stays the only one on screen.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if was_enabled:
            hf_logging.enable_progress_bar()


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is set to a true value (read now, not at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_causal_lm(
    checkpoint: Checkpoint,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    attn_implementation: str | None = "sdpa",
    local_files_only: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Load a checkpoint as a transformers causal LM in eval mode, gradients off.

    Parameters
    ----------
    checkpoint
        What to load.
    device
        Target device.
    dtype
        Parameter dtype (default: ``bfloat16`` on CUDA, ``float32`` otherwise).
    attn_implementation
        ``"sdpa"`` (default), ``"eager"``, … passed to ``from_pretrained``.
    local_files_only
        Never touch the network; default: ``True`` when ``HF_HUB_OFFLINE`` is set.
    cache_dir
        Hugging Face cache folder (default: the standard one).

    Returns
    -------
    transformers.PreTrainedModel
        A freshly loaded model (the caller owns it).

    Raises
    ------
    CheckpointNotFoundError
        The folder is missing, or the revision is not available (offline: not cached).
    """
    import torch
    from transformers import AutoModelForCausalLM

    dev = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    offline = hub_offline() if local_files_only is None else bool(local_files_only)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if checkpoint.is_local:
        if checkpoint.revision is not None:
            raise ValueError(
                f"checkpoint {checkpoint.model!r} is a local folder; revision must be None."
            )
        source: str = checkpoint.model
        kwargs["local_files_only"] = True
    else:
        if checkpoint.model.startswith((".", "/", "~")) or checkpoint.model.count("/") > 1:
            raise CheckpointNotFoundError(f"checkpoint folder {checkpoint.model!r} does not exist.")
        source = checkpoint.model
        kwargs["revision"] = checkpoint.revision
        kwargs["local_files_only"] = offline
        if cache_dir is not None:
            kwargs["cache_dir"] = os.fspath(cache_dir)
    try:
        with quiet_transformers():
            model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as exc:
        hint = (
            " HF_HUB_OFFLINE is set (or local_files_only=True): the revision must already be in "
            "the Hugging Face cache; download it once online or point HF_HOME to a cache."
            if kwargs.get("local_files_only") and not checkpoint.is_local
            else ""
        )
        raise CheckpointNotFoundError(
            f"cannot load checkpoint {checkpoint.label!r}: {exc}.{hint}"
        ) from exc
    model.to(dev)
    model.eval()
    model.requires_grad_(False)
    return model


def weights_hash(model: Any) -> str:
    """SHA-256 fingerprint of a model's parameters and buffers, as loaded.

    Entries of ``state_dict()`` are hashed in name order: name, dtype, shape and raw bytes. The
    hash therefore depends on the load dtype (identical checkpoints loaded the same way hash
    identically); the model is not modified.

    Parameters
    ----------
    model
        A ``torch.nn.Module``.

    Returns
    -------
    str
        Hex digest.
    """
    import torch

    h = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        t = state[name]
        if not isinstance(t, torch.Tensor):  # pragma: no cover - extra state
            continue
        flat = t.detach().reshape(-1).contiguous().cpu()
        h.update(name.encode())
        h.update(str(flat.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if flat.numel():
            h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
