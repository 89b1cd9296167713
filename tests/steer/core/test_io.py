"""Persistence: safetensors + steer_config.json round-trips to equality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from steer import SteerFormatError, load_steer, save_steer
from tests.steer.conftest import random_transform


def test_round_trip_equality(tmp_path: Path) -> None:
    t = random_transform(
        k=3,
        slot_names=("sentiment", "toxicity", "dummy"),
        dummy_slots=(2,),
    )
    t = type(t)(t.p1, t.p2, 1e-3, "org/model", t.slot_names, t.dummy_slots,
                {"seed": 0, "nested": {"lr": 0.01, "names": ["a", "b"]}, "x": 1e-6})  # fmt: skip
    save_steer(t, tmp_path / "s")
    back = load_steer(tmp_path / "s")
    assert back == t
    assert load_steer(tmp_path / "s" / "steer_config.json") == t
    meta = json.loads((tmp_path / "s" / "steer_config.json").read_text())
    assert (
        meta["format"] == "lmsteer" and meta["hidden_size"] == 32 and "e'_v" in meta["orientation"]
    )
    half = load_steer(tmp_path / "s", dtype=torch.float64)
    assert half.dtype == torch.float64 and half != t and half.to(dtype=torch.float32) == t
    save_steer(half, tmp_path / "d")
    assert load_steer(tmp_path / "d") == half


def test_malformed_steer_folders(tmp_path: Path) -> None:
    with pytest.raises(SteerFormatError, match="does not exist"):
        load_steer(tmp_path)
    t = random_transform()
    save_steer(t, tmp_path / "s")
    cfg = tmp_path / "s" / "steer_config.json"
    meta = json.loads(cfg.read_text())
    cfg.write_text(json.dumps({**meta, "rank": 9}))
    with pytest.raises(SteerFormatError, match="shape"):
        load_steer(tmp_path / "s")
    cfg.write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(SteerFormatError, match="format"):
        load_steer(tmp_path / "s")
    cfg.write_text(json.dumps({k: v for k, v in meta.items() if k != "epsilon"}))
    with pytest.raises(SteerFormatError, match="epsilon"):
        load_steer(tmp_path / "s")
    cfg.write_text(json.dumps(meta))
    save_file({"p1": t.p1}, str(tmp_path / "s" / "steer.safetensors"))
    with pytest.raises(SteerFormatError, match="p1 and p2"):
        load_steer(tmp_path / "s")
