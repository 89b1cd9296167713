"""The hook on the output embeddings, on tiny random-init models of six architectures.

Tolerances: steered logits are compared with a float64 naive computation of the formula; the
models run in float32 with O(10) logits, so 1e-4 absolute is float32 round-off, not slack.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import transformers as tf

from steer import (
    NoOutputEmbeddingsError,
    SteerDimensionError,
    SteerValuesError,
    attach,
    steered_output_embeddings,
    steering,
)
from steer.core.hooks import head_inputs
from tests.steer import _tiny
from tests.steer.conftest import random_transform

ATOL = 1e-4


def logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def naive_logits(
    model: Any, batch: dict[str, torch.Tensor], t: Any, s: list[float]
) -> torch.Tensor:
    """(h + eps sum_i s_i (h P1_i) P2_i^T) E^T (+ bias, + soft-capping), h from hidden_states."""
    with torch.no_grad():
        h = model(**batch, output_hidden_states=True).hidden_states[-1].double()
    hp = h.clone()
    for i, si in enumerate(s):
        hp = hp + t.epsilon * si * (h @ t.p1[i].double()) @ t.p2[i].double().T
    head = model.get_output_embeddings()
    z = hp @ head.weight.double().T
    if head.bias is not None:
        z = z + head.bias.double()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        z = torch.tanh(z / cap) * cap
    return z


def test_zero_values_bit_exact(model: Any, batch: dict[str, torch.Tensor]) -> None:
    base = logits(model, batch)
    t = random_transform()
    with steering(model, t, [0.0, 0.0]) as handle:
        assert not handle.attached
        assert torch.equal(logits(model, batch), base)
    with steering(model, t, [[0.0, 0.0], [0.0, 0.0]]):
        assert torch.equal(logits(model, batch), base)
    # a row with zero values inside a steered batch is also exactly the base row
    with steering(model, t, [[0.0, 0.0], [3.0, 1.0]]):
        z = logits(model, batch)
    assert torch.equal(z[0], base[0]) and not torch.equal(z[1], base[1])


def test_context_manager_and_remove_restore_bit_exact(
    model: Any, batch: dict[str, torch.Tensor]
) -> None:
    base = logits(model, batch)
    t = random_transform()
    with steering(model, t, [2.0, 1.0]):
        steered = logits(model, batch)
    assert not torch.equal(steered, base)
    assert torch.equal(logits(model, batch), base)
    handle = attach(model, t, [2.0, 1.0])
    assert handle.attached and torch.equal(logits(model, batch), steered)
    handle.remove()
    handle.remove()  # idempotent
    assert torch.equal(logits(model, batch), base)
    with pytest.raises(RuntimeError), steering(model, t, [2.0, 1.0]):
        raise RuntimeError("boom")
    assert torch.equal(logits(model, batch), base)


def test_hook_equals_naive_formula(model: Any, batch: dict[str, torch.Tensor]) -> None:
    t = random_transform()
    for s in ([1.5, 0.0], [-2.0, 1.0], [0.3, -0.7]):
        with steering(model, t, s):
            got = logits(model, batch)
        torch.testing.assert_close(
            got.double(), naive_logits(model, batch, t, s), atol=ATOL, rtol=0
        )


def test_low_rank_plan_equals_naive(model: Any, batch: dict[str, torch.Tensor]) -> None:
    """r large relative to d selects the dense plan; r small the low-rank plan: both exact."""
    t = random_transform(r=2)
    with steering(model, t, [1.0, -1.0]):
        got = logits(model, batch)
    want = naive_logits(model, batch, t, [1.0, -1.0])
    torch.testing.assert_close(got.double(), want, atol=ATOL, rtol=0)
    with steering(model, t, [[1.0, -1.0], [1.0, -1.0]]):
        got_rows = logits(model, batch)
    torch.testing.assert_close(got_rows.double(), want, atol=ATOL, rtol=0)


def test_per_row_values_equal_separate_runs(model: Any, batch: dict[str, torch.Tensor]) -> None:
    t = random_transform()
    rows = [[2.0, 1.0], [-3.0, 1.0]]
    with steering(model, t, rows):
        both = logits(model, batch)
    for i, r in enumerate(rows):
        with steering(model, t, r):
            one = logits(model, batch)
        torch.testing.assert_close(both[i], one[i], atol=ATOL, rtol=0)


def test_steering_h_equals_transforming_every_embedding(
    model: Any, batch: dict[str, torch.Tensor]
) -> None:
    """Tied or not: steering h gives the logits of e'_v = (I + eps W) e_v; inputs unsteered."""
    t = random_transform()
    s = [1.0, -0.5]
    with torch.no_grad():
        h = head_inputs(model, batch["input_ids"], batch["attention_mask"]).double()
    head = model.get_output_embeddings()
    e_prime = steered_output_embeddings(head.weight.double(), t.to(dtype=torch.float64), s)
    z = h @ e_prime.T
    if head.bias is not None:
        z = z + head.bias.double()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        z = torch.tanh(z / cap) * cap
    emb_in = model.get_input_embeddings()(batch["input_ids"]).clone()
    with steering(model, t, s):
        got = logits(model, batch)
        assert torch.equal(model.get_input_embeddings()(batch["input_ids"]), emb_in)
    torch.testing.assert_close(got.double(), z, atol=ATOL, rtol=0)


def test_tied_flags_match_architectures() -> None:
    tied = {}
    for arch in _tiny.ARCHS:
        m = _tiny.model(arch)
        tied[arch] = m.get_output_embeddings().weight is m.get_input_embeddings().weight
    assert tied["llama"] and tied["gpt2"] and not tied["gpt_neox"] and not tied["qwen2"]


def test_model_is_not_mutated(model: Any, batch: dict[str, torch.Tensor]) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [type(m) for m in model.modules()]
    head = model.get_output_embeddings()
    n_hooks = len(head._forward_pre_hooks)
    with steering(model, random_transform(), [1.0, 1.0]):
        model(**batch)
    after = model.state_dict()
    assert all(
        torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before
    )
    assert [type(m) for m in model.modules()] == modules
    assert len(head._forward_pre_hooks) == n_hooks
    assert not model.training


def test_values_length_must_match_slots(model: Any) -> None:
    t = random_transform(k=2)
    with pytest.raises(SteerValuesError, match="2 slot"):
        attach(model, t, [1.0])
    with pytest.raises(SteerValuesError):
        attach(model, t, [1.0, 2.0, 3.0])


def test_per_row_values_must_match_batch(model: Any, batch: dict[str, torch.Tensor]) -> None:
    with steering(model, random_transform(), [[1.0, 1.0]] * 3), pytest.raises(SteerValuesError):
        logits(model, batch)
    assert torch.isfinite(logits(model, batch)).all()


def test_steer_for_another_dimension(model: Any) -> None:
    with pytest.raises(SteerDimensionError, match="hidden size 48"):
        attach(model, random_transform(d=48), [1.0, 1.0])


def test_model_without_output_embeddings() -> None:
    backbone = tf.AutoModel.from_config(_tiny.config("llama"))
    with pytest.raises(NoOutputEmbeddingsError, match="AutoModelForCausalLM"):
        attach(backbone, random_transform(), [1.0, 1.0])
    with pytest.raises(NoOutputEmbeddingsError):
        attach(torch.nn.Linear(3, 3), random_transform(), [1.0, 1.0])


def test_half_precision_model() -> None:
    """The hook casts the steer to the model's dtype and leaves the model's dtype alone."""
    m = tf.AutoModelForCausalLM.from_config(_tiny.config("llama")).to(torch.bfloat16).eval()
    ids = torch.tensor([[4, 5, 6, 7]])
    with torch.no_grad():
        base = m(ids).logits
        with steering(m, random_transform(), [1.0, 1.0]):
            z = m(ids).logits
        assert torch.equal(m(ids).logits, base)
    assert z.dtype == base.dtype and m.dtype == torch.bfloat16 and torch.isfinite(z).all()
