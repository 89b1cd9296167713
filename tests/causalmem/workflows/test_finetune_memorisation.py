"""The fine-tuning memorisation pipeline: corpus → fine-tune → sample → score → att_gt → profile.

A tiny Llama (built from a config, with a BPE tokenizer fitted here) stands in for SmolLM2. Known
effect: a sequence trained at a high learning rate becomes more likely than the never-trained
chunks, so the instantaneous memorisation of full fine-tuning is positive (simulated data with
a known sign); the profile's cells, path and residuals come from ``att_gt`` exactly as in the
pre-training lab.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from causalmem.analysis.profile import MemorisationProfile  # noqa: E402
from causalmem.lab.finetune import FinetuneConfig  # noqa: E402
from causalmem.workflows.finetune_memorisation import (  # noqa: E402
    FinetuneMemorisationConfig,
    comparison_chart,
    run_finetune_memorisation,
)

ROOT = Path(__file__).resolve().parents[3]
TOML = ROOT / "analyses" / "17_finetune_memorisation" / "config.toml"


def _text(n: int = 1500, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = [
        "the", "film", "was", "good", "bad", "plot", "actor", "great", "story", "boring",
        "music", "scene", "love", "hate", "long", "short", "funny", "dark", "bright", "slow",
    ]  # fmt: skip
    lines = [" ".join(rng.choice(words, size=int(rng.integers(6, 20)))) for _ in range(n)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from causalmem.lab.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("ftwf")
    corpus = root / "corpus.txt"
    corpus.write_text(_text())
    bpe = train_bpe(corpus.read_text().splitlines(), 300)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe)
    base = root / "base"
    cfg = LlamaConfig(
        vocab_size=int(bpe.get_vocab_size()),
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
        LlamaForCausalLM(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    return corpus, base


def _config(corpus: Path, base: Path, **kw: Any) -> FinetuneMemorisationConfig:
    shared: dict[str, Any] = {"seq_len": 16, "batch_size": 4, "steps": 8, "checkpoint_every": 2}
    values: dict[str, Any] = {
        "model": str(base),
        "corpus": str(corpus),
        "methods": {
            "full": FinetuneConfig(method="full", lr=3e-2, **shared),
            "lora": FinetuneConfig(method="lora", lr=3e-2, lora_r=4, **shared),
        },
        "n_heldout": 60,
        "n_validation": 40,
        "k": 2,
        "m": 4,
        "biters": 200,
    }
    values.update(kw)
    return FinetuneMemorisationConfig(**values)


@pytest.mark.slow
def test_pipeline_yields_profiles_for_full_and_lora(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    corpus, base = setup
    cfg = _config(corpus, base)
    msgs: list[str] = []
    res = run_finetune_memorisation(tmp_path / "out", cfg, progress=False, log=msgs.append)
    assert set(res.methods) == {"full", "lora"}
    assert res.data_provenance["n_train"] == 32
    for name, m in res.methods.items():
        assert isinstance(m.profile, MemorisationProfile)
        # 4 cohorts (steps 2, 4, 6, 8) of k × m = 8 trained instances + 40 never trained,
        # every instance at every checkpoint (balanced)
        assert m.panel.frame.shape[0] == (4 * 8 + 40) * 5
        assert m.instantaneous["group"].tolist() == [2.0, 4.0, 6.0, 8.0]
        assert (m.instantaneous["time"] == m.instantaneous["group"]).all()
        # LR of macro-batch (base, g]: the mean of the schedule over those steps
        sched = m.lr_schedule.set_index("step")["lr"]
        assert m.instantaneous["lr_mean"].tolist() == pytest.approx(
            [sched.loc[g - 1 : g].mean() for g in (2, 4, 6, 8)]
        )
        assert m.persistent["event_time"].tolist() == [0.0, 2.0, 4.0, 6.0]
        assert m.residual["time"].eq(8.0).all() and len(m.residual) == 4
        for f in ("instantaneous.csv", "persistent.csv", "residual.csv", "att_gt.csv"):
            assert (tmp_path / "out" / name / f).is_file()
        assert (tmp_path / "out" / name / "panel.parquet").is_file()
    full = res.methods["full"]
    # known sign: training on a sequence raises its log-probability; clearly so for the first
    # cohort, trained at the peak learning rate
    assert full.instantaneous["estimate"].mean() > 0
    assert full.instantaneous["conf_low"].iloc[0] > 0
    comp = res.comparison()
    assert comp["method"].tolist() == ["full", "lora"]
    assert int(comp["trainable_params"].iloc[0]) > int(comp["trainable_params"].iloc[1])
    assert (tmp_path / "out" / "comparison.csv").is_file()
    assert (tmp_path / "out" / "run.json").is_file()
    assert any("trainable parameters" in s for s in msgs)
    spec = comparison_chart(res.methods).to_dict()
    assert len(spec["vconcat"]) == 2
    # rerun: fine-tuning and scoring are reused, the estimates are identical
    again = run_finetune_memorisation(tmp_path / "out", cfg, methods=["full"], progress=False)
    assert again.methods["full"].run.resumed_from == 8
    pd.testing.assert_frame_equal(again.methods["full"].instantaneous, full.instantaneous)


def test_config_from_toml_and_errors(setup: tuple[Path, Path]) -> None:
    profiles = tomllib.loads(TOML.read_text())["profiles"]
    assert {"reduced", "cpu", "gpu"} <= set(profiles)
    for name, table in profiles.items():
        cfg = FinetuneMemorisationConfig.from_mapping(table)
        assert set(cfg.methods) == {"full", "lora"}, name
        assert cfg.methods["lora"].method == "lora" and cfg.methods["full"].method == "full"
        assert cfg.methods["lora"].lr > cfg.methods["full"].lr
    corpus, base = setup
    with pytest.raises(ValueError, match="share seq_len"):
        _config(
            corpus,
            base,
            methods={
                "full": FinetuneConfig(method="full", steps=4),
                "lora": FinetuneConfig(method="lora", steps=5),
            },
        )
    with pytest.raises(ValueError, match="exceeds the held-out"):
        _config(corpus, base, n_validation=100)
    with pytest.raises(ValueError, match="unknown keys"):
        FinetuneMemorisationConfig.from_mapping({"finetune": {"full": {}}, "bogus": 1})
    with pytest.raises(ValueError, match="one sub-table per method"):
        FinetuneMemorisationConfig.from_mapping({"finetune": {"steps": 3}})


@pytest.fixture(scope="module")
def one_method(setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Full fine-tuning only (k=1, m=2) and its counterfactual ground truth (a few seconds)."""
    from causalmem.lab.finetune import resolve_base_model
    from causalmem.workflows.finetune_memorisation import (
        finetune_ground_truth,
        finetune_memorisation,
        prepare_finetune_data,
    )

    corpus, base = setup
    out = tmp_path_factory.mktemp("ft_one")
    shared: dict[str, Any] = {"seq_len": 16, "batch_size": 4, "steps": 8, "checkpoint_every": 2}
    cfg = _config(
        corpus,
        base,
        methods={"full": FinetuneConfig(method="full", lr=3e-2, **shared)},
        k=1,
        m=2,
    )
    data = prepare_finetune_data(cfg, resolve_base_model(base))
    res = finetune_memorisation(data, base, out, cfg, progress=False)
    gt = finetune_ground_truth(res.methods["full"], data, out, cfg, progress=False)
    return data, res, gt, out


def test_results_honour_the_result_protocol(one_method: Any) -> None:
    from lmecon.result import check_result

    _, res, gt, _ = one_method
    full = res.methods["full"]
    for result in (res, full, gt):
        check_result(result)
        assert result.plot().to_dict()  # an Altair chart that serialises
    assert res.spec["methods"]["full"]["method"] == "full"
    assert full.spec["method"] == "full" and gt.spec["lr"] == pytest.approx(3e-2)
    assert res.provenance["data"]["n_train"] == 32 and "versions" in res.provenance
    # one tidy frame: τ(g, g) per cohort, θ(e) per lag, τ(g, T) per cohort
    tidy = res.tidy()
    assert tidy.groupby("quantity").size().to_dict() == {
        "instantaneous": 4,
        "persistent": 4,
        "residual": 4,
    }
    assert res.glance()["n_train"].iloc[0] == 32
    pd.testing.assert_frame_equal(full.glance(), res.comparison())
    assert "| full" in res.to_markdown()  # the main table is the comparison
    assert len(res.plot().to_dict()["vconcat"]) == 2  # the comparison chart
    post = gt.metrics().query("period == 'post'").set_index("truth")
    assert gt.glance()["coverage_adjusted"].iloc[0] == post.loc["adjusted", "coverage"]
    with pytest.raises(ValueError, match="truth"):
        gt.plot(truth="bogus")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        res.methods["lora"] = full  # type: ignore[index]


@pytest.mark.slow
def test_ground_truth_by_counterfactual_finetuning(one_method: Any) -> None:
    data, res, gt, tmp_path = one_method
    a = np.asarray(data.train)
    order_b = gt.run_b.order()
    b = np.stack([np.asarray(order_b[i]) for i in range(len(order_b))])
    swapped = np.sort(res.methods["full"].panel.frame.query("cohort.notna()")["unit"].unique())
    assert swapped.size == 4 * 1 * 2  # 4 cohorts × k × m
    kept = np.setdiff1d(np.arange(a.shape[0]), swapped)
    np.testing.assert_array_equal(b[kept], a[kept])  # same order elsewhere ...
    np.testing.assert_array_equal(b[swapped], np.asarray(data.reserve)[: swapped.size])
    # ... and run B never sees the sampled sequences
    seen_b = {r.tobytes() for r in b}
    assert not any(a[i].tobytes() in seen_b for i in swapped)
    t = gt.truth
    assert len(t) == 16 and t["n"].eq(2).all()  # 4 cohorts × 4 checkpoints after step 0
    # trained at the peak learning rate, the first cohort's true effect is positive
    first = t[(t["group"] == 2) & (t["time"] == 2)]
    assert float(first["truth_raw"].iloc[0]) > 0
    m = gt.metrics()
    assert set(m["period"]) == {"post", "pre"} and set(m["truth"]) == {"raw", "adjusted"}
    assert (tmp_path / "full_counterfactual" / "truth.csv").is_file()
