"""The benchmark scripts run: bench/gpu_scoring.py --smoke on CPU, bench/scoring.py one cell."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[3]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_gpu_scoring_smoke_writes_json_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gpu = _load("gpu_scoring")
    monkeypatch.setenv("OUT", str(tmp_path))
    records = gpu.main(["--smoke", "--device", "cpu"])
    lines = (tmp_path / "gpu_scoring.jsonl").read_text().splitlines()
    assert len(lines) == len(records) == 1
    rec = json.loads(lines[0])
    assert rec["tokens_per_s"] > 0 and rec["mfu"] is None  # no bf16 peak for a CPU
    # 2 N + 4 L T d by hand for the smoke model: N = head + 2 layers (+ final norm)
    assert rec["flops_per_token"] > 2 * 512 * 64
    assert gpu.device_peak("NVIDIA H200") == gpu.device_peak("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu.device_peak("NVIDIA H100 PCIe") == 756e12


def test_scoring_bench_cell_and_peer_agree_with_the_scorer() -> None:
    import numpy as np
    import torch

    bench = _load("scoring")
    res = bench.run_cell("lab", "fused", 16, 2, 1, "cpu", "float32")
    assert res["tokens_per_s"] > 0 and res["method"] == "fused"
    # the peer reimplementation computes the same per-token quantities as causalmem
    from causalmem.scoring.metrics import sequence_scores

    model = bench.build("lab", 16, torch.device("cpu"), torch.float32)
    ids = torch.tensor(np.random.default_rng(0).integers(0, 2048, (2, 16)))
    peer = bench.peer_statistics(model, ids)
    with torch.inference_mode():
        ours = sequence_scores(model(input_ids=ids).logits, ids)
    np.testing.assert_allclose(np.mean(peer["sup"], axis=1), ours.sup_seq, rtol=1e-5)
    np.testing.assert_allclose(np.mean(peer["rank"], axis=1), ours.avg_rank, rtol=1e-6)
    np.testing.assert_allclose(np.mean(peer["entropy"], axis=1), ours.entr_seq, rtol=1e-5)
