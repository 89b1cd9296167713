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
from steer.evaluate import Evaluation, evaluate, save_evaluations, value_grid
from steer.factors import FactorAnalysis, factor_analysis, factor_scores
from steer.generate import Generation, decode, generate, generations_frame
from steer.highlight import Highlight, find_max_subspans, highlight, highlight_grid, highlights_html
from steer.hooks import SteerHandle, attach, steering
from steer.io import load_steer, save_steer
from steer.module import LowRankSteer
from steer.train import SteerFit, fit_steer
from steer.transfer import (
    ContextMap,
    EmbeddingMap,
    fit_context_map,
    fit_embedding_map,
    transfer,
    transfer_fidelities,
    transfer_fidelity,
)
from steer.transform import SteerTransform, apply_steer, compose, steered_output_embeddings

__all__ = [
    "ChecksumError",
    "ContextMap",
    "EmbeddingMap",
    "Evaluation",
    "FactorAnalysis",
    "FetchError",
    "Generation",
    "Highlight",
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
    "evaluate",
    "factor_analysis",
    "factor_scores",
    "find_max_subspans",
    "fit_context_map",
    "fit_embedding_map",
    "fit_steer",
    "generate",
    "generations_frame",
    "highlight",
    "highlight_grid",
    "highlights_html",
    "load_steer",
    "save_evaluations",
    "save_steer",
    "steered_output_embeddings",
    "steering",
    "transfer",
    "transfer_fidelities",
    "transfer_fidelity",
    "value_grid",
]
