"""The typer CLI on a tiny local model: train, then generate with the saved steer."""

from __future__ import annotations

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
