"""Exported steers reproduce the hooked steer's logits (1e-5 relative, float32).

Oracles: the hooked steer (:func:`steer.steering`) and, for the official layout, a line-by-line
re-statement of the reference repository's forward pass (``Projected_Adaptor.forward``,
github.com/Glaciohound/LM-Steer ``lm_steer/models/steers.py`` at commit b484934) applied to the
hidden states; the artefacts are read back by their own readers (``peft.PeftModel``,
``AutoModelForCausalLM.from_pretrained`` with and without ``gguf_file``, ``torch.load``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf

from steer import BaseModelMismatchError, SteerTransform, steering
from steer.core.compat import FINGERPRINT_KEY, base_fingerprint
from steer.core.hooks import head_inputs
from steer.export import (
    ExportFormatError,
    UnsupportedExportError,
    bake,
    export_baked,
    export_gguf,
    export_peft,
    load_official,
    save_official,
    set_peft_strength,
)
from tests.steer import _tiny
from tests.steer.conftest import random_transform

RTOL = 1e-5


def _close(got: torch.Tensor, ref: torch.Tensor, rtol: float = RTOL) -> None:
    """Max absolute difference within ``rtol`` of the largest reference logit."""
    err = float((got - ref).abs().max())
    scale = float(ref.abs().max())
    assert err <= rtol * scale, f"max |diff| {err:.3g} > {rtol:g} x {scale:.3g}"


def _hooked(model: Any, t: SteerTransform, values: Any, batch: dict[str, torch.Tensor]) -> Any:
    with torch.no_grad(), steering(model, t, values):
        return model(**batch).logits


def _snapshot(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _dummy_transform(r: int) -> SteerTransform:
    t = random_transform(k=2, r=r, seed=3)
    return dataclasses.replace(t, slot_names=("detox", "dummy"), dummy_slots=(1,))


@pytest.mark.parametrize("r", [4, 24])  # k r = 8 <= d (low-rank LoRA) and 48 > d (rank-d form)
def test_baked_and_peft_reproduce_the_hook(
    model: Any, arch: str, r: int, batch: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    from peft import PeftModel

    t = _dummy_transform(r)
    before = _snapshot(model)
    ref = _hooked(model, t, t.values(-3.0), batch)
    with torch.no_grad():
        base = model(**batch).logits
    assert float((ref - base).abs().max()) > 0.1  # the steer does change the logits

    export_baked(model, t, tmp_path / "baked", -3.0)
    baked = tf.AutoModelForCausalLM.from_pretrained(tmp_path / "baked").eval()
    with torch.no_grad():
        _close(baked(**batch).logits, ref)
    assert baked.config.tie_word_embeddings is False
    assert torch.equal(baked.get_input_embeddings().weight, model.get_input_embeddings().weight)

    export_peft(model, t, tmp_path / "lora", -3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT's note on tied heads (see steer.export.peft)
        steered = PeftModel.from_pretrained(copy.deepcopy(model), tmp_path / "lora").eval()
    with torch.no_grad():
        _close(steered(**batch).logits, ref)
        # continuous strength: factor c steers with c * (values): here (-3, 1) -> (1.5, -0.5)
        assert set_peft_strength(steered, -0.5) == 1
        _close(steered(**batch).logits, _hooked(model, t, [1.5, -0.5], batch))
        set_peft_strength(steered, 0.0)
        _close(steered(**batch).logits, base)
    emb = steered.get_input_embeddings().weight
    assert torch.equal(emb, model.get_input_embeddings().weight)
    # the caller's model is untouched by every exporter
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bake_keeps_input_embeddings_of_a_tied_model(batch: dict[str, torch.Tensor]) -> None:
    model = _tiny.model("llama")
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    t = random_transform()
    baked: Any = bake(model, t, 2.0)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert baked.get_output_embeddings().weight is not baked.get_input_embeddings().weight
    assert torch.equal(baked.get_input_embeddings().weight, model.get_input_embeddings().weight)
    with torch.no_grad():
        _close(baked(**batch).logits, _hooked(model, t, t.values(2.0), batch))
    # the baked head is the paper's e'_v = (I + eps W) e_v (steered_output_embeddings)
    from steer import steered_output_embeddings

    e = model.get_output_embeddings().weight.detach().double()
    want = steered_output_embeddings(e, t.to(dtype=torch.float64), t.values(2.0))
    torch.testing.assert_close(baked.get_output_embeddings().weight.double(), want, rtol=1e-6,
                               atol=1e-6)  # fmt: skip


@pytest.mark.parametrize("arch_name", ["llama", "qwen2"])
def test_gguf_reads_back_with_transformers(
    arch_name: str, batch: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    model = _tiny.model(arch_name)
    t = _dummy_transform(4)
    ref = _hooked(model, t, t.values(4.0), batch)
    export_gguf(model, t, tmp_path / "m.gguf", 4.0)
    back = tf.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").eval()
    assert back.config.tie_word_embeddings is False
    with torch.no_grad():
        _close(back(**batch).logits, ref)
    export_gguf(model, t, tmp_path / "h.gguf", 4.0, dtype="f16")
    half = tf.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="h.gguf").eval()
    with torch.no_grad():
        _close(half(**batch).logits, ref, rtol=5e-3)  # float16 weights
    assert (tmp_path / "m.gguf.steer_export.json").is_file()


def test_gguf_warns_without_a_bpe_tokenizer(tmp_path: Path, tok: Any) -> None:
    from steer import SteerWarning

    with pytest.warns(SteerWarning, match="no tokenizer"):
        export_gguf(_tiny.model("llama"), random_transform(), tmp_path / "m.gguf", tokenizer=tok)


def test_gguf_refuses_other_architectures(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedExportError, match="convert_hf_to_gguf"):
        export_gguf(_tiny.model("gpt2"), random_transform(), tmp_path / "m.gguf", 1.0)
    with pytest.raises(UnsupportedExportError, match="dtype"):
        export_gguf(_tiny.model("llama"), random_transform(), tmp_path / "m.gguf", dtype="q4")
    assert not (tmp_path / "m.gguf").exists()


def test_exports_refuse_another_base_model(tmp_path: Path) -> None:
    gpt2, llama = _tiny.model("gpt2"), _tiny.model("llama", seed=1)  # seed 0: same embeddings
    t = dataclasses.replace(
        random_transform(), provenance={FINGERPRINT_KEY: base_fingerprint(gpt2)}
    )
    for fn in (export_peft, export_baked, export_gguf):
        with pytest.raises(BaseModelMismatchError, match="allow_other_model"):
            fn(llama, t, tmp_path / "x", 1.0)
    export_baked(llama, t, tmp_path / "ok", 1.0, allow_other_model=True)
    export_peft(gpt2, t, tmp_path / "lora", 1.0)  # its own base model: accepted


def test_zero_values_and_bad_values(tmp_path: Path) -> None:
    t = random_transform()
    with pytest.raises(UnsupportedExportError, match="zero"):
        export_peft(_tiny.model("llama"), t, tmp_path / "lora", [0.0, 0.0])
    with pytest.raises(ValueError, match="one fixed value per slot"):
        export_baked(_tiny.model("llama"), t, tmp_path / "b", [[1.0, 1.0], [2.0, 2.0]])


def _official_forward(state: torch.Tensor, p1: Any, p2: Any, eps: float, sv: Any, w: Any) -> Any:
    """``Projected_Adaptor.forward`` (adaptor_class 'multiply') of the reference repository."""
    delta = state[:, None].matmul(p1[None]) * sv[:, :, None, None]
    delta = delta.matmul(p2.transpose(1, 2)[None]).sum(1)
    return (state + eps * delta).matmul(w.transpose(0, 1))


def test_official_checkpoint_as_train_py_writes_it(
    tmp_path: Path, batch: dict[str, torch.Tensor]
) -> None:
    model = _tiny.model("gpt2")
    g = torch.Generator().manual_seed(7)
    p1 = torch.nn.Parameter(torch.randn(2, _tiny.D, 6, generator=g))
    p2 = torch.nn.Parameter(torch.randn(2, _tiny.D, 6, generator=g))
    args = argparse.Namespace(model_name="gpt2", adaptor_class="multiply", rank=6, num_steers=2,
                              adapted_component="final_layer", epsilon=1e-2, dummy_steer=1,
                              training_steer=0)  # fmt: skip
    ckpt = tmp_path / "checkpoint.pt"
    torch.save([args, {"projector1": p1, "projector2": p2}, 500], ckpt)  # train.py's layout
    t = load_official(ckpt)
    assert (t.base_model, t.epsilon, t.dummy_slots, t.rank) == ("gpt2", 1e-2, (1,), 6)
    assert t.provenance["steps"] == 500
    sv = torch.tensor([[-4.0, 1.0]] * 2)
    with torch.no_grad():
        h = head_inputs(model, batch["input_ids"], batch["attention_mask"])
        want = _official_forward(h, p1, p2, 1e-2, sv, model.lm_head.weight)
    _close(_hooked(model, t, t.values(-4.0), batch), want)

    again = tmp_path / "again.pt"
    save_official(t, again)
    raw = torch.load(again, weights_only=True)  # the official loader under torch >= 2.6
    assert raw[0]["num_steers"] == 2 and raw[0]["dummy_steer"] == 1 and raw[2] == 500
    back = load_official(again)
    assert torch.equal(back.p1, t.p1) and torch.equal(back.p2, t.p2)
    assert (back.epsilon, back.dummy_slots, back.base_model) == (t.epsilon, (1,), "gpt2")
    bound = load_official(ckpt, model=model)
    assert FINGERPRINT_KEY in bound.provenance


_CALLS: list[str] = []


def _side_effect(arg: str) -> str:
    _CALLS.append(arg)
    return arg


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_side_effect, ("ran",))


def test_official_loading_never_unpickles_code(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pt"
    torch.save([_Evil(), {"projector1": torch.zeros(1, 4, 2), "projector2": torch.zeros(1, 4, 2)},
                1], bad)  # fmt: skip
    with pytest.raises(ExportFormatError, match="safe loading"):
        load_official(bad)
    assert _CALLS == []
    other = tmp_path / "add.pt"
    torch.save([{"adaptor_class": "add"}, {"add_vec": torch.zeros(1, 4)}, 1], other)
    with pytest.raises(ExportFormatError, match="multiply"):
        load_official(other)
    shapes = tmp_path / "shapes.pt"
    torch.save({"projector1": torch.zeros(2, 4, 2), "projector2": torch.zeros(2, 4, 3)}, shapes)
    with pytest.raises(ExportFormatError, match="shapes differ"):
        load_official(shapes, base_model="x")
    with pytest.raises(ExportFormatError, match="does not exist"):
        load_official(tmp_path / "missing.pt")


def test_composed_steers_and_fit_provenance(batch: dict[str, torch.Tensor], tmp_path: Path) -> None:
    from steer import compose

    model = _tiny.model("gpt_neox")  # untied head named embed_out
    a = random_transform(k=1, r=3, eps=0.05, seed=1, slot_names=("a",))
    b = random_transform(k=1, r=5, eps=0.02, seed=2, slot_names=("b",))
    both = compose(a, b)  # per-steer strengths live in the rescaled P2 of b
    ref = _hooked(model, both, [2.0, -3.0], batch)
    baked: Any = bake(model, both, [2.0, -3.0])
    with torch.no_grad():
        _close(baked(**batch).logits, ref)
    prov = {
        "train_config": {"steps": 40, "lr": 0.01, "seed": 3},
        "steer_config": {"init_var": 0.02},
    }
    t = dataclasses.replace(a, provenance=prov)
    raw = torch.load(save_official(t, tmp_path / "a.pt"), weights_only=True)
    assert raw[2] == 40 and raw[0]["n_steps"] == 40 and raw[0]["init_var"] == 0.02
    assert raw[0]["lr"] == 0.01 and raw[0]["seed"] == 3
