"""``steer export`` and ``steer import-official`` on a tiny local Llama (tied head)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf
from typer.testing import CliRunner

from steer import load_steer, save_steer, steering
from steer.cli import app
from tests.steer import _tiny
from tests.steer.conftest import random_transform


@pytest.mark.filterwarnings("ignore:export_gguf.*no tokenizer")  # the tiny word-level tokenizer
def test_export_formats_and_import(tmp_path: Path, tok: Any) -> None:
    model = _tiny.model("llama")
    model_dir = tmp_path / "tiny"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    t = dataclasses.replace(random_transform(), base_model=str(model_dir), dummy_slots=(1,))
    save_steer(t, tmp_path / "steer")
    runner = CliRunner()
    for fmt, out in (("baked", "baked"), ("peft", "lora"), ("gguf", "m.gguf"),
                     ("official", "ckpt.pt")):  # fmt: skip
        res = runner.invoke(app, ["export", "--steer", str(tmp_path / "steer"), "--format", fmt,
                                  "--out", str(tmp_path / out), "--value=-2"])  # fmt: skip
        assert res.exit_code == 0, res.output
    enc = tok(["the film was good"], return_tensors="pt")
    with torch.no_grad(), steering(model, t, t.values(-2.0)):
        ref = model(**enc).logits
    baked = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "baked").eval()
    with torch.no_grad():
        got = baked(**enc).logits
    assert float((got - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    assert (tmp_path / "lora" / "adapter_model.safetensors").is_file()
    res = runner.invoke(app, ["import-official", str(tmp_path / "ckpt.pt"), "--out",
                              str(tmp_path / "imported")])  # fmt: skip
    assert res.exit_code == 0, res.output
    back = load_steer(tmp_path / "imported")
    assert torch.equal(back.p1, t.p1) and back.dummy_slots == (1,) and back.epsilon == t.epsilon
    bad = runner.invoke(app, ["export", "--steer", str(tmp_path / "steer"), "--format", "onnx",
                              "--out", str(tmp_path / "x")])  # fmt: skip
    assert bad.exit_code != 0 and "onnx" in bad.output
