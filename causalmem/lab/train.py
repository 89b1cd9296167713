"""Train the mini-Pythia: a tiny GPT-NeoX with a recorded data order and Pythia-like checkpoints.

Design (the prototype measured in memorisation.md):

* Data: tokenised documents packed without end-of-text tokens into ``seq_len`` chunks, exact
  duplicate chunks removed, one seeded permutation. The first ``n_validation`` chunks are the
  held-out split (never trained on), the next ``steps × batch_size`` are the training order,
  the rest is a reserve (for counterfactual swaps). The training order is written in Pythia's
  ``.bin``/``.idx`` format and training reads its batches from that file, so the recorded
  order *is* the order trained: position ``i`` is consumed by step ``i // batch_size + 1``.
* Model: ``GPTNeoXForCausalLM`` (no dropout), initialised under a scoped
  ``torch.random.fork_rng`` with ``seed`` (global RNG state is restored afterwards).
* Optimiser: AdamW (β = 0.9, 0.95; weight decay on matrices only), gradient clipping at 1.0,
  linear warm-up over ``warmup_frac`` of the steps, then cosine decay to ``min_lr_ratio`` of
  the peak (Pythia: 1% warm-up, floor 0.1 × max).
* Checkpoints (``save_pretrained``, safetensors) at 0, 1, 2, 4, …, ``log_spaced_until`` and every
  ``checkpoint_every`` steps, plus the last step. Cohort ``c_k`` = instances trained in
  ``(c_{k-1}, c_k]``; its base period is ``c_{k-1}``.
* Resumable: after each checkpoint the optimiser state is saved; rerunning :func:`train` on
  the same folder continues from the last checkpoint and gives bit-identical weights
  (deterministic CPU kernels, fixed order, no dropout). Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.instances import MMapIndexedDataset, pack_documents, write_indexed_dataset
from causalmem.scoring.checkpoints import Checkpoint
from lmecon.atomic import atomic_write_bytes

__all__ = [
    "LabData",
    "TrainConfig",
    "TrainedRun",
    "cohort_lr",
    "exposures",
    "lab_checkpoint_steps",
    "lr_at",
    "lr_schedule",
    "prepare_data",
    "train",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    """Model, optimiser and schedule of a lab run (defaults: the prototype's 0.92M model).

    Attributes
    ----------
    n_layer, d_model, n_head, d_ff
        GPT-NeoX shape (``d_ff`` defaults to ``4 * d_model``).
    seq_len
        Tokens per training sequence (the model's context).
    batch_size, steps
        Sequences per optimizer step; optimizer steps (one epoch unless the data were prepared
        with ``epochs > 1``, see :func:`prepare_data`).
    lr, warmup_frac, min_lr_ratio
        Peak learning rate, warm-up share of the steps, cosine floor as a share of the peak.
    weight_decay, beta1, beta2, eps, grad_clip
        AdamW and clipping settings.
    checkpoint_every, log_spaced_until
        Checkpoint grid: 0, 1, 2, 4, … ``log_spaced_until``, then every ``checkpoint_every``.
    seed
        Initialisation seed.
    num_threads
        torch threads while training (restored afterwards); on a busy 2-core machine one
        thread trained several times faster than two. None: leave torch's setting.
    """

    n_layer: int = 2
    d_model: int = 128
    n_head: int = 4
    d_ff: int | None = None
    seq_len: int = 64
    batch_size: int = 16
    steps: int = 600
    lr: float = 3e-3
    warmup_frac: float = 0.01
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    checkpoint_every: int = 50
    log_spaced_until: int = 32
    seed: int = 0
    num_threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "seq_len", "batch_size", "steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be positive.")
        if self.d_model % self.n_head:
            raise ValueError("d_model must be a multiple of n_head.")
        if self.seq_len < 2:
            raise ValueError("seq_len must be >= 2.")
        if not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_ratio <= 1 or self.lr <= 0:
            raise ValueError("need lr > 0, 0 <= warmup_frac < 1 and 0 <= min_lr_ratio <= 1.")
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be positive.")

    @property
    def warmup_steps(self) -> int:
        """Warm-up steps (at least 1)."""
        return max(1, int(round(self.warmup_frac * self.steps)))

    @property
    def n_train_sequences(self) -> int:
        """Sequences consumed by the run (``steps × batch_size``)."""
        return self.steps * self.batch_size


# ----------------------------------------------------------------------------- schedules
def lab_checkpoint_steps(
    steps: int, every: int = 50, log_spaced_until: int = 32
) -> npt.NDArray[np.int64]:
    """Pythia-like checkpoint grid: 0, 1, 2, 4, …, ``log_spaced_until``, then every ``every``.

    Examples
    --------
    >>> lab_checkpoint_steps(120, every=50).tolist()
    [0, 1, 2, 4, 8, 16, 32, 50, 100, 120]
    """
    pts = {0, int(steps)}
    p = 1
    while p <= min(log_spaced_until, steps):
        pts.add(p)
        p *= 2
    pts.update(range(every, steps + 1, every))
    return np.array(sorted(pts), dtype=np.int64)


def lr_at(step: int | npt.ArrayLike, cfg: TrainConfig) -> Any:
    """Learning rate used by optimizer step ``step`` (1-indexed): linear warm-up, then cosine.

    Examples
    --------
    >>> cfg = TrainConfig(steps=100, lr=1.0, warmup_frac=0.1, min_lr_ratio=0.1)
    >>> [round(float(lr_at(s, cfg)), 3) for s in (1, 10, 55, 100)]
    [0.1, 1.0, 0.55, 0.1]
    """
    s = np.asarray(step, dtype=np.float64)
    w = cfg.warmup_steps
    warm = cfg.lr * s / w
    prog = np.clip((s - w) / max(1, cfg.steps - w), 0.0, 1.0)
    cos = cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + np.cos(math.pi * prog)))
    out = np.where(s <= w, warm, cos)
    return float(out) if out.ndim == 0 else out


def lr_schedule(cfg: TrainConfig) -> pd.DataFrame:
    """Return the learning rate of every optimizer step: columns ``step`` (1 … steps) and ``lr``."""
    steps = np.arange(1, cfg.steps + 1, dtype=np.int64)
    return pd.DataFrame({"step": steps, "lr": lr_at(steps, cfg)})


def cohort_lr(cfg: TrainConfig, checkpoint_steps: npt.ArrayLike) -> pd.DataFrame:
    """Mean (and last) learning rate over each macro-batch ``(c_{k-1}, c_k]``.

    Returns
    -------
    pandas.DataFrame
        ``group`` (= ``c_k``), ``base`` (``c_{k-1}``), ``lr_mean``, ``lr_end``.
    """
    grid = np.unique(np.append(np.asarray(checkpoint_steps, dtype=np.int64), 0))
    rows = []
    for lo, hi in zip(grid[:-1], grid[1:], strict=True):
        lrs = lr_at(np.arange(lo + 1, hi + 1), cfg)
        rows.append(
            {
                "group": int(hi),
                "base": int(lo),
                "lr_mean": float(np.mean(lrs)),
                "lr_end": float(np.atleast_1d(lrs)[-1]),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class LabData:
    """Packed chunks split into validation / training order / reserve (read-only arrays).

    With more than one epoch, ``train`` is the recorded order *with repeats* (epoch 1: every
    unique training chunk once; later epochs: fresh seeded shuffles) and ``sequence_id`` maps
    each position to its unique chunk.
    """

    validation: npt.NDArray[np.int64]
    train: npt.NDArray[np.int64]
    reserve: npt.NDArray[np.int64]
    provenance: dict[str, Any] = field(default_factory=dict)
    sequence_id: npt.NDArray[np.int64] | None = None
    """Multi-epoch runs: for each position of the training order, the id of the unique chunk
    trained there (its position in the first epoch; ``-1`` for a swapped-in filler). None for
    a one-epoch run, where position = id."""

    def fingerprint(self) -> str:
        """SHA-256 of the training order and the validation chunks."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.train, dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(self.validation, dtype=np.int64).tobytes())
        return h.hexdigest()


def prepare_data(
    documents: Sequence[npt.ArrayLike],
    cfg: TrainConfig,
    *,
    n_validation: int,
    seed: int = 0,
    epochs: float = 1.0,
    epoch_seed: int | None = None,
) -> LabData:
    """Pack, deduplicate, shuffle and split tokenised documents.

    Parameters
    ----------
    documents
        Token-id arrays (e.g. :func:`~causalmem.lab.tokenizer.encode_documents`).
    cfg
        Training config (``seq_len``, ``steps``, ``batch_size``).
    n_validation
        Held-out chunks, never trained on.
    seed
        Seed of the permutation (the recorded order).
    epochs
        Passes over the unique training chunks (Pythia-deduped: about 1.5). The run trains
        ``steps × batch_size`` sequences: ``U = round(steps × batch_size / epochs)`` unique
        chunks in the first epoch, then fresh shuffles of them (epoch ``j`` uses
        ``default_rng([epoch_seed, j])``) until the order is full; a last partial epoch repeats
        a random subset. ``1`` (default) gives the one-epoch split exactly as before.
    epoch_seed
        Seed of the later epochs' shuffles (default: ``seed``).

    Returns
    -------
    LabData

    Raises
    ------
    ValueError
        If there are fewer unique chunks than ``n_validation + U``, or ``epochs < 1``.
    """
    chunks = pack_documents(documents, cfg.seq_len)
    n_raw = chunks.shape[0]
    _, first = np.unique(chunks, axis=0, return_index=True)
    chunks = chunks[np.sort(first)]
    if not epochs >= 1:
        raise ValueError(f"epochs={epochs}; use at least 1 (one pass over the training chunks).")
    n_unique = cfg.n_train_sequences if epochs == 1 else int(round(cfg.n_train_sequences / epochs))
    need = n_validation + n_unique
    if chunks.shape[0] < need:
        raise ValueError(
            f"the corpus gives {chunks.shape[0]:,} unique {cfg.seq_len}-token chunks but the run "
            f"needs {need:,} ({n_validation:,} held out + {n_unique:,} unique training chunks: "
            f"{cfg.steps} steps × {cfg.batch_size} over {epochs:g} epochs); use more text, fewer "
            "steps or a smaller batch."
        )
    perm = np.random.default_rng(seed).permutation(chunks.shape[0])
    val = chunks[perm[:n_validation]]
    tr = chunks[perm[n_validation:need]]
    res = chunks[perm[need:]]
    seq_id: npt.NDArray[np.int64] | None = None
    if epochs != 1:
        seq_id = _epoch_order(
            n_unique, cfg.n_train_sequences, seed if epoch_seed is None else epoch_seed
        )
        tr = tr[seq_id]
        seq_id.setflags(write=False)
    for a in (val, tr, res):
        a.setflags(write=False)
    prov = {
        "chunks": int(n_raw),
        "unique_chunks": int(chunks.shape[0]),
        "tokens": int(chunks.size),
        "seq_len": cfg.seq_len,
        "n_validation": int(n_validation),
        "n_train": int(tr.shape[0]),
        "n_reserve": int(res.shape[0]),
        "seed": int(seed),
        "packing": "documents concatenated without EOS, fixed-length chunks, remainder dropped",
    }
    if seq_id is not None:
        prov.update(
            epochs=float(epochs),
            epoch_seed=int(seed if epoch_seed is None else epoch_seed),
            n_unique_train=int(n_unique),
            epoch_order="epoch 1: unique chunks in order; epoch j >= 2: "
            "default_rng([epoch_seed, j]).permutation(U), the last one truncated",
        )
    return LabData(validation=val, train=tr, reserve=res, provenance=prov, sequence_id=seq_id)


def _epoch_order(n_unique: int, total: int, seed: int) -> npt.NDArray[np.int64]:
    """Chunk id of each training position: ``0 … U−1``, then seeded reshuffles until ``total``."""
    parts = [np.arange(n_unique, dtype=np.int64)]
    filled, j = n_unique, 2
    while filled < total:
        perm = np.random.default_rng([int(seed), j]).permutation(n_unique).astype(np.int64)
        parts.append(perm[: total - filled])
        filled += parts[-1].size
        j += 1
    return np.concatenate(parts)


def exposures(sequence_id: npt.ArrayLike, batch_size: int) -> pd.DataFrame:
    """First and second training positions (and steps) of every unique chunk of an order.

    Parameters
    ----------
    sequence_id
        :attr:`LabData.sequence_id` (or :meth:`TrainedRun.sequence_ids`); negative ids (swapped
        fillers) are ignored.
    batch_size
        Sequences per step (position ``i`` is trained by step ``i // batch_size + 1``).

    Returns
    -------
    pandas.DataFrame
        One row per chunk id: ``sequence_id``, ``pos1``, ``step1``, ``pos2``, ``step2``
        (``pos2``/``step2`` −1 when the chunk is trained once) and ``n_exposures``.
    """
    ids = np.asarray(sequence_id, dtype=np.int64)
    pos = np.arange(ids.size, dtype=np.int64)
    ok = ids >= 0
    ids, pos = ids[ok], pos[ok]
    order = np.lexsort((pos, ids))
    ids, pos = ids[order], pos[order]
    uniq, start, count = np.unique(ids, return_index=True, return_counts=True)
    second = np.where(count > 1, pos[np.minimum(start + 1, ids.size - 1)], -1)
    first = pos[start]
    return pd.DataFrame(
        {
            "sequence_id": uniq,
            "pos1": first,
            "step1": first // batch_size + 1,
            "pos2": second,
            "step2": np.where(second >= 0, second // batch_size + 1, -1),
            "n_exposures": count,
        }
    )


# ----------------------------------------------------------------------------- results
class _RunFolder:
    """Paths of a run folder (``checkpoints/step<N>/``, ``data/``) shared by the lab's runs."""

    run_dir: Path
    checkpoint_steps: tuple[int, ...]

    @property
    def checkpoints(self) -> tuple[Checkpoint, ...]:
        """The saved checkpoints as :class:`~causalmem.scoring.Checkpoint` values."""
        root = self.run_dir / "checkpoints"
        return tuple(Checkpoint(str(root / f"step{s}"), None, s) for s in self.checkpoint_steps)

    @property
    def order_path(self) -> Path:
        """Prefix of the recorded training order (``train.bin`` / ``train.idx``)."""
        return self.run_dir / "data" / "train"

    @property
    def validation_path(self) -> Path:
        """The held-out chunks (``validation.npy``), never trained on."""
        return self.run_dir / "data" / "validation.npy"

    def order(self) -> MMapIndexedDataset:
        """Open the recorded training order (memory-mapped)."""
        return MMapIndexedDataset(self.order_path)


@dataclass(frozen=True)
class TrainedRun(_RunFolder):
    """A finished lab run: where its checkpoints and recorded order are."""

    run_dir: Path
    config: TrainConfig
    vocab_size: int
    checkpoint_steps: tuple[int, ...]
    history: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    resumed_from: int | None = None

    def sequence_ids(self) -> npt.NDArray[np.int64]:
        """Unique-chunk id of each training position (``arange`` for a one-epoch run)."""
        path = self.run_dir / "data" / "sequence_id.npy"
        if path.exists():
            return np.asarray(np.load(path), dtype=np.int64)
        return np.arange(self.config.n_train_sequences, dtype=np.int64)


# ----------------------------------------------------------------------------- io helpers
def _atomic_bytes(data: bytes, target: Path) -> None:
    atomic_write_bytes(target, data)


def _atomic_npy(arr: np.ndarray, target: Path) -> None:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    _atomic_bytes(buf.getvalue(), target)


def _atomic_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Fill a temporary sibling folder with ``write`` and rename it to ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        write(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_data(data: LabData, run_dir: str | os.PathLike[str]) -> Path:
    """Store the recorded order (``train.bin/.idx``), ``validation.npy`` and ``reserve.npy``."""
    d = Path(run_dir) / "data"
    d.mkdir(parents=True, exist_ok=True)
    vmax = int(max(data.train.max(initial=0), data.validation.max(initial=0)))
    dtype = np.uint16 if vmax < 2**16 else np.int32
    write_indexed_dataset(d / "train", data.train, dtype=dtype)
    _atomic_npy(np.asarray(data.validation), d / "validation.npy")
    _atomic_npy(np.asarray(data.reserve), d / "reserve.npy")
    if data.sequence_id is not None:
        _atomic_npy(np.asarray(data.sequence_id), d / "sequence_id.npy")
    meta = {**data.provenance, "fingerprint": data.fingerprint()}
    _atomic_bytes(json.dumps(meta, indent=1).encode(), d / "data.json")
    return d


# ----------------------------------------------------------------------------- training
def _model_config(cfg: TrainConfig, vocab_size: int) -> Any:
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=int(vocab_size),
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        intermediate_size=cfg.d_ff or 4 * cfg.d_model,
        max_position_embeddings=cfg.seq_len,
        tie_word_embeddings=False,
        use_parallel_residual=True,
        attention_dropout=0.0,
        hidden_dropout=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )


def init_model(cfg: TrainConfig, vocab_size: int) -> Any:
    """Build a freshly initialised ``GPTNeoXForCausalLM`` (seeded; global RNG state is restored)."""
    import torch
    from transformers import GPTNeoXForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = GPTNeoXForCausalLM(_model_config(cfg, vocab_size))
    return model


class _AdamWSettings(Protocol):
    """The optimiser fields shared by :class:`TrainConfig` and the fine-tuning config."""

    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def beta1(self) -> float: ...
    @property
    def beta2(self) -> float: ...
    @property
    def eps(self) -> float: ...


def _optimizer(model: Any, cfg: _AdamWSettings) -> Any:
    """AdamW over the trainable parameters, weight decay on matrices only."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.eps,
        foreach=False,
    )


def _save_optimizer(opt: Any, step: int, history: list[dict[str, float]], fp: str, d: Path) -> None:
    from safetensors.torch import save_file

    sd = opt.state_dict()
    tensors = {
        f"{pid}.{key}": val.detach().clone().contiguous()
        for pid, st in sd["state"].items()
        for key, val in st.items()
    }

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(
            json.dumps(
                {
                    "step": step,
                    "fingerprint": fp,
                    "param_groups": sd["param_groups"],
                    "history": history,
                }
            )
        )

    _atomic_dir(d, write)


def _load_optimizer(opt: Any, d: Path) -> tuple[int, list[dict[str, float]]]:
    from safetensors.torch import load_file

    meta = json.loads((d / "state.json").read_text())
    flat = load_file(str(d / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, val in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = val
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), list(meta["history"])


def _fingerprint(cfg: TrainConfig, vocab_size: int, data_fp: str) -> str:
    body = json.dumps({"config": asdict(cfg), "vocab": vocab_size, "data": data_fp}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class _Loop:
    """State of one training call: where it writes, what it trains, how far it got."""

    root: Path
    cfg: TrainConfig
    vocab_size: int
    fp: str
    grid: npt.NDArray[np.int64]
    start: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None

    @property
    def state_dir(self) -> Path:
        """The latest optimiser state (``trainer_state/``, removed when the run finishes)."""
        return self.root / "trainer_state"

    def result(self, seconds: float, upto: int | None = None) -> TrainedRun:
        """Return the run's :class:`TrainedRun` (checkpoints up to step ``upto``, default all)."""
        steps = tuple(int(s) for s in self.grid if upto is None or s <= upto)
        return TrainedRun(
            self.root,
            self.cfg,
            self.vocab_size,
            steps,
            pd.DataFrame(self.history),
            seconds,
            self.resumed_from,
        )


def train(
    data: LabData,
    cfg: TrainConfig,
    run_dir: str | os.PathLike[str],
    *,
    vocab_size: int,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> TrainedRun:
    """Train the lab model on the recorded order, saving Pythia-like checkpoints.

    Parameters
    ----------
    data
        Output of :func:`prepare_data` (stored under ``run_dir/data``).
    cfg
        Model / optimiser / schedule.
    run_dir
        Output folder: ``data/``, ``checkpoints/step<N>/`` (``save_pretrained``),
        ``trainer_state/`` (latest optimiser state) and ``run.json``.
    vocab_size
        Tokenizer vocabulary size.
    resume
        Continue an interrupted run in ``run_dir`` (same config and data); a finished run is
        returned without training. With False an existing run is an error.
    stop_after
        Stop (as if interrupted) after this step's checkpoint; for tests and staged runs.
    progress
        Show a rich progress bar.
    log
        Message callback.

    Returns
    -------
    TrainedRun
    """
    from causalmem.scoring.runner import torch_settings

    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "checkpoints").mkdir(exist_ok=True)
    fp = _fingerprint(cfg, vocab_size, data.fingerprint())
    grid = lab_checkpoint_steps(cfg.steps, cfg.checkpoint_every, cfg.log_spaced_until)
    loop = _Loop(root, cfg, vocab_size, fp, grid)
    finished = _finished_run(loop, resume=resume)
    if finished is not None:
        return finished
    order = _store_order(data, loop)

    t0 = time.perf_counter()
    with torch_settings(cfg.num_threads):
        model = init_model(cfg, vocab_size)
        opt = _optimizer(model, cfg)
        _restore(model, opt, loop, resume=resume, log=log)
        model.train()
        if loop.start == 0:
            _save_checkpoint(model, root, 0)
            _save_optimizer(opt, 0, loop.history, fp, loop.state_dir)
        stopped = _run_steps(
            model, opt, order, loop, stop_after=stop_after, progress=progress, log=log
        )
    if stopped is not None:
        return loop.result(time.perf_counter() - t0, upto=stopped)
    return _finish(loop, data, time.perf_counter() - t0)


def _read_finished(root: Path, fp: str, *, resume: bool, what: str) -> dict[str, Any] | None:
    """Return ``root/run.json`` of a finished run with fingerprint ``fp`` (None if there is none).

    ``what`` names the run in the error for a different fingerprint (``"a different <what>;
    use a new folder"``); with ``resume=False`` a finished run is an error.
    """
    run_json = root / "run.json"
    if not run_json.exists():
        return None
    done: dict[str, Any] = json.loads(run_json.read_text())
    if done.get("fingerprint") != fp:
        raise ValueError(f"{root} holds a different {what}; use a new folder.")
    if not resume:
        raise FileExistsError(f"{root} already holds a finished run (resume=False).")
    return done


def _finished_run(loop: _Loop, *, resume: bool) -> TrainedRun | None:
    """Return the finished run stored in ``loop.root`` (None if there is none)."""
    done = _read_finished(
        loop.root, loop.fp, resume=resume, what="lab run (config or data changed)"
    )
    if done is None:
        return None
    return TrainedRun(
        loop.root,
        loop.cfg,
        loop.vocab_size,
        tuple(int(s) for s in loop.grid),
        pd.DataFrame(done["history"]),
        float(done.get("seconds", 0.0)),
        resumed_from=loop.cfg.steps,
    )


def _store_order(data: LabData, loop: _Loop) -> MMapIndexedDataset:
    """Clear files of a run killed mid-write, store ``data`` and open the recorded order."""
    root = loop.root
    for stale in [*(root / "checkpoints").glob(".*.tmp"), *root.glob(".trainer_state.*.tmp")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a run killed mid-write
    write_data(data, root)
    order = MMapIndexedDataset(root / "data" / "train")
    if len(order) != loop.cfg.n_train_sequences:
        raise ValueError("the stored order does not match the config (steps × batch_size).")
    return order


def _restore(model: Any, opt: Any, loop: _Loop, *, resume: bool, log: Log | None) -> None:
    """Resume ``model`` and ``opt`` from the saved trainer state, if any (sets ``loop.start``)."""
    state_dir, checkpoints = loop.state_dir, loop.root / "checkpoints"
    if resume and (state_dir / "state.json").exists():
        meta = json.loads((state_dir / "state.json").read_text())
        if meta.get("fingerprint") != loop.fp:
            raise ValueError(f"{state_dir} belongs to a different run; use a new folder.")
        _load_weights(model, checkpoints / f"step{int(meta['step'])}")
        loop.start, loop.history = _load_optimizer(opt, state_dir)
        loop.resumed_from = loop.start
        if log:
            log(f"resuming training from step {loop.start}")
    elif not resume and any(checkpoints.iterdir()):
        raise FileExistsError(f"{loop.root} already holds checkpoints (resume=False).")


def _load_weights(model: Any, checkpoint: Path) -> None:
    """Copy the weights saved in ``checkpoint`` into ``model`` exactly."""
    import torch
    from transformers import GPTNeoXForCausalLM

    from causalmem.scoring.checkpoints import quiet_transformers

    with quiet_transformers():
        saved = GPTNeoXForCausalLM.from_pretrained(checkpoint, dtype=torch.float32)
    # from_pretrained maps the stored names (e.g. embed_out -> lm_head); copy exactly.
    model.load_state_dict(saved.state_dict(), strict=True)
    del saved


def _train_step(
    model: Any, opt: Any, order: MMapIndexedDataset, step: int, cfg: TrainConfig
) -> dict[str, float]:
    """Take optimizer step ``step`` on its batch of the recorded order; return its history row."""
    import torch

    bs = cfg.batch_size
    rows = np.stack([order[i] for i in range((step - 1) * bs, step * bs)])
    batch = torch.from_numpy(rows.astype(np.int64))
    lr = float(lr_at(step, cfg))
    loss, _ = _optimizer_step(model, opt, batch, lr, cfg.grad_clip)
    return {"step": step, "loss": loss, "lr": lr}


def _optimizer_step(
    model: Any, opt: Any, batch: Any, lr: float, grad_clip: float
) -> tuple[float, float]:
    """One AdamW step at ``lr`` on next-token cross-entropy of ``batch`` (clipped gradients).

    Returns the batch's loss before the update and the gradient norm before clipping.
    """
    import torch

    for group in opt.param_groups:
        group["lr"] = lr
    logits = model(input_ids=batch).logits
    loss = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch[:, 1:].reshape(-1)
    )
    loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    norm = torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return float(loss.detach()), float(norm)


def _run_steps(
    model: Any,
    opt: Any,
    order: MMapIndexedDataset,
    loop: _Loop,
    *,
    stop_after: int | None,
    progress: bool,
    log: Log | None,
) -> int | None:
    """Train from ``loop.start`` to the last step, saving checkpoints on the grid.

    Returns the step it stopped at (``stop_after``), or None when the run is complete.
    """
    from rich.progress import Progress

    cfg, history = loop.cfg, loop.history
    ckpt_set = {int(s) for s in loop.grid}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("training", total=cfg.steps, completed=loop.start)
        for step in range(loop.start + 1, cfg.steps + 1):
            history.append(_train_step(model, opt, order, step, cfg))
            bar.advance(task)
            if step not in ckpt_set:
                continue
            _save_checkpoint(model, loop.root, step)
            _save_optimizer(opt, step, history, loop.fp, loop.state_dir)
            if log and (step == cfg.steps or step % (cfg.checkpoint_every * 4) == 0):
                log(f"step {step}: loss {history[-1]['loss']:.3f}, lr {history[-1]['lr']:.2e}")
            if stop_after is not None and step >= stop_after and step < cfg.steps:
                return step
    return None


def _finish(loop: _Loop, data: LabData, seconds: float) -> TrainedRun:
    """Write ``run.json``, drop the trainer state and return the finished run."""
    body = {
        "fingerprint": loop.fp,
        "config": asdict(loop.cfg),
        "vocab_size": loop.vocab_size,
        "checkpoint_steps": [int(s) for s in loop.grid],
        "data": data.provenance,
        "seconds": seconds,
        "resumed_from": loop.resumed_from,
        "history": loop.history,
    }
    _atomic_bytes(json.dumps(body, indent=1).encode(), loop.root / "run.json")
    shutil.rmtree(loop.state_dir, ignore_errors=True)
    return loop.result(seconds)


def _save_checkpoint(model: Any, root: Path, step: int) -> None:
    from causalmem.scoring.checkpoints import quiet_transformers

    target = root / "checkpoints" / f"step{step}"
    with quiet_transformers():
        _atomic_dir(target, lambda tmp: model.save_pretrained(tmp))
