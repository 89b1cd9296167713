"""Offline metrics: distinct-n, perplexity on generated tokens, the sweep table."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from steer import generate
from steer.evaluate import conditional_perplexity, distinct_n, sweep_table, vader_compound
from tests.steer import _tiny


def test_distinct_n() -> None:
    assert distinct_n("bad bad bad bad", 2) == pytest.approx(1 / 3)
    assert distinct_n("a b c", 1) == 1.0
    assert math.isnan(distinct_n("one", 2))


def test_vader_compound_signs() -> None:
    s = vader_compound(["What a wonderful, lovely day!", "This is terrible and awful.", ""])
    assert s[0] > 0.5 and s[1] < -0.5 and s[2] == 0.0


def test_conditional_perplexity_matches_direct_computation(tok: Any) -> None:
    model = _tiny.model("gpt_neox")
    gens = generate(model, tok, ["the film was", "a"], max_new_tokens=4, min_new_tokens=4)
    got = conditional_perplexity(model, tok, gens, batch_size=1)
    for g, ppl in zip(gens, got, strict=True):
        p = tok(g.prompt)["input_ids"]
        ids = torch.tensor([p + list(g.token_ids)])
        with torch.no_grad():
            z = model(ids).logits[0]
        nll = F.cross_entropy(z[len(p) - 1 : -1], ids[0, len(p) :])
        assert ppl == pytest.approx(math.exp(float(nll)), rel=1e-5)


def test_sweep_table() -> None:
    frame = pd.DataFrame(
        {
            "value": [-1.0, -1.0, 1.0, 1.0],
            "epsilon": [-1e-3, -1e-3, 1e-3, 1e-3],
            "vader": [-0.5, 0.1, 0.4, 0.8],
            "dist_2": [1.0, 0.5, 1.0, 1.0],
        }  # fmt: skip
    )
    t = sweep_table(frame)
    assert t["vader_mean"].tolist() == pytest.approx([-0.2, 0.6])
    assert t["positive_share"].tolist() == [0.5, 1.0] and t["negative_share"].tolist() == [0.5, 0.0]
    assert t["vader_se"].iloc[0] == pytest.approx(np.std([-0.5, 0.1], ddof=1) / np.sqrt(2))
