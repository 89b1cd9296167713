"""The typer CLI on a tiny local model: train, then generate with the saved steer."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from steer import load_steer
from steer.cli import app
from tests.steer import _tiny
from tests.steer.test_train import corpus


def test_train_then_generate(tmp_path: Path, tok: Any) -> None:
    model_dir = tmp_path / "tiny"
    _tiny.model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    texts, labels = corpus(16)
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, labels, strict=True)
        )
    )
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--model", str(model_dir), "--data", str(data), "--out",
                              str(tmp_path / "steer"), "--steps", "3", "--batch-size", "4",
                              "--rank", "4", "--max-length", "16"])  # fmt: skip
    assert res.exit_code == 0, res.output
    t = load_steer(tmp_path / "steer")
    assert t.num_steers == 2 and t.rank == 4 and t.base_model == str(model_dir)
    assert (tmp_path / "steer" / "loss_history.csv").is_file()
    res = runner.invoke(app, ["generate", "--steer", str(tmp_path / "steer"), "--prompt",
                              "the film was", "--value=-2", "--value", "2", "--max-new-tokens",
                              "4", "--out", str(tmp_path / "g.csv")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "-2, 1" in res.output and "2, 1" in res.output
    assert len((tmp_path / "g.csv").read_text().splitlines()) == 3
    bad = runner.invoke(app, ["generate", "--steer", str(tmp_path / "steer"), "--prompt", "a",
                              "--value", "1,2,3"])  # fmt: skip
    assert bad.exit_code != 0
    bad = runner.invoke(app, ["train", "--model", str(model_dir), "--data", str(data), "--out",
                              str(tmp_path / "x"), "--hidden-cache", "sometimes"])  # fmt: skip
    assert bad.exit_code != 0
    # interpretation commands on the same steer
    res = runner.invoke(app, ["factors", "--steer", str(tmp_path / "steer"), "--out",
                              str(tmp_path / "fa"), "--k", "3", "--n-tokens", "5"])  # fmt: skip
    assert res.exit_code == 0, res.output
    scree = (tmp_path / "fa" / "scree.csv").read_text().splitlines()
    assert scree[0].startswith("slot,") and len(scree) == 1 + 2 * 4  # 2 slots x rank-4 spectrum
    loadings = (tmp_path / "fa" / "loadings.csv").read_text().splitlines()
    assert len(loadings) == 1 + 2 * 3 * 2 * 5  # slots x factors x poles x tokens
    assert "## slot" in (tmp_path / "fa" / "factors.md").read_text()
    page = tmp_path / "hl.html"
    res = runner.invoke(app, ["highlight", "--steer", str(tmp_path / "steer"), "--text",
                              "the film was good and fun", "--text", "a dull <film>", "--value",
                              "2", "--out", str(page)])  # fmt: skip
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert "&lt;" in html and "<script" not in html and "total_delta" in res.output
    bad = runner.invoke(app, ["highlight", "--steer", str(tmp_path / "steer"), "--text", "a b",
                              "--baseline", "sideways", "--out", str(page)])  # fmt: skip
    assert bad.exit_code != 0


def test_evaluate_command(tmp_path: Path, tok: Any) -> None:
    import pandas as pd

    from steer import save_steer
    from tests.steer.conftest import random_transform

    model_dir = tmp_path / "tiny"
    _tiny.model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    t = random_transform(k=2, slot_names=("sentiment", "dummy"), dummy_slots=(1,))
    save_steer(dataclasses.replace(t, base_model=str(model_dir)), tmp_path / "steer")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": {"text": "the film was"}}\n{"prompt": {"text": "a movie"}}\n')
    out = tmp_path / "ev"
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", "--steer", str(tmp_path / "steer"), "--prompts",
                              str(prompts), "--value=-2", "--value", "2", "--samples", "2",
                              "--new-tokens", "3", "--scorer", "vader", "--scorer", "offensive",
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    samples = pd.read_parquet(out / "samples.parquet")
    assert len(samples) == 2 * 2 * 2 and (samples["n_tokens"] == 3).all()
    assert samples["prompt_set"].unique().tolist() == ["prompts"]  # the file's stem
    assert sorted(samples["value"].unique()) == [-2.0, 2.0]
    values = pd.read_parquet(out / "values.parquet")
    assert {"vader_positive", "offensive_max", "ppl_median", "dist_3_ref"} <= set(values["metric"])
    assert "| prompts | -2 |" in (out / "summary.md").read_text()
    assert (out / "epsilon_curves.html").is_file()
    # the built-in prompt list and the unsteered model
    res = runner.invoke(app, ["evaluate", "--model", str(model_dir), "--prompt-set", "negative",
                              "--n-prompts", "2", "--samples", "1", "--new-tokens", "2",
                              "--scorer", "vader", "--out", str(tmp_path / "base")])  # fmt: skip
    assert res.exit_code == 0, res.output
    base = pd.read_parquet(tmp_path / "base" / "samples.parquet")
    assert base["values"].unique().tolist() == ["unsteered"] and len(base) == 2
    for bad in (["--prompt-set", "toxic"], ["--prompts", str(tmp_path / "missing.jsonl")],
                ["--scorer", "perspective"]):  # fmt: skip
        args = ["evaluate", "--model", str(model_dir), "--samples", "1", "--new-tokens", "2",
                "--out", str(tmp_path / "x"), *bad]  # fmt: skip
        res = runner.invoke(app, args)
        assert res.exit_code != 0 and not (tmp_path / "x").exists()
