"""steer: LM-Steer output-embedding steers for any transformers causal LM.

Han et al., *Word Embeddings Are Steers for Language Models* (ACL 2024,
https://arxiv.org/abs/2305.12798). A steer transforms every output embedding
``e_v -> (I + eps W) e_v`` with ``W = sum_i s_i P1_i P2_i^T``; it is applied through a hook on the
hidden state entering the LM head and trained with the language model frozen.

Nothing runs at import time; transformers is imported only by the functions that load models.
"""

from __future__ import annotations

from steer.config import SteerConfig, TrainConfig
from steer.errors import (
    ChecksumError,
    FetchError,
    LabelRangeError,
    NoOutputEmbeddingsError,
    SteerDimensionError,
    SteerError,
    SteerFormatError,
    SteerInputError,
    SteerValuesError,
    SteerWarning,
)
from steer.generate import Generation, decode, generate, generations_frame
from steer.hooks import SteerHandle, attach, steering
from steer.io import load_steer, save_steer
from steer.module import LowRankSteer
from steer.train import SteerFit, fit_steer
from steer.transform import SteerTransform, apply_steer, compose, steered_output_embeddings

__all__ = [
    "ChecksumError",
    "FetchError",
    "Generation",
    "LabelRangeError",
    "LowRankSteer",
    "NoOutputEmbeddingsError",
    "SteerConfig",
    "SteerDimensionError",
    "SteerError",
    "SteerFit",
    "SteerFormatError",
    "SteerHandle",
    "SteerInputError",
    "SteerTransform",
    "SteerValuesError",
    "SteerWarning",
    "TrainConfig",
    "apply_steer",
    "attach",
    "compose",
    "decode",
    "fit_steer",
    "generate",
    "generations_frame",
    "load_steer",
    "save_steer",
    "steered_output_embeddings",
    "steering",
]
