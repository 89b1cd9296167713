from __future__ import annotations

from typing import Any

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
