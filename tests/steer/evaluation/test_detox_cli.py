"""``steer scorer-card`` on small synthetic labelled files (no model needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from steer.cli import app


def test_scorer_card_command(tmp_path: Path) -> None:
    pytest.importorskip("profanity_check")
    jig = tmp_path / "jig.csv"
    pd.DataFrame({"comment_text": ["you fucking idiot", "thanks for the edit", "shit page",
                                   "nice work"], "toxic": [1, 0, 1, 0], "severe_toxic": 0,
                  "obscene": 0, "threat": 0, "insult": 0,
                  "identity_hate": 0}).to_csv(jig, index=False)  # fmt: skip
    eth = tmp_path / "ethos.csv"
    eth.write_text("comment;isHate\nthey are all idiots;1.0\nlovely weather;0.0\n")
    out = tmp_path / "card.csv"
    res = CliRunner().invoke(app, ["scorer-card", "--jigsaw", str(jig), "--ethos", str(eth),
                                   "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    card = pd.read_csv(out)
    assert set(card["scorer"]) == {"toxicity", "wordlist"}
    assert set(card["dataset"]) == {"jigsaw", "ethos"}
    # the word list flags exactly the two profane jigsaw comments: AUROC 1, accuracy 1
    row = card[(card["scorer"] == "wordlist") & (card["dataset"] == "jigsaw")].iloc[0]
    assert row["auroc"] == 1.0 and row["accuracy"] == 1.0
    assert "Circularity" in res.output


def test_scorer_card_needs_a_file() -> None:
    res = CliRunner().invoke(app, ["scorer-card"])
    assert res.exit_code != 0
    assert "--jigsaw" in res.output


def test_detox_train_then_eval_on_a_tiny_model(tmp_path: Path, tok: Any) -> None:
    from steer import load_steer
    from tests.steer import _tiny

    model_dir = tmp_path / "tiny"
    _tiny.model("llama").save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    bad, good = _tiny.NEGATIVE, _tiny.POSITIVE
    toxic = [
        f"the {bad[i % 10]} {bad[(i + 3) % 10]} film was {bad[(i + 5) % 10]} so and the end"
        for i in range(24)
    ]
    clean = [
        f"the {good[i % 10]} {good[(i + 3) % 10]} film was {good[(i + 5) % 10]} so and the end"
        for i in range(24)
    ]
    data = tmp_path / "labeled_data.csv"
    pd.DataFrame({"count": 3, "hate_speech": 0, "offensive_language": [3] * 24 + [0] * 24,
                  "neither": [0] * 24 + [3] * 24, "class": [1] * 24 + [2] * 24,
                  "tweet": toxic + clean}).to_csv(data)  # fmt: skip
    runner = CliRunner()
    res = runner.invoke(app, ["detox-train", "--model", str(model_dir), "--data", str(data),
                              "--no-checksum", "--out", str(tmp_path / "steer"), "--steps", "3",
                              "--batch-size", "4", "--rank", "4", "--max-length", "16",
                              "--n-per-class", "8"])  # fmt: skip
    assert res.exit_code == 0, res.output
    t = load_steer(tmp_path / "steer")
    assert t.slot_names == ("toxicity", "dummy") and t.base_model == str(model_dir)
    res = runner.invoke(app, ["detox-eval", "--steer", str(tmp_path / "steer"), "--out",
                              str(tmp_path / "eval"), "--data", str(data), "--no-checksum",
                              "--n-neutral", "2", "--n-challenging", "2", "--value=-3",
                              "--actadd", "1", "--actadd-layer", "1", "--no-prompting",
                              "--samples", "2", "--new-tokens", "3"])  # fmt: skip
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "eval" / "table.csv")
    assert table["method"].tolist() == ["unsteered", "lm-steer", "actadd"] * 2
    assert (tmp_path / "eval" / "pareto.png").is_file()
