"""The shared wiring of the steer analyses (analyses.wiring.steer)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import torch

from analyses.wiring.steer import (
    analysis_args,
    analysis_parser,
    fit_sentiment_steer,
    load_config,
    markdown_table,
    read_config,
    sentiment_recipe,
    sentiment_steer,
    start_steer_analysis,
)
from steer import load_steer, save_steer
from steer.workflows.demo import SteerDemoConfig
from tests.steer import _tiny
from tests.steer.conftest import random_transform

TRAIN = {"source": "movie", "n_per_class": 4, "min_abs_rating": 1.0, "max_words": 10,
         "rank": 4, "epsilon": 0.05, "steps": 2, "batch_size": 4, "lr": 1e-2,
         "regularization": 1e-6, "max_length": 12, "seed": 0}  # fmt: skip


def test_args_defaults_follow_the_script_folder(tmp_path: Path) -> None:
    script = tmp_path / "11_example" / "run.py"
    args = analysis_args(script, "doc", [])
    assert args.out == Path("out") / "11_example"
    assert args.config == script.parent / "config.toml"
    args = analysis_args(script, "doc", ["--out", "x", "--config", "y.toml"])
    assert (args.out, args.config) == (Path("x"), Path("y.toml"))
    ap = analysis_parser(script, "doc")
    ap.add_argument("--flag", action="store_true")
    assert ap.parse_args(["--flag"]).flag


def test_read_config(tmp_path: Path) -> None:
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text('[model]\nname = "m"\n[train]\nseed = 3\n')
    assert load_config(cfg_path) == {"model": {"name": "m"}, "train": {"seed": 3}}
    threads = torch.get_num_threads()
    try:
        out = tmp_path / "a" / "b"
        cfg = read_config(SimpleNamespace(config=cfg_path, out=out), make_out=True)
        assert cfg["train"]["seed"] == 3 and out.is_dir() and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_markdown_table() -> None:
    df = pd.DataFrame({"a": ["x|y", "z"], "b": [0.12345, -2.0]})
    assert markdown_table(df, "+.3f").splitlines() == [
        "| a | b |", "|---|---|", "| x\\|y | +0.123 |", "| z | -2.000 |",
    ]  # fmt: skip
    assert markdown_table(df, ".3g").splitlines()[2] == "| x\\|y | 0.123 |"


def test_recipe_is_the_demo_config() -> None:
    assert sentiment_recipe(TRAIN) == SteerDemoConfig(**TRAIN)
    with pytest.raises(TypeError):
        sentiment_recipe({**TRAIN, "unknown": 1})


def _snippets(sources: Any, cache_dir: Any = None) -> pd.DataFrame:
    pos = [f"{w} film" for w in _tiny.POSITIVE]
    neg = [f"{w} film" for w in _tiny.NEGATIVE]
    return pd.DataFrame({"source": "movie", "id": range(len(pos) + len(neg)),
                         "rating": [3.0] * len(pos) + [-3.0] * len(neg),
                         "text": pos + neg})  # fmt: skip


def test_sentiment_steer_loads_the_first_saved_candidate(tmp_path: Path) -> None:
    saved = save_steer(random_transform(), tmp_path / "second")
    lm = SimpleNamespace(model=None, tokenizer=None, model_id="tiny")
    steer, origin = sentiment_steer(lm, [tmp_path / "missing", saved], TRAIN, tmp_path / "out")
    assert origin == str(saved)
    assert torch.equal(steer.p1, load_steer(saved).p1)


def test_sentiment_steer_trains_with_the_recipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("analyses.wiring.steer.vader_snippets", _snippets)
    model, tok = _tiny.model("llama"), _tiny.tokenizer()
    lm = SimpleNamespace(model=model, tokenizer=tok, model_id="tiny")
    logs: list[str] = []
    steer, origin = sentiment_steer(lm, [tmp_path / "missing"], TRAIN, tmp_path, log=logs.append)
    assert origin == f"trained here ({tmp_path / 'steer'})"
    assert (tmp_path / "steer" / "loss_history.csv").is_file() and len(logs) == 1
    assert steer.slot_names == ("sentiment", "dummy") and steer.rank == 4
    assert torch.equal(load_steer(tmp_path / "steer").p1, steer.p1)
    # the same recipe and seed give the same steer; rank can be overridden
    again = fit_sentiment_steer(model, tok, TRAIN, base_model="tiny", progress=False)
    assert torch.allclose(again.transform.p1, steer.p1)
    assert fit_sentiment_steer(model, tok, TRAIN, base_model="tiny", rank=2).transform.rank == 2


def test_start_steer_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = save_steer(random_transform(), tmp_path / "saved")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[model]\nname = "tiny"\n[steer]\ncandidates = ["{saved}"]\n[train]\n')
    lm = SimpleNamespace(model=None, tokenizer=None, model_id="tiny")
    names: list[str] = []

    def load(name: str, log: Any = None) -> Any:
        names.append(name)
        return lm

    monkeypatch.setattr("analyses.wiring.steer.load_model", load)
    logs: list[str] = []
    threads = torch.get_num_threads()
    try:
        run = start_steer_analysis(
            tmp_path / "run.py", "doc", ["--config", str(cfg), "--out", str(tmp_path / "o")],
            label="source steer", log=logs.append,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert names == ["tiny"] and run.lm is lm and run.origin == str(saved)
    assert run.out == tmp_path / "o" and run.out.is_dir() and run.cfg["model"]["name"] == "tiny"
    assert torch.equal(run.steer.p1, load_steer(saved).p1)
    assert logs == [f"source steer: {run.steer} from {saved}"]
