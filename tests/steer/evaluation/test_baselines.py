"""Baselines of the detox harness: mean-difference activation addition and prompting.

Oracles: the model's own ``output_hidden_states`` (the residual stream after each decoder
layer) for the mean difference, and a second forward hook that observes the layer output for
the addition.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from steer.errors import SteerInputError
from steer.evaluation.baselines import (
    DEFAULT_INSTRUCTION,
    activation_addition,
    chat_prompt,
    decoder_layers,
    instruction_prompt,
    mean_difference_vector,
)
from tests.steer import _tiny

POS = ["good great love", "happy nice day", "the film was wonderful"]
NEG = ["bad awful hate", "the sad poor plot"]


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox", "llama", "qwen2"])
def test_mean_difference_equals_hidden_states(arch: str, tok: Any) -> None:
    model = _tiny.model(arch)
    assert len(decoder_layers(model)) == 2
    vec = mean_difference_vector(model, tok, POS, NEG, layer=0, batch_size=2)

    def token_mean(texts: list[str]) -> torch.Tensor:
        rows = []
        for t in texts:
            ids = torch.tensor([tok(t)["input_ids"]])
            with torch.no_grad():
                hs = model(input_ids=ids, output_hidden_states=True).hidden_states
            rows.append(hs[1][0])  # output of decoder layer 0, every token
        return torch.cat(rows).mean(0)

    want = token_mean(POS) - token_mean(NEG)
    torch.testing.assert_close(vec.vector, want, rtol=1e-4, atol=1e-5)
    assert vec.layer == 0 and vec.n_positive == 3 and vec.n_negative == 2
    assert mean_difference_vector(model, tok, POS, NEG, layer=-1).layer == 1


def test_activation_addition_adds_and_restores(tok: Any) -> None:
    model = _tiny.model("llama")
    vec = mean_difference_vector(model, tok, POS, NEG, layer=0)
    ids = torch.tensor([tok("the film was good")["input_ids"]])
    seen: list[torch.Tensor] = []
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with activation_addition(model, vec, 0.0):  # strength 0: nothing attached
            assert torch.equal(model(input_ids=ids).logits, before)
        plain_out = []
        h0 = decoder_layers(model)[0].register_forward_hook(
            lambda m, a, o: plain_out.append((o[0] if isinstance(o, tuple) else o).clone())
        )
        model(input_ids=ids)
        h0.remove()
        with activation_addition(model, vec, 2.5):
            h = decoder_layers(model)[0].register_forward_hook(
                lambda m, a, o: seen.append((o[0] if isinstance(o, tuple) else o).clone())
            )
            steered = model(input_ids=ids).logits
            h.remove()
        after = model(input_ids=ids).logits
    torch.testing.assert_close(seen[0], plain_out[0] + 2.5 * vec.vector)
    assert not torch.allclose(steered, before)
    assert torch.equal(after, before)  # the hook is gone
    with pytest.raises(SteerInputError, match="finite"):
        with activation_addition(model, vec, float("nan")):
            pass
    with pytest.raises(SteerInputError, match="out of range"):
        mean_difference_vector(model, tok, POS, NEG, layer=5)


def test_prompts_in_the_chat_template(tok: Any) -> None:
    with pytest.raises(SteerInputError, match="chat template"):
        instruction_prompt(tok, "the film")
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    try:
        got = instruction_prompt(tok, "the film was")
        assert got == (f"<system>{DEFAULT_INSTRUCTION}</><user>Continue this text.</>"
                       "<assistant>the film was")  # fmt: skip
        assert chat_prompt(tok, "x") == "<user>Continue this text.</><assistant>x"
    finally:
        tok.chat_template = None
