"""Generation with the KV cache: equal to transformers' greedy generate and to a no-cache loop."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from steer import SteerInputError, decode, generate, generations_frame, steering
from steer.train import pad_batch
from tests.steer import _tiny
from tests.steer.conftest import random_transform

PROMPTS = ["the film was", "a movie is so good and", "it"]


def left_padded(tok: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return pad_batch([tok(p)["input_ids"] for p in PROMPTS], pad=0, side="left")


def test_greedy_decode_equals_transformers_generate(model: Any, tok: Any) -> None:
    ids, mask = left_padded(tok)
    ref = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=8,
        do_sample=False,
        pad_token_id=0,
        eos_token_id=None,
    )[:, ids.shape[1] :]
    out = decode(model, ids, mask, max_new_tokens=8)
    assert torch.equal(out.tokens, ref)
    assert out.forward_calls == 8 and out.lengths.tolist() == [8, 8, 8]


def test_steered_kv_cache_equals_full_recompute(model: Any, tok: Any) -> None:
    """With a steer attached, cached decoding equals recomputing the whole prefix each step."""
    t = random_transform()
    ids = torch.tensor([tok("the film was")["input_ids"]])
    with steering(model, t, [3.0, 1.0]):
        out = decode(model, ids, torch.ones_like(ids), max_new_tokens=6).tokens[0].tolist()
        seq = ids[0].tolist()
        for _ in range(6):
            with torch.no_grad():
                nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            seq.append(nxt)
    assert out == seq[ids.shape[1] :]


def test_zero_values_generate_the_unsteered_text(model: Any, tok: Any) -> None:
    t = random_transform()
    base = generate(model, tok, PROMPTS, max_new_tokens=6)
    zero = generate(model, tok, PROMPTS, transform=t, values=[0.0, 0.0], max_new_tokens=6)
    assert [g.token_ids for g in base] == [g.token_ids for g in zero]
    assert zero[0].values == (0.0, 0.0) and base[0].values is None


def test_per_prompt_values_equal_separate_calls(tok: Any) -> None:
    model = _tiny.model("llama")
    t = random_transform()
    rows = [[4.0, 1.0], [-4.0, 1.0], [0.0, 0.0]]
    together = generate(model, tok, PROMPTS, transform=t, values=rows, max_new_tokens=6)
    for i, p in enumerate(PROMPTS):
        alone = generate(model, tok, [p], transform=t, values=rows[i], max_new_tokens=6)
        assert alone[0].token_ids == together[i].token_ids
    assert len({g.token_ids for g in together}) > 1


def test_continuations_are_sliced_on_tokens(tok: Any) -> None:
    model = _tiny.model("qwen2")
    gens = generate(model, tok, PROMPTS, max_new_tokens=5, min_new_tokens=5)
    ids, mask = left_padded(tok)
    ref = decode(model, ids, mask, max_new_tokens=5, min_new_tokens=5, eos_token_ids=[3])
    for g, row in zip(gens, ref.tokens.tolist(), strict=True):
        assert list(g.token_ids) == row and len(g.token_ids) == 5
        assert g.text == tok.decode(row, skip_special_tokens=True)
    frame = generations_frame(gens)
    assert list(frame.columns) == ["prompt", "sample", "values", "continuation", "n_tokens"]


def test_eos_stops_a_row_and_min_new_tokens_bans_it(tok: Any) -> None:
    model = _tiny.model("gpt2")
    ids, mask = left_padded(tok)
    first = decode(model, ids, mask, max_new_tokens=1).tokens[:, 0]
    stop = [int(first[0])]  # make the first greedy token of row 0 an EOS
    out = decode(model, ids, mask, max_new_tokens=5, eos_token_ids=stop, pad_token_id=0)
    assert out.lengths[0] == 1 and out.tokens[0, 1:].eq(0).all()
    forced = decode(model, ids, mask, max_new_tokens=5, min_new_tokens=5, eos_token_ids=stop)
    assert forced.lengths.tolist() == [5, 5, 5] and stop[0] not in forced.tokens[0].tolist()


def test_sampling_is_seeded(tok: Any) -> None:
    model = _tiny.model("gemma3")
    kw: dict[str, Any] = {"max_new_tokens": 8, "do_sample": True, "top_p": 0.9, "num_samples": 3}
    a = generate(model, tok, PROMPTS[:1], seed=1, **kw)
    b = generate(model, tok, PROMPTS[:1], seed=1, **kw)
    c = generate(model, tok, PROMPTS[:1], seed=2, **kw)
    assert [g.token_ids for g in a] == [g.token_ids for g in b] != [g.token_ids for g in c]
    assert [g.sample for g in a] == [0, 1, 2]


def test_generation_input_errors(tok: Any) -> None:
    model = _tiny.model("llama")
    t = random_transform()
    with pytest.raises(SteerInputError, match="values"):
        generate(model, tok, PROMPTS, transform=t)
    with pytest.raises(SteerInputError, match="rows"):
        generate(model, tok, PROMPTS, transform=t, values=[[1.0, 1.0]] * 2)
    with pytest.raises(SteerInputError, match="without a transform"):
        generate(model, tok, PROMPTS, values=[1.0, 1.0])
    with pytest.raises(SteerInputError, match="top_p"):
        generate(model, tok, PROMPTS, do_sample=True, top_p=0.0)
