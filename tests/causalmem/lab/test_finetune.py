"""Fine-tuning a pretrained causal LM (full and LoRA) on a recorded order, with checkpoints.

The base model is a tiny Llama built from a config (the architecture of SmolLM2, tied
embeddings, grouped-query attention), never the real model. What is checked against facts
nobody here computed:

* the batch trained at step ``s`` is the one stored at positions ``(s-1)·B … s·B-1`` of the
  recorded order: the loss logged for step ``s`` (computed by the training loop before its
  update) is recomputed from the saved checkpoint of step ``s-1`` on that stored batch;
* step 0 is the pretrained model bit for bit; LoRA leaves every non-adapted tensor unchanged
  and its merged checkpoint equals ``W + (alpha / r) · B A`` from the saved adapter
  (the LoRA definition, Hu et al. 2021, eq. 3);
* interrupted and resumed runs give the weights of an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from causalmem.instances import MMapIndexedDataset  # noqa: E402
from causalmem.lab.finetune import (  # noqa: E402
    FinetuneConfig,
    finetune,
    finetune_checkpoint_steps,
    finetune_lr_schedule,
    resolve_base_model,
)
from causalmem.lab.train import TrainConfig, lr_at, prepare_data  # noqa: E402

VOCAB = 61


def _tiny_llama(path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        LlamaForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_llama(tmp_path_factory.mktemp("ft") / "base")


def _docs(n: int = 200, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, VOCAB, size=int(rng.integers(5, 50))) for _ in range(n)]


def _cfg(method: str, **kw: Any) -> FinetuneConfig:
    values: dict[str, Any] = {
        "method": method,
        "seq_len": 12,
        "batch_size": 3,
        "steps": 4,
        "lr": 2e-2,
        "checkpoint_every": 1,
        "lora_r": 4,
        "lora_alpha": 8.0,
    }
    values.update(kw)
    return FinetuneConfig(**values)


def _data(cfg: FinetuneConfig) -> Any:
    return prepare_data(_docs(), cfg.train_config(), n_validation=10, seed=3)


def _load(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return m.eval()


def _state(path: Path) -> dict[str, Any]:
    return load_file(str(path / "model.safetensors"))


def _batch_loss(model: Any, rows: np.ndarray) -> float:
    batch = torch.from_numpy(rows.astype(np.int64))
    with torch.no_grad():
        logits = model(input_ids=batch).logits
    return float(
        torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1)
        )
    )


def _check_recorded_order(run: Any, data: Any, cfg: FinetuneConfig, rtol: float) -> None:
    order = MMapIndexedDataset(run.order_path)
    stored = np.stack([np.asarray(order[i]) for i in range(len(order))])
    np.testing.assert_array_equal(stored, data.train)
    np.testing.assert_array_equal(np.load(run.validation_path), data.validation)
    hist = run.history
    assert hist["step"].tolist() == list(range(1, cfg.steps + 1))
    assert hist["first_seq"].tolist() == [cfg.batch_size * i for i in range(cfg.steps)]
    for s in range(1, cfg.steps + 1):
        model = _load(run.run_dir / "checkpoints" / f"step{s - 1}")
        rows = stored[(s - 1) * cfg.batch_size : s * cfg.batch_size]
        got = _batch_loss(model, rows)
        assert got == pytest.approx(float(hist["loss"].iloc[s - 1]), rel=rtol)
        # ... and not the loss of any other batch of the order (the test can tell them apart)
        other = stored[s % cfg.steps * cfg.batch_size : (s % cfg.steps + 1) * cfg.batch_size]
        assert abs(_batch_loss(model, other) - got) > 1e-4


def test_schedule_and_grid_match_the_lab() -> None:
    cfg = _cfg("full", steps=10, warmup_frac=0.2, min_lr_ratio=0.1)
    sched = finetune_lr_schedule(cfg)
    lab = TrainConfig(steps=10, lr=2e-2, warmup_frac=0.2, min_lr_ratio=0.1)
    np.testing.assert_allclose(sched["lr"], lr_at(np.arange(1, 11), lab))
    # warm-up 2 steps to the peak, cosine to 10 % of it at the last step
    assert sched["lr"].iloc[1] == pytest.approx(2e-2)
    assert sched["lr"].iloc[-1] == pytest.approx(2e-3)
    assert finetune_checkpoint_steps(10, 4).tolist() == [0, 4, 8, 10]
    assert finetune_checkpoint_steps(4, 1).tolist() == [0, 1, 2, 3, 4]


def test_full_finetune_order_checkpoints_and_provenance(base: Path, tmp_path: Path) -> None:
    cfg = _cfg("full")
    data = _data(cfg)
    run = finetune(data, cfg, tmp_path / "full", base_model=base, progress=False)
    assert run.checkpoint_steps == (0, 1, 2, 3, 4)
    assert run.adapter_dirs == ()
    for ck in run.checkpoints:
        files = {p.name for p in Path(ck.model).iterdir()}
        assert {"config.json", "model.safetensors"} <= files
    base_sd = _state(base)
    step0 = _state(run.run_dir / "checkpoints" / "step0")
    assert base_sd.keys() == step0.keys()
    assert all(torch.equal(base_sd[k], step0[k]) for k in base_sd)
    last = _state(run.run_dir / "checkpoints" / "step4")
    assert all(not torch.equal(base_sd[k], last[k]) for k in base_sd if base_sd[k].ndim == 2)
    assert run.n_trainable == sum(v.numel() for v in base_sd.values())
    _check_recorded_order(run, data, cfg, rtol=1e-5)
    meta = json.loads((run.run_dir / "run.json").read_text())
    assert meta["config"]["method"] == "full" and len(meta["history"]) == 4
    assert meta["checkpoint_steps"] == [0, 1, 2, 3, 4]
    assert not (run.run_dir / "trainer_state").exists()
    np.testing.assert_allclose(run.history["lr"], finetune_lr_schedule(cfg)["lr"])


def test_lora_adapters_merge_and_order(base: Path, tmp_path: Path) -> None:
    cfg = _cfg("lora", lora_targets=("q_proj", "v_proj"))
    data = _data(cfg)
    run = finetune(data, cfg, tmp_path / "lora", base_model=base, progress=False)
    assert len(run.adapter_dirs) == 5
    for d in run.adapter_dirs:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in d.iterdir()}
    # trainable: A (r × d_in) and B (d_out × r) on q (32 → 32) and v (32 → 16: 2 KV heads) × 2
    assert run.n_trainable == 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4)
    base_sd = _state(base)
    step0 = _state(run.run_dir / "checkpoints" / "step0")
    assert all(torch.equal(base_sd[k], step0[k]) for k in base_sd)
    last = _state(run.run_dir / "checkpoints" / "step4")
    adapter = load_file(str(run.adapter_dirs[-1] / "adapter_model.safetensors"))
    scale = cfg.lora_alpha / cfg.lora_r
    for k, w in base_sd.items():
        adapted = k.endswith(("q_proj.weight", "v_proj.weight"))
        if not adapted:
            assert torch.equal(w, last[k]), k  # frozen and not adapted: untouched
            continue
        stem = "base_model.model." + k.removesuffix(".weight")
        a, b = adapter[f"{stem}.lora_A.weight"], adapter[f"{stem}.lora_B.weight"]
        torch.testing.assert_close(last[k], w + scale * (b @ a), rtol=1e-6, atol=1e-7)
        assert not torch.equal(w, last[k])
    _check_recorded_order(run, data, cfg, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_gives_the_uninterrupted_weights(base: Path, tmp_path: Path, method: str) -> None:
    cfg = _cfg(method, steps=4, checkpoint_every=2)
    data = _data(cfg)
    whole = finetune(data, cfg, tmp_path / "whole", base_model=base, progress=False)
    part = finetune(data, cfg, tmp_path / "part", base_model=base, progress=False, stop_after=2)
    assert part.checkpoint_steps == (0, 2)
    assert (tmp_path / "part" / "trainer_state" / "state.json").exists()
    logs: list[str] = []
    resumed = finetune(
        data, cfg, tmp_path / "part", base_model=base, progress=False, log=logs.append
    )
    assert resumed.resumed_from == 2 and any("resuming" in m for m in logs)
    a = _state(whole.run_dir / "checkpoints" / "step4")
    b = _state(resumed.run_dir / "checkpoints" / "step4")
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(whole.history["loss"], resumed.history["loss"])
    again = finetune(data, cfg, tmp_path / "part", base_model=base, progress=False)
    assert again.resumed_from == cfg.steps  # finished: reused, not retrained


def test_bad_inputs_are_refused(base: Path, tmp_path: Path) -> None:
    cfg = _cfg("full")
    data = _data(cfg)
    with pytest.raises(ValueError, match="steps × batch_size"):
        finetune(data, cfg.with_(steps=5), tmp_path / "a", base_model=base, progress=False)
    big = prepare_data([np.arange(VOCAB, VOCAB + 400)], cfg.train_config(), n_validation=2, seed=0)
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        finetune(big, cfg, tmp_path / "b", base_model=base, progress=False)
    finetune(data, cfg.with_(steps=4), tmp_path / "c", base_model=base, progress=False)
    with pytest.raises(ValueError, match="different fine-tuning run"):
        finetune(data, cfg.with_(lr=1e-3), tmp_path / "c", base_model=base, progress=False)
    finetune(data, cfg, tmp_path / "e", base_model=base, progress=False, stop_after=1)
    order_before = (tmp_path / "e" / "data" / "train.bin").read_bytes()
    with pytest.raises(ValueError, match="different fine-tuning run"):  # unfinished, refused
        finetune(data, cfg.with_(lr=1e-3), tmp_path / "e", base_model=base, progress=False)
    assert (tmp_path / "e" / "data" / "train.bin").read_bytes() == order_before
    with pytest.raises(FileExistsError, match="resume=False"):
        finetune(data, cfg, tmp_path / "e", base_model=base, progress=False, resume=False)
    with pytest.raises(FileNotFoundError, match="not a transformers folder"):
        resolve_base_model(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="method="):
        FinetuneConfig(method="qlora")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown fine-tuning keys"):
        FinetuneConfig.from_mapping({"steps": 3, "learning_rate": 1e-3})
    with pytest.raises(ValueError, match="LoRA targets"):
        finetune(
            data,
            cfg.with_(method="lora", lora_targets=("c_attn",)),
            tmp_path / "d",
            base_model=base,
            progress=False,
        )


def test_resolve_base_model_uses_the_shared_smollm2_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lmecon.smollm import SMOLLM2_HUB_ID, cached_smollm2, is_smollm2

    monkeypatch.setenv("STEER_CACHE", str(tmp_path))
    assert cached_smollm2() is None
    folder = tmp_path / "models" / "SmolLM2-135M-Instruct-Q4_1-f32"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "provenance.json").write_text("{}")
    assert cached_smollm2() == folder
    assert is_smollm2("smollm2-135m-instruct") and is_smollm2(SMOLLM2_HUB_ID)
    assert not is_smollm2(tmp_path)
    assert resolve_base_model("smollm2-135m-instruct") == folder  # no conversion, no network
    assert resolve_base_model(folder) == folder
