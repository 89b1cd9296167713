"""Shared steps of the lab pipeline: corpus → tokenizer → split → grid → instances → scores.

Used by :func:`causalmem.workflows.lab_demo.run_lab_demo` and
:func:`causalmem.lab.ground_truth.ground_truth` so that both build their runs the same way (and
reuse each other's folder layout: the tokenizer folder with its ``causalmem.json`` fingerprint,
one scoring folder per run). Private: the heavy dependencies (``tokenizers``, ``torch``) are
imported when a step runs.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import numpy.typing as npt

from lmecon.atomic import atomic_write_text

if TYPE_CHECKING:
    import pandas as pd
    from tokenizers import Tokenizer

    from causalmem.estimators.att_gt import AttGtResult
    from causalmem.instances import Instances
    from causalmem.lab.config import LabConfig
    from causalmem.lab.corpus import Corpus
    from causalmem.lab.train import LabData, TrainConfig, TrainedRun, _RunFolder
    from causalmem.panel.panel import Panel

Log = Callable[[str], None]


def load_documents(cfg: LabConfig, log: Log | None) -> tuple[Corpus, str]:
    """Load and deduplicate the corpus of ``cfg``; return it and the SHA-256 of its documents."""
    from causalmem.lab.corpus import load_corpus

    corpus = load_corpus(cfg.corpus, cache=cfg.cache_dir, log=log).deduplicated()
    sha = hashlib.sha256("\n".join(corpus.documents).encode()).hexdigest()
    return corpus, sha


def corpus_provenance(corpus: Corpus, sha: str) -> dict[str, Any]:
    """Return the corpus provenance with the documents' SHA-256 (``documents_sha256``)."""
    return {**dict(corpus.provenance), "documents_sha256": sha}


def fit_tokenizer(
    corpus: Corpus, sha: str, vocab_size: int, tok_dir: Path
) -> tuple[Tokenizer, bool]:
    """Load the BPE tokenizer in ``tok_dir`` if it was fitted on this corpus, else fit and save it.

    The fingerprint ``tok_dir/causalmem.json`` (corpus SHA-256 and vocabulary size) decides the
    reuse. Returns the tokenizer and whether it was reused.
    """
    from causalmem.lab.tokenizer import load_tokenizer, save_tokenizer, train_bpe

    tok_meta = tok_dir / "causalmem.json"
    want = {"corpus_sha256": sha, "vocab_size": vocab_size}
    if tok_meta.exists() and json.loads(tok_meta.read_text()) == want:
        return load_tokenizer(tok_dir), True
    tokenizer = train_bpe(corpus.documents, vocab_size)
    save_tokenizer(tokenizer, tok_dir)
    atomic_write_text(tok_meta, json.dumps(want))
    return tokenizer, False


def split_data(tokenizer: Tokenizer, corpus: Corpus, cfg: LabConfig, tcfg: TrainConfig) -> LabData:
    """Encode the documents and pack them into the shuffled train / held-out / reserve split.

    With ``cfg.epochs > 1`` the training order repeats chunks (see
    :func:`causalmem.lab.train.prepare_data`).
    """
    from causalmem.lab.tokenizer import encode_documents
    from causalmem.lab.train import prepare_data

    docs = encode_documents(tokenizer, corpus.documents)
    if cfg.epochs == 1:  # the one-epoch call exactly as before (same split, same fingerprint)
        return prepare_data(docs, tcfg, n_validation=cfg.n_heldout, seed=cfg.seed)
    return prepare_data(
        docs,
        tcfg,
        n_validation=cfg.n_heldout,
        seed=cfg.seed,
        epochs=cfg.epochs,
        epoch_seed=cfg.epoch_seed,
    )


def analysis_steps(run: TrainedRun, cfg: LabConfig) -> npt.NDArray[np.int64]:
    """Return the analysed checkpoints: all, or the regular grid (with 0 and the last step)."""
    steps = np.asarray(run.checkpoint_steps, dtype=np.int64)
    if cfg.score_log_spaced:
        return steps
    keep = (steps == 0) | (steps % cfg.checkpoint_every == 0) | (steps == cfg.steps)
    return steps[keep]


def sample_instances(steps: npt.ArrayLike, cfg: LabConfig) -> pd.DataFrame:
    """Sample Pythia-style: ``k`` batches × ``m`` sequences per macro-batch of ``steps``."""
    from causalmem.instances import sample_macro_batches

    return sample_macro_batches(steps, cfg.batch_size, k=cfg.k, m=cfg.m, seed=cfg.seed)


class _HeldOutSettings(Protocol):
    """The fields that pick the never-trained instances (lab and fine-tuning configs)."""

    @property
    def n_validation(self) -> int: ...
    @property
    def seed(self) -> int: ...


def lab_instances(
    run: _RunFolder, sample: pd.DataFrame, cfg: _HeldOutSettings
) -> tuple[Instances, Instances, Instances]:
    """Return the sampled trained instances, ``n_validation`` never-trained ones, and both."""
    from causalmem.instances import Instances, training_instances, validation_instances

    tr = training_instances(run.order(), sample)
    va = validation_instances(np.load(run.validation_path), cfg.n_validation, seed=cfg.seed)
    return tr, va, Instances.concat([tr, va])


def score_run(
    run: TrainedRun,
    steps: npt.NDArray[np.int64],
    instances: Instances,
    out_dir: Path,
    cfg: LabConfig,
    *,
    plan: Mapping[int, npt.ArrayLike] | None = None,
    progress: bool = True,
) -> Panel:
    """Score ``instances`` at the checkpoints ``steps`` of ``run`` into ``out_dir`` (resumable)."""
    from causalmem.scoring.runner import score

    by_step = {c.step: c for c in run.checkpoints}
    panel = score(
        [by_step[int(s)] for s in steps],
        instances,
        out_dir,
        plan=plan,
        batch_size=cfg.scoring_batch_size or "auto",
        num_threads=cfg.num_threads,
        progress=progress,
        log=None,
    )
    return cast("Panel", panel)


class _FitSettings(Protocol):
    """The estimation fields shared by the lab's and the fine-tuning workflow's configs."""

    @property
    def outcome(self) -> str: ...
    @property
    def biters(self) -> int: ...
    @property
    def alp(self) -> float: ...
    @property
    def seed(self) -> int: ...


@contextmanager
def expected_empty_cells() -> Iterator[None]:
    """Silence :class:`~causalmem.errors.CausalmemWarning` while estimating on a lab panel.

    Cells before the scored pre-periods have no treated units by design (scoring plan).
    """
    from causalmem.errors import CausalmemWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CausalmemWarning)
        yield


def fit_att_gt(panel: Panel, cfg: _FitSettings) -> AttGtResult:
    """Fit ATT(g, t) of ``cfg.outcome`` on a scored lab panel (unbalanced: planned pairs only)."""
    from causalmem.estimators.att_gt import att_gt

    with expected_empty_cells():
        return att_gt(
            panel,
            yname=cfg.outcome,
            allow_unbalanced_panel=True,
            biters=cfg.biters,
            alp=cfg.alp,
            seed=cfg.seed,
        )
