"""The scoring stage: checkpoints of a causal LM × instances → a long memorisation panel.

The only part of causalmem that imports torch and transformers, and only when a function that
needs them is called: ``import causalmem.scoring`` stays light.

* :mod:`~causalmem.scoring.checkpoints`: :class:`Checkpoint`, Pythia's step grid, offline
  loading, weight hashing.
* :mod:`~causalmem.scoring.metrics`: per-token / per-sequence scores (pure torch).
* :mod:`~causalmem.scoring.runner`: :func:`score`, batched, deterministic and resumable, one
  parquet shard per checkpoint plus a manifest.
* :mod:`~causalmem.scoring.ray_backend`: :func:`score_ray`, one checkpoint per Ray task.
* :mod:`~causalmem.scoring.integrity`: the checks that keep wrong numbers out (vocabulary and
  context against the instances, non-finite logits, shard names, content checksums, weight
  sources); errors in :mod:`causalmem.errors`.
"""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "METRICS",
    "MEMORISATION_SIGN",
    "Checkpoint",
    "CheckpointNotFoundError",
    "DuplicateWeightsError",
    "ScoreRunMismatchError",
    "ShardRecord",
    "load_causal_lm",
    "local_checkpoints",
    "pythia_checkpoints",
    "pythia_revisions",
    "read_manifest",
    "read_scores",
    "score",
    "score_instances",
    "score_ray",
    "scoring_plan",
    "sequence_scores",
    "token_scores",
    "weights_hash",
]

_WHERE = {
    "Checkpoint": "checkpoints",
    "CheckpointNotFoundError": "checkpoints",
    "DuplicateWeightsError": "checkpoints",
    "load_causal_lm": "checkpoints",
    "local_checkpoints": "checkpoints",
    "pythia_checkpoints": "checkpoints",
    "pythia_revisions": "checkpoints",
    "weights_hash": "checkpoints",
    "METRICS": "metrics",
    "MEMORISATION_SIGN": "metrics",
    "sequence_scores": "metrics",
    "token_scores": "metrics",
    "ScoreRunMismatchError": "runner",
    "ShardRecord": "runner",
    "read_manifest": "runner",
    "read_scores": "runner",
    "score": "runner",
    "score_instances": "runner",
    "scoring_plan": "runner",
    "score_ray": "ray_backend",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
