"""Settings of a mini-Pythia lab run: corpus, tokenizer, model, training, sampling, scoring.

Shared by the lab demo (:mod:`causalmem.workflows.lab_demo`), the model family and the ground
truth by counterfactual retraining (:mod:`causalmem.lab.ground_truth`). A ``[lab_demo]`` table
of a TOML file sets any field.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

__all__ = ["LabConfig"]


@dataclass(frozen=True)
class LabConfig:
    """Settings of the lab demo (defaults: the prototype measured on a 2-core machine).

    Attributes
    ----------
    corpus
        ``"vader"`` (PyPI sdist, fetched once into the cache), a local text file, or
        ``"hf:<dataset>[:<config>]"`` (online).
    cache_dir
        Cache for fetched resources (default ``$CAUSALMEM_CACHE`` or ``~/.cache/causalmem``).
    vocab_size
        BPE vocabulary size.
    n_layer, d_model, n_head, seq_len, batch_size, steps, lr, warmup_frac, min_lr_ratio
        Model and optimiser (see :class:`causalmem.lab.train.TrainConfig`).
    checkpoint_every, log_spaced_until
        Checkpoint schedule: 0, 1, 2, 4, … ``log_spaced_until``, then every
        ``checkpoint_every`` steps.
    n_heldout
        Chunks held out from training (the never-treated pool).
    n_validation
        Held-out chunks scored (the control group).
    k, m
        Instances per macro-batch: ``k`` batches × ``m`` sequences.
    pre_periods
        Checkpoints scored before each cohort's base period (placebo cells); None (or a negative
        number, for TOML) scores every instance at every checkpoint (a balanced panel, about
        twice the scoring time).
    score_log_spaced
        Also score the log-spaced early checkpoints (as checkpoints and cohorts). The default
        analyses the regular grid, as the paper analyses Pythia's 1k grid.
    outcome
        Outcome for the headline profile (``logprob``: log p(x) in nats; ``sup_seq``, …).
    biters, alp
        Multiplier-bootstrap draws and level of the uniform band.
    seed, model_seed
        Data-order / sampling seed and initialisation seed.
    epochs
        Passes over the unique training chunks (default 1: every sequence trained once, the
        paper's design). ``2``: the second half of the steps re-trains every chunk in a fresh
        seeded order; ``1.5`` (Pythia-deduped): the last third re-trains a random half. The
        recorded order (``data/sequence_id.npy``) maps each position to its chunk.
    epoch_seed
        Seed of the later epochs' shuffles (None: ``seed``).
    num_threads
        torch threads for training and scoring (one was fastest on a busy 2-core machine).
    scoring_batch_size
        Sequences per scoring forward pass (``0``: choose from free memory).
    """

    corpus: str = "vader"
    cache_dir: str | None = None
    vocab_size: int = 2048
    n_layer: int = 2
    d_model: int = 128
    n_head: int = 4
    seq_len: int = 64
    batch_size: int = 16
    steps: int = 600
    lr: float = 3e-3
    warmup_frac: float = 0.01
    min_lr_ratio: float = 0.1
    checkpoint_every: int = 50
    log_spaced_until: int = 32
    n_heldout: int = 1000
    n_validation: int = 500
    k: int = 10
    m: int = 5
    pre_periods: int | None = 2
    score_log_spaced: bool = False
    outcome: str = "logprob"
    biters: int = 1000
    alp: float = 0.05
    seed: int = 1234
    model_seed: int = 0
    num_threads: int | None = 1
    scoring_batch_size: int = 32
    epochs: float = 1.0
    epoch_seed: int | None = None

    def __post_init__(self) -> None:
        if self.pre_periods is not None and self.pre_periods < 0:
            object.__setattr__(self, "pre_periods", None)
        if self.n_validation > self.n_heldout:
            raise ValueError("n_validation cannot exceed n_heldout (the never-trained pool).")
        if not self.epochs >= 1:
            raise ValueError(f"epochs={self.epochs}; use at least 1.")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> LabConfig:
        """Read a ``[lab_demo]`` table from a TOML file; unknown keys are an error."""
        data = tomllib.loads(Path(path).read_text()).get("lab_demo", {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown [lab_demo] keys {unknown}; known: {sorted(known)}.")
        return cls(**data)

    def train_config(self) -> Any:
        """Return the :class:`~causalmem.lab.train.TrainConfig` of this demo."""
        from causalmem.lab.train import TrainConfig

        return TrainConfig(
            n_layer=self.n_layer,
            d_model=self.d_model,
            n_head=self.n_head,
            seq_len=self.seq_len,
            batch_size=self.batch_size,
            steps=self.steps,
            lr=self.lr,
            warmup_frac=self.warmup_frac,
            min_lr_ratio=self.min_lr_ratio,
            checkpoint_every=self.checkpoint_every,
            log_spaced_until=self.log_spaced_until,
            seed=self.model_seed,
            num_threads=self.num_threads,
        )
