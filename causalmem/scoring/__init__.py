"""The scoring stage: checkpoints of a causal LM × instances → a long memorisation panel.

The only part of causalmem that imports torch and transformers, and only when a function that
needs them is called: ``import causalmem.scoring`` stays light.

* :mod:`~causalmem.scoring.checkpoints`: :class:`Checkpoint`, Pythia's step grid, offline
  loading, weight hashing.
* :mod:`~causalmem.scoring.metrics`: per-token / per-sequence scores (pure torch).
* :mod:`~causalmem.scoring.fused`: the default scorer: metrics from the final hidden states,
  the head applied one vocabulary chunk at a time (no ``[batch, length, vocab]`` logits),
  length buckets so padding is never scored.
* :mod:`~causalmem.scoring.runner`: :func:`score`, batched, deterministic and resumable, one
  parquet shard per checkpoint plus a manifest.
* :mod:`~causalmem.scoring.sampling`: instances from a training order (Pythia's pre-shuffled
  index, also in its published byte pieces; numpy arrays; lab runs) and the instance table.
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
    "ShardedIndexedDataset",
    "fused_sequence_scores",
    "fused_token_scores",
    "open_order",
    "read_instance_table",
    "resolve_method",
    "sample_training",
    "sample_validation",
    "write_instance_table",
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
    "fused_sequence_scores": "fused",
    "fused_token_scores": "fused",
    "resolve_method": "runner",
    "ShardedIndexedDataset": "sampling",
    "open_order": "sampling",
    "read_instance_table": "sampling",
    "sample_training": "sampling",
    "sample_validation": "sampling",
    "write_instance_table": "sampling",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
