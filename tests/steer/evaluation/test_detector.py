"""The steer as a detector: the log-prob shift equals the hooked model's own log-probabilities.

Oracle: the full model run twice under ``steer.steering`` (the hook path, itself tested against
transformed output embeddings on six architectures in tests/steer/test_hooks.py); the detector
computes the same quantity from one cached forward pass and the head applied twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from steer import steering
from steer.errors import SteerInputError
from steer.evaluation.detector import logprob_shift, steer_detector
from tests.steer import _tiny
from tests.steer.conftest import random_transform

TEXTS = ["the film was good and the music", "a bad dull story", "it is", "the"]


def _oracle(model: Any, tok: Any, t: Any, texts: list[str], v: float, base: float) -> np.ndarray:
    out = []
    for text in texts:
        ids = torch.tensor([tok(text)["input_ids"]])
        if ids.shape[1] < 2:
            out.append(0.0)
            continue
        lps = []
        for val in (v, base):
            with torch.no_grad(), steering(model, t, t.values(val)):
                logits = model(input_ids=ids).logits[0, :-1].double()
            lps.append(torch.log_softmax(logits, -1).gather(-1, ids[0, 1:, None]).squeeze(-1))
        out.append(float((lps[0] - lps[1]).sum()))
    return np.array(out)


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])  # tied and untied heads
def test_shift_equals_hooked_logprobs(arch: str, tok: Any) -> None:
    model = _tiny.model(arch)
    t = random_transform(eps=0.05, dummy_slots=(1,), slot_names=("toxicity", "dummy"))
    got = logprob_shift(model, tok, t, TEXTS, value=2.0, batch_size=3)
    want = _oracle(model, tok, t, TEXTS, 2.0, 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert got[-1] == 0.0  # one token: nothing to score
    neg = logprob_shift(model, tok, t, TEXTS, value=2.0, baseline="negated")
    np.testing.assert_allclose(neg, _oracle(model, tok, t, TEXTS, 2.0, -2.0), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    mean = logprob_shift(model, tok, t, TEXTS[:3], value=2.0, reduce="mean")
    n_scored = np.array([len(tok(x)["input_ids"]) - 1 for x in TEXTS[:3]])
    np.testing.assert_allclose(mean, want[:3] / n_scored, rtol=1e-4, atol=1e-6)


def test_detector_scorer_and_errors(tok: Any) -> None:
    model = _tiny.model("llama")
    t = random_transform(eps=0.05, dummy_slots=(1,))
    sc = steer_detector(model, tok, t, value=1.0, reduce="sum")
    np.testing.assert_allclose(sc(TEXTS), logprob_shift(model, tok, t, TEXTS, value=1.0))
    assert sc.kind == "offensive" and sc.threshold == 0.0
    assert np.all(logprob_shift(model, tok, t, TEXTS, value=0.0) == 0.0)
    with pytest.raises(SteerInputError, match="list of texts"):
        logprob_shift(model, tok, t, "one text")  # type: ignore[arg-type]
    with pytest.raises(SteerInputError, match="reduce"):
        logprob_shift(model, tok, t, TEXTS, reduce="max")  # type: ignore[arg-type]
