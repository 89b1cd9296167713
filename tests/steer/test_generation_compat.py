"""KV-cache API across transformers releases: ``cache`` (5.24+) and ``past_key_values`` (5.0-5.23).

transformers 5.24 renamed the forward argument and output field ``past_key_values`` to ``cache``
(the old name warns with a FutureWarning and goes away in 5.40). :func:`steer.decode` asks the
model's own signature which name it takes; these tests pin that it uses the current name without
a warning, and that a model with the old API (any transformers 5.0-5.23, or remote code written
for it) decodes to the same tokens.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import transformers
from packaging.version import Version
from torch import nn

from steer import decode, steering
from steer.generation import _cache_kwarg, _returned_cache
from tests.steer import _tiny
from tests.steer.conftest import random_transform
from tests.steer.test_generation import left_padded

RENAMED = Version(transformers.__version__) >= Version("5.24.0")


class OldCacheApi(nn.Module):
    """A causal LM that takes and returns its KV cache as ``past_key_values`` only (5.0's API)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.config = inner.config
        self.generation_config = inner.generation_config
        self.given: list[bool] = []

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
    ) -> SimpleNamespace:
        self.given.append(past_key_values is not None)
        out = self.inner(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **{_cache_kwarg(self.inner): past_key_values},
        )
        return SimpleNamespace(logits=out.logits, past_key_values=_returned_cache(out))


def test_cache_argument_follows_the_installed_transformers(model: Any) -> None:
    assert _cache_kwarg(model) == ("cache" if RENAMED else "past_key_values")
    assert _cache_kwarg(OldCacheApi(model)) == "past_key_values"


def test_returned_cache_reads_either_name() -> None:
    marker = object()
    assert _returned_cache(SimpleNamespace(cache=marker)) is marker
    assert _returned_cache(SimpleNamespace(past_key_values=marker)) is marker
    assert _returned_cache(SimpleNamespace(logits=None)) is None


def test_decoding_raises_no_cache_deprecation(model: Any, tok: Any) -> None:
    """No ``past_key_values`` FutureWarning from prefill, cached steps or sampling."""
    ids, mask = left_padded(tok)
    t = random_transform()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        decode(model, ids, mask, max_new_tokens=5)
        with steering(model, t, [2.0, -1.0]):
            gen = torch.Generator().manual_seed(3)
            decode(model, ids, mask, max_new_tokens=5, do_sample=True, generator=gen)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma3"])
def test_old_cache_api_decodes_the_same_tokens(arch: str, tok: Any) -> None:
    """Greedy and sampled, steered or not: a ``past_key_values``-only model gives equal tokens."""
    model = _tiny.model(arch)
    old = OldCacheApi(model)
    ids, mask = left_padded(tok)
    greedy = decode(old, ids, mask, max_new_tokens=6)
    assert old.given == [False] + [True] * 5
    assert torch.equal(greedy.tokens, decode(model, ids, mask, max_new_tokens=6).tokens)
    t = random_transform()
    with steering(model, t, [3.0, 1.0]):  # the hooks sit on the inner model's modules
        sampled = [
            decode(m, ids, mask, max_new_tokens=6, do_sample=True, top_p=0.9, generator=gens).tokens
            for m in (model, old)
            for gens in [[torch.Generator().manual_seed(s) for s in (1, 2, 3)]]
        ]
    assert torch.equal(sampled[0], sampled[1])
