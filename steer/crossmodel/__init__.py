"""Transfer of a steer between language models over their shared vocabulary, with fidelity."""

from __future__ import annotations

from lmecon.lazy import lazy_exports

__all__ = [
    "ContextMap",
    "EmbeddingMap",
    "fit_context_map",
    "fit_embedding_map",
    "transfer",
    "transfer_fidelities",
    "transfer_fidelity",
]

_WHERE = {
    "transfer": "transfer",
    "fit_embedding_map": "transfer",
    "fit_context_map": "transfer",
    "EmbeddingMap": "transfer",
    "ContextMap": "transfer",
    "transfer_fidelity": "transfer",
    "transfer_fidelities": "transfer",
}

__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
