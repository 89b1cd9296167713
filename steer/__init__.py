"""steer: LM-Steer output-embedding steers for any transformers causal LM.

Han et al., *Word Embeddings Are Steers for Language Models* (ACL 2024,
https://arxiv.org/abs/2305.12798). A steer transforms every output embedding
``e_v -> (I + eps W) e_v`` with ``W = sum_i s_i P1_i P2_i^T``; it is applied through a hook on the
hidden state entering the LM head and trained with the language model frozen.

Nothing runs at import time: the names below are imported on first use, so ``import steer``
loads neither torch nor transformers nor anything of ``causalmem``. Layout: ``core``
(transform, module, hooks, io), ``train``, ``factors``, ``highlighting``, ``generation``,
``crossmodel`` (transfer between LMs), ``evaluation`` (harness, scorers), ``charts``,
``resources`` (embedded models and data), ``workflows`` (the demo), ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmecon.lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from steer.config import SteerConfig, SteerTrainConfig
    from steer.core.hooks import SteerHandle, attach, steering
    from steer.core.io import load_steer, save_steer
    from steer.core.module import LowRankSteer
    from steer.core.transform import SteerTransform, apply_steer, compose, steered_output_embeddings
    from steer.crossmodel.context_map import ContextMap, fit_context_map
    from steer.crossmodel.embedding_map import EmbeddingMap, fit_embedding_map
    from steer.crossmodel.fidelity import TransferFidelity, transfer_fidelities, transfer_fidelity
    from steer.crossmodel.transfer import transfer
    from steer.errors import (
        BaseModelMismatchError,
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
    from steer.evaluation.harness import evaluate
    from steer.evaluation.result import Evaluation, save_evaluations
    from steer.evaluation.settings import value_grid
    from steer.factors import FactorAnalysis, factor_analysis, factor_scores
    from steer.generation import Generation, decode, generate, generations_frame
    from steer.highlighting import (
        Highlight,
        find_max_subspans,
        highlight,
        highlight_grid,
        highlights_html,
    )
    from steer.train import SteerFit, fit_steer

__all__ = [
    "BaseModelMismatchError",
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
    "SteerTrainConfig",
    "TransferFidelity",
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

_WHERE = {
    "BaseModelMismatchError": "steer.errors",
    "ChecksumError": "steer.errors",
    "ContextMap": "steer.crossmodel.context_map",
    "EmbeddingMap": "steer.crossmodel.embedding_map",
    "Evaluation": "steer.evaluation.result",
    "FactorAnalysis": "steer.factors",
    "FetchError": "steer.errors",
    "Generation": "steer.generation",
    "Highlight": "steer.highlighting",
    "LabelRangeError": "steer.errors",
    "LowRankSteer": "steer.core.module",
    "NoOutputEmbeddingsError": "steer.errors",
    "SteerConfig": "steer.config",
    "SteerDimensionError": "steer.errors",
    "SteerError": "steer.errors",
    "SteerFit": "steer.train",
    "SteerFormatError": "steer.errors",
    "SteerHandle": "steer.core.hooks",
    "SteerInputError": "steer.errors",
    "SteerTransform": "steer.core.transform",
    "SteerValuesError": "steer.errors",
    "SteerWarning": "steer.errors",
    "SteerTrainConfig": "steer.config",
    "TransferFidelity": "steer.crossmodel.fidelity",
    "apply_steer": "steer.core.transform",
    "attach": "steer.core.hooks",
    "compose": "steer.core.transform",
    "decode": "steer.generation",
    "evaluate": "steer.evaluation.harness",
    "factor_analysis": "steer.factors",
    "factor_scores": "steer.factors",
    "find_max_subspans": "steer.highlighting",
    "fit_context_map": "steer.crossmodel.context_map",
    "fit_embedding_map": "steer.crossmodel.embedding_map",
    "fit_steer": "steer.train",
    "generate": "steer.generation",
    "generations_frame": "steer.generation",
    "highlight": "steer.highlighting",
    "highlight_grid": "steer.highlighting",
    "highlights_html": "steer.highlighting",
    "load_steer": "steer.core.io",
    "save_evaluations": "steer.evaluation.result",
    "save_steer": "steer.core.io",
    "steered_output_embeddings": "steer.core.transform",
    "steering": "steer.core.hooks",
    "transfer": "steer.crossmodel.transfer",
    "transfer_fidelities": "steer.crossmodel.fidelity",
    "transfer_fidelity": "steer.crossmodel.fidelity",
    "value_grid": "steer.evaluation.settings",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
