"""Scoring builds no KV cache: one full pass per batch, scores bit-identical to a cached forward.

(The full-logits path is bit-identical; the fused default agrees to float32 rounding.)

transformers 5.24 renamed the KV cache ``past_key_values`` -> ``cache``; scoring never feeds a
cache back, so it asks for none (``use_cache=False``) and depends on neither name.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from causalmem.instances import Instances  # noqa: E402
from causalmem.scoring.checkpoints import load_causal_lm  # noqa: E402
from causalmem.scoring.metrics import METRICS, sequence_scores  # noqa: E402
from causalmem.scoring.runner import score_instances  # noqa: E402
from tests.causalmem.builders import SEQ, VOCAB, make_checkpoints  # noqa: E402


def _ragged() -> Instances:
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, VOCAB, n) for n in (SEQ, 5, SEQ, 9, 3, SEQ, 7)]
    return Instances.from_arrays(seqs, list(range(7)), [5, None, 10, None, 5, 10, None])


@pytest.mark.parametrize("ragged", [False, True])
def test_scoring_asks_for_no_cache_and_matches_a_cached_forward(
    tmp_path: Path, ragged: bool
) -> None:
    model = load_causal_lm(make_checkpoints(tmp_path, steps=(5,))[0])
    ins = _ragged() if ragged else Instances.from_arrays(
        np.random.default_rng(2).integers(0, VOCAB, (6, SEQ)), list(range(6)), [5] * 3 + [None] * 3
    )  # fmt: skip
    seen: list[dict[str, Any]] = []
    handle = model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(dict(kw)), with_kwargs=True
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            got, _ = score_instances(model, ins, batch_size=4, method="logits")
    finally:
        handle.remove()
    assert seen and all(kw["use_cache"] is False for kw in seen)
    ids = torch.tensor(ins.tokens)
    mask = None
    if ragged:
        mask = torch.tensor((np.arange(ins.seq_len)[None] < ins.lengths[:, None]).astype(np.int64))
    with torch.inference_mode():  # the default forward, which builds (and drops) a KV cache
        out = model(input_ids=ids[:4], attention_mask=None if mask is None else mask[:4])
        rest = model(input_ids=ids[4:], attention_mask=None if mask is None else mask[4:])
    assert (out.cache if hasattr(out, "cache") else out.past_key_values) is not None
    for part, sl in ((out, slice(0, 4)), (rest, slice(4, None))):
        ref = sequence_scores(part.logits, ids[sl], None if mask is None else mask[sl]).as_dict()
        for name in METRICS:
            np.testing.assert_array_equal(got[name][sl], ref[name].numpy())


def test_the_fused_path_asks_for_no_cache_either(tmp_path: Path) -> None:
    model = load_causal_lm(make_checkpoints(tmp_path, steps=(5,))[0])
    seen: list[dict[str, Any]] = []
    handle = model.gpt_neox.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(dict(kw)), with_kwargs=True
    )
    try:
        got, _ = score_instances(model, _ragged(), batch_size=4, method="fused")
    finally:
        handle.remove()
    assert seen and all(kw["use_cache"] is False for kw in seen)
    old, _ = score_instances(model, _ragged(), batch_size=4, method="logits")
    for name in METRICS:
        np.testing.assert_allclose(got[name], old[name], rtol=1e-5)
