from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from steer import SteerTransform
from tests.steer import _tiny


@pytest.fixture(scope="session")
def tok() -> Any:
    return _tiny.tokenizer()


@pytest.fixture(params=_tiny.ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def model(arch: str) -> Any:
    return _tiny.model(arch)


def random_transform(
    d: int = _tiny.D, k: int = 2, r: int = 8, eps: float = 0.05, seed: int = 0, **kw: Any
) -> SteerTransform:
    g = torch.Generator().manual_seed(seed)
    return SteerTransform(
        torch.randn(k, d, r, generator=g), torch.randn(k, d, r, generator=g), eps, "tiny", **kw
    )


@pytest.fixture
def batch(tok: Any) -> dict[str, torch.Tensor]:
    enc = tok(["the film was good and the", "a movie"], return_tensors="pt", padding=True)
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


RESULT_TYPES = (
    "SteerFit",
    "FactorAnalysis",
    "Highlight",
    "Evaluation",
    "EmbeddingMap",
    "ContextMap",
    "TransferFidelity",
    "ScorerCard",
    "DetoxEvaluation",
)
"""Every result type of steer (checked by tests/steer/test_result_protocol.py)."""


def tiny_result(name: str, tok: Any) -> Any:
    """A small instance of the steer result type ``name``, made with the tiny models."""
    from steer import (
        SteerConfig,
        SteerTrainConfig,
        evaluate,
        factor_analysis,
        fit_context_map,
        fit_embedding_map,
        fit_steer,
        highlight,
        transfer_fidelity,
    )

    model, t = _tiny.model("gpt2"), random_transform(k=2, r=4)
    texts = ["the film was good", "a movie was bad", "the story is nice", "the plot was dull"]
    if name == "SteerFit":
        sc = SteerConfig(num_steers=1, rank=4, epsilon=1e-2)
        tc = SteerTrainConfig(steps=2, batch_size=2, progress=False)
        return fit_steer(model, tok, texts, [1.0, -1.0, 1.0, -1.0], sc, tc)
    if name == "FactorAnalysis":
        return factor_analysis(t, model, tok, k=3, n_tokens=4)
    if name == "Highlight":
        return highlight(model, tok, t, "the film was really good and the end was fine", values=5.0)
    if name == "Evaluation":
        return evaluate(model, tok, t, ["the film was"], [-1, 1], samples=2, new_tokens=3,
                        scorers=("vader",), progress=False)  # fmt: skip
    if name == "EmbeddingMap":
        return fit_embedding_map(model, tok, _tiny.model("llama"), tok, heldout=0.2)
    if name == "ContextMap":
        return fit_context_map(model, tok, _tiny.model("llama"), tok, texts, ridge=1.0)
    if name == "TransferFidelity":
        return transfer_fidelity(t, model, tok, t, model, tok, texts, values=2.0, top_k=5)
    if name == "ScorerCard":
        from steer.evaluation.scorer_card import LabelledSet, scorer_card
        from steer.evaluation.scorers import wordlist_scorer

        sets = [LabelledSet("t", ("a b", "c", "damn it", "fine"), np.array([True, False] * 2))]
        return scorer_card(sets, [wordlist_scorer()])
    if name == "DetoxEvaluation":
        from steer.evaluation.detox import detox_evaluate, lmsteer_methods, unsteered_method
        from steer.evaluation.scorers import wordlist_scorer

        tr = random_transform(eps=0.5, dummy_slots=(1,), slot_names=("toxicity", "dummy"))
        methods = [unsteered_method(), *lmsteer_methods(tr, [-3.0])]
        prompts = {"challenging": ["the film was bad", "a sad"], "neutral": ["the day"]}
        return detox_evaluate(model, tok, prompts, methods, samples=2, new_tokens=3,
                              scorers=[wordlist_scorer()], n_boot=50)  # fmt: skip
    raise KeyError(name)
