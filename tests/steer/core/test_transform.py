"""The frozen SteerTransform value, the pure apply function, orientation and composition."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from steer import (
    SteerDimensionError,
    SteerInputError,
    SteerTransform,
    SteerValuesError,
    apply_steer,
    compose,
    steered_output_embeddings,
)
from steer.core.transform import as_values
from tests.steer.conftest import random_transform

ATOL = 1e-5  # float32 products of size-32 vectors with O(1) entries


def naive(h: torch.Tensor, t: SteerTransform, s: list[float]) -> torch.Tensor:
    """h + eps * sum_i s_i (h P1_i) P2_i^T, slot by slot in float64."""
    h64 = h.double()
    out = h64.clone()
    for i, si in enumerate(s):
        out = out + t.epsilon * si * (h64 @ t.p1[i].double()) @ t.p2[i].double().T
    return out


def test_frozen_and_copies() -> None:
    t = random_transform()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.epsilon = 1.0  # type: ignore[misc]
    p1 = torch.ones(1, 4, 2)
    t2 = SteerTransform(p1, torch.ones(1, 4, 2), 1e-3, "m")
    p1.mul_(7)  # the transform holds its own copy
    assert float(t2.p1.max()) == 1.0
    t64 = t.to(dtype=torch.float64)
    assert t64 is not t and t64.dtype == torch.float64 and t.dtype == torch.float32
    assert t64 != t and t64.to(dtype=torch.float32) == t
    assert t.num_steers == 2 and t.hidden_size == 32 and t.rank == 8
    assert t.slot_names == ("steer_0", "steer_1")
    assert t.num_parameters == 2 * 32 * 8


def test_values_fill_dummy_slots() -> None:
    t = random_transform(k=3, slot_names=("sent", "tox", "dummy"), dummy_slots=(2,))
    assert t.values(2.0) == (2.0, 2.0, 1.0)
    assert t.values([3.0, -1.0]) == (3.0, -1.0, 1.0)
    with pytest.raises(SteerValuesError, match="labelled slots"):
        t.values([1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "bad", [[1.0], [1.0, 2.0, 3.0], [[1.0, 2.0, 3.0]], [[[1.0, 2.0]]], [float("nan"), 1.0], "x"]
)
def test_values_validation(bad: object) -> None:
    with pytest.raises(SteerValuesError):
        as_values(bad, 2)  # type: ignore[arg-type]


def test_construction_errors() -> None:
    with pytest.raises(SteerDimensionError):
        SteerTransform(torch.zeros(2, 4, 3), torch.zeros(2, 4, 2), 1e-3, "m")
    with pytest.raises(SteerInputError, match="epsilon"):
        SteerTransform(torch.zeros(1, 4, 2), torch.zeros(1, 4, 2), 0.0, "m")
    with pytest.raises(SteerInputError, match="slot_names"):
        SteerTransform(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2), 1e-3, "m", slot_names=("a",))
    with pytest.raises(SteerInputError, match="dummy_slots"):
        SteerTransform(torch.zeros(2, 4, 2), torch.zeros(2, 4, 2), 1e-3, "m", dummy_slots=(2,))


def test_apply_matches_naive_shared_and_per_row() -> None:
    t = random_transform()
    h = torch.randn(3, 5, 32, generator=torch.Generator().manual_seed(1))
    got = apply_steer(h, t.p1, t.p2, t.epsilon, torch.tensor([1.5, -2.0]))
    torch.testing.assert_close(got.double(), naive(h, t, [1.5, -2.0]), atol=ATOL, rtol=0)
    rows = torch.tensor([[1.0, 0.0], [0.0, -1.0], [2.0, 3.0]])
    got = apply_steer(h, t.p1, t.p2, t.epsilon, rows)
    for b in range(3):
        ref = naive(h[b], t, rows[b].tolist())
        torch.testing.assert_close(got[b].double(), ref, atol=ATOL, rtol=0)


def test_orientation_w_acts_on_output_embeddings() -> None:
    """logits of h' = h + eps h W^T ... equal h . e'_v with e'_v = (I + eps W) e_v, W = P1 P2^T."""
    t = random_transform().to(dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(50, 32, generator=g)
    h = torch.randn(7, 32, generator=g)
    s = [0.7, -1.3]
    w = t.matrix(s)
    p, q = t.p1, t.p2
    torch.testing.assert_close(w, 0.7 * p[0] @ q[0].T - 1.3 * p[1] @ q[1].T)
    e_prime = steered_output_embeddings(emb.double(), t, s)
    eye = torch.eye(32, dtype=torch.float64)
    torch.testing.assert_close(e_prime, emb.double() @ (eye + t.epsilon * w).T)
    steered_h = apply_steer(h.double(), p, q, t.epsilon, torch.tensor(s, dtype=torch.float64))
    lhs = steered_h @ emb.double().T
    torch.testing.assert_close(lhs, h.double() @ e_prime.T)


def test_compose_adds_matrices() -> None:
    a = random_transform(k=2, r=4, eps=1e-2, seed=1, slot_names=("a", "a_dummy"), dummy_slots=(1,))
    b = random_transform(k=1, r=6, eps=3e-2, seed=2, slot_names=("b",))
    c = compose(a, b)
    assert c.num_steers == 3 and c.rank == 6 and c.dummy_slots == (1,) and c.epsilon == 1e-2
    assert c.values([2.0, -1.0]) == (2.0, 1.0, -1.0)
    want = a.epsilon * a.matrix([2.0, 1.0]) + b.epsilon * b.matrix([-1.0])
    torch.testing.assert_close(c.epsilon * c.matrix([2.0, 1.0, -1.0]), want, atol=1e-6, rtol=1e-5)
    with pytest.raises(SteerDimensionError):
        compose(a, random_transform(d=16))
    with pytest.raises(SteerInputError, match="collide"):
        compose(a, a)


@settings(max_examples=30, deadline=None)
@given(
    s1=st.floats(-5, 5, allow_nan=False),
    s2=st.floats(-5, 5, allow_nan=False),
    c=st.floats(-3, 3, allow_nan=False),
)
def test_apply_is_affine_in_values(s1: float, s2: float, c: float) -> None:
    """The steer's shift is linear in the values: delta(c * s) = c * delta(s)."""
    t = random_transform(eps=1e-2).to(dtype=torch.float64)
    h = torch.randn(4, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    v = torch.tensor([s1, s2], dtype=torch.float64)
    d1 = apply_steer(h, t.p1, t.p2, t.epsilon, v) - h
    dc = apply_steer(h, t.p1, t.p2, t.epsilon, c * v) - h
    torch.testing.assert_close(dc, c * d1, atol=1e-9, rtol=1e-9)
