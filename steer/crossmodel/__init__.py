"""Transfer of a steer between language models over their shared vocabulary, with fidelity.

Modules: ``vocab`` (the shared vocabulary), ``embedding_map`` (``H``: output embeddings),
``context_map`` (``G``: head inputs, optional), ``transfer`` (eq. 3) and ``fidelity``.
"""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "ContextMap",
    "EmbeddingMap",
    "MarkerStyle",
    "TransferFidelity",
    "canonical_vocabulary",
    "fit_context_map",
    "fit_embedding_map",
    "marker_style",
    "shared_vocabulary",
    "transfer",
    "transfer_fidelities",
    "transfer_fidelity",
]

_WHERE = {
    "transfer": "transfer",
    "fit_embedding_map": "embedding_map",
    "fit_context_map": "context_map",
    "EmbeddingMap": "embedding_map",
    "ContextMap": "context_map",
    "TransferFidelity": "fidelity",
    "transfer_fidelity": "fidelity",
    "transfer_fidelities": "fidelity",
    "MarkerStyle": "vocab",
    "canonical_vocabulary": "vocab",
    "marker_style": "vocab",
    "shared_vocabulary": "vocab",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
