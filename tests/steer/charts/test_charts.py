"""Evaluation charts read tidy frames and have the expected encodings (nothing rendered)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from steer.charts.evaluation import composition_grid, epsilon_curves


def _values() -> pd.DataFrame:
    rows = []
    for pset in ("neutral", "negative"):
        for v in (-5.0, 0.0, 5.0):
            for m, est in (("vader_positive", 0.5 + v / 20), ("ppl_median", 10 + abs(v))):
                se = 0.05 if m == "vader_positive" else float("nan")
                rows.append({"prompt_set": pset, "setting": int(v), "value": v, "epsilon": v / 1e3,
                             "values": f"{v:g},1", "metric": m, "estimate": est, "std_error": se,
                             "conf_low": est - 1.96 * se, "conf_high": est + 1.96 * se,
                             "n_prompts": 6})  # fmt: skip
    return pd.DataFrame(rows)


def _grid() -> pd.DataFrame:
    rows = []
    for i, (s, f) in enumerate((s, f) for s in (-5.0, 5.0) for f in (0.0, 5.0)):
        rows.append({"prompt_set": "neutral", "setting": i, "value": s, "value_sentiment": s,
                     "value_formality": f, "metric": "vader_positive", "estimate": 0.5 + s / 10,
                     "std_error": 0.1, "conf_low": 0.3, "conf_high": 0.7,
                     "n_prompts": 4})  # fmt: skip
    return pd.DataFrame(rows)


def _layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["spec"]["layer"] if "spec" in spec else spec["layer"]


def test_epsilon_curves_encodings() -> None:
    frame = _values()
    before = frame.copy()
    spec = epsilon_curves(frame, ("vader_positive", "ppl_median")).to_dict()
    assert spec["facet"]["field"] == "metric_label"
    assert spec["facet"]["sort"] == ["positive share (VADER)", "median perplexity"]
    assert spec["resolve"]["scale"]["y"] == "independent"
    band, line = _layers(spec)
    assert band["mark"]["type"] == "area"
    assert band["encoding"]["y"]["field"] == "conf_low"
    assert band["encoding"]["y2"]["field"] == "conf_high"
    assert line["encoding"]["x"] == {"field": "value", "type": "quantitative",
                                     "title": "steer value s (eps = s * eps_0)"}  # fmt: skip
    assert line["encoding"]["y"]["field"] == "estimate"
    assert line["encoding"]["color"]["field"] == "prompt_set"
    data = next(iter(spec["datasets"].values()))
    assert len(data) == 12 and {d["metric"] for d in data} == {"vader_positive", "ppl_median"}
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is not modified
    eps = epsilon_curves(frame, ("vader_positive",), x="epsilon").to_dict()
    assert _layers(eps)[1]["encoding"]["x"]["field"] == "epsilon"


def test_epsilon_curves_errors() -> None:
    with pytest.raises(KeyError, match="dist_2"):
        epsilon_curves(_values(), ("dist_2",))
    with pytest.raises(KeyError, match="conf_low"):
        epsilon_curves(_values().drop(columns="conf_low"))


def test_composition_grid_encodings() -> None:
    spec = composition_grid(_grid(), "vader_positive", x="value_sentiment",
                            y="value_formality").to_dict()  # fmt: skip
    rect, text = spec["layer"]
    enc = {**spec.get("encoding", {}), **rect.get("encoding", {})}
    assert rect["mark"]["type"] == "rect" and text["mark"]["type"] == "text"
    assert enc["x"]["field"] == "value_sentiment" and enc["x"]["type"] == "ordinal"
    assert enc["y"]["field"] == "value_formality" and enc["y"]["sort"] == [5.0, 0.0]
    assert enc["color"]["field"] == "estimate" and "domain" not in enc["color"]["scale"]
    assert text["encoding"]["text"]["field"] == "estimate"
    fixed = composition_grid(_grid(), x="value_sentiment", y="value_formality",
                             domain=(0.0, 1.0)).to_dict()  # fmt: skip
    assert fixed["layer"][0]["encoding"]["color"]["scale"]["domain"] == [0.0, 1.0]
    twice = pd.concat([_grid(), _grid().assign(prompt_set="negative")])
    with pytest.raises(ValueError, match="one prompt set"):
        composition_grid(twice, x="value_sentiment", y="value_formality")
    with pytest.raises(KeyError, match="value_toxicity"):
        composition_grid(_grid(), x="value_sentiment", y="value_toxicity")
