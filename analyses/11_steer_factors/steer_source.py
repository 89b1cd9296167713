"""The sentiment steer shared by analyses 11-13: load it, or train it with the demo's recipe.

Analysis 10 writes the steer to ``out/10_steer_sentiment/steer``; when no candidate folder
holds a saved steer, the same recipe as ``steer demo`` / analysis 10 (VADER movie snippets,
labels = rating / 4, sentiment slot + dummy slot) trains one and saves it to
``<out>/steer`` (with its loss history).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from causalmem._atomic import atomic_write_text
from steer import SteerConfig, SteerTransform, TrainConfig, fit_steer, load_steer, save_steer
from steer.data import sentiment_corpus, vader_snippets

__all__ = ["sentiment_steer"]


def sentiment_steer(
    lm: Any, candidates: Sequence[str | Path], train: Mapping[str, Any], out: Path
) -> tuple[SteerTransform, str]:
    """Return ``(steer, where it came from)``: the first saved candidate, else a new one."""
    for c in candidates:
        path = Path(c)
        if (path / "steer_config.json").is_file():
            return load_steer(path), str(path)
    corpus = sentiment_corpus(
        vader_snippets((train["source"],)), n_per_class=train["n_per_class"],
        min_abs_rating=train["min_abs_rating"], max_words=train["max_words"],
        seed=train["seed"],
    )  # fmt: skip
    sc = SteerConfig(num_steers=1, dummy_steer=True, rank=train["rank"],
                     epsilon=train["epsilon"], slot_names=("sentiment",))  # fmt: skip
    tc = TrainConfig(steps=train["steps"], batch_size=train["batch_size"], lr=train["lr"],
                     regularization=train["regularization"], max_length=train["max_length"],
                     seed=train["seed"])  # fmt: skip
    fit = fit_steer(lm.model, lm.tokenizer, corpus.texts, corpus.labels, sc, tc,
                    base_model=lm.model_id)  # fmt: skip
    steer_dir = save_steer(fit.transform, out / "steer")
    hist = fit.history_frame()
    atomic_write_text(steer_dir / "loss_history.csv", hist.to_csv(index=False))
    print(f"trained a sentiment steer on {fit.n_texts} snippets: token NLL "
          f"{hist['nll'].iloc[:5].mean():.3f} -> {hist['nll'].iloc[-5:].mean():.3f}; "
          f"saved to {steer_dir}")  # fmt: skip
    return fit.transform, f"trained here ({steer_dir})"
