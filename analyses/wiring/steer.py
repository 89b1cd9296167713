"""Shared wiring of the steer analyses (``analyses/10_*`` to ``analyses/14_*``).

Each analysis script takes ``--out`` (default ``out/<script folder>``) and ``--config``
(default ``<script folder>/config.toml``), reads the TOML config and runs single-threaded. Most
of them need the sentiment steer of analysis 10: :func:`sentiment_steer` loads the first saved
candidate, else trains one with the recipe of ``steer demo`` (:mod:`steer.workflows.demo`:
VADER snippets, labels = rating / 4, sentiment slot + dummy slot) from the config's ``[train]``
table.

Nothing runs at import time; torch threads are set only by :func:`read_config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from lmecon.atomic import atomic_write_text
from steer.core.io import load_steer, save_steer
from steer.core.transform import SteerTransform
from steer.resources.data import SentimentCorpus, vader_snippets
from steer.resources.models import load_model
from steer.train import SteerFit, fit_steer
from steer.workflows.demo import SteerDemoConfig, demo_corpus, demo_steer_configs

__all__ = [
    "SteerAnalysis",
    "analysis_args",
    "analysis_parser",
    "fit_sentiment_steer",
    "load_config",
    "markdown_table",
    "read_config",
    "sentiment_corpus_of",
    "sentiment_recipe",
    "sentiment_steer",
    "start_steer_analysis",
]


def analysis_parser(script: str | Path, description: str | None) -> argparse.ArgumentParser:
    """Make an argument parser with the analyses' ``--out`` and ``--config`` options.

    Parameters
    ----------
    script
        The analysis script (``__file__``); its folder names the default output folder
        ``out/<folder>`` and holds the default ``config.toml``.
    description
        Help text (the script's docstring).

    Returns
    -------
    argparse.ArgumentParser
        Add further options before parsing.
    """
    here = Path(script).parent
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", type=Path, default=Path("out") / here.name)
    ap.add_argument("--config", type=Path, default=here / "config.toml")
    return ap


def analysis_args(
    script: str | Path, description: str | None, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse ``--out`` and ``--config`` (see :func:`analysis_parser`) from ``argv``."""
    return analysis_parser(script, description).parse_args(argv)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file."""
    return tomllib.loads(Path(path).read_text())


def read_config(args: argparse.Namespace, *, make_out: bool = False) -> dict[str, Any]:
    """Read ``args.config``, run torch on one thread and optionally create ``args.out``.

    Parameters
    ----------
    args
        Parsed :func:`analysis_args`.
    make_out
        Create the output folder (with its parents).

    Returns
    -------
    dict
        The config.
    """
    cfg = load_config(args.config)
    torch.set_num_threads(1)
    if make_out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    return cfg


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """Format ``df`` as a pipe table: floats with ``floatfmt``, ``|`` in cells escaped."""
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = [format(v, floatfmt) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def sentiment_recipe(train: Mapping[str, Any]) -> SteerDemoConfig:
    """Return the ``steer demo`` recipe with the settings of a config's ``[train]`` table.

    Parameters
    ----------
    train
        Any :class:`steer.workflows.demo.SteerDemoConfig` fields (the analyses set ``source,
        n_per_class, min_abs_rating, max_words, rank, epsilon, steps, batch_size, lr,
        regularization, max_length, seed``); unknown keys are an error.

    Returns
    -------
    SteerDemoConfig
        The recipe.
    """
    return SteerDemoConfig(**dict(train))


def sentiment_corpus_of(train: Mapping[str, Any]) -> SentimentCorpus:
    """Draw the training texts of the sentiment steer of ``train`` (:func:`sentiment_recipe`)."""
    recipe = sentiment_recipe(train)
    return demo_corpus(vader_snippets((recipe.source,)), recipe)


def fit_sentiment_steer(
    model: nn.Module,
    tokenizer: Any,
    train: Mapping[str, Any],
    *,
    base_model: str,
    corpus: SentimentCorpus | None = None,
    rank: int | None = None,
    progress: bool = True,
) -> SteerFit:
    """Train a sentiment steer for ``model`` with the recipe of ``train``.

    Parameters
    ----------
    model, tokenizer
        The model (frozen) and its tokenizer.
    train
        The ``[train]`` table (:func:`sentiment_recipe`).
    base_model
        Recorded in the steer.
    corpus
        The training texts (default: :func:`sentiment_corpus_of` ``train``).
    rank
        Overrides the recipe's rank (e.g. the hidden size of another model).
    progress
        Show a progress bar.

    Returns
    -------
    SteerFit
        The trained steer and its loss history.
    """
    recipe = sentiment_recipe(train)
    if rank is not None:
        recipe = dataclasses.replace(recipe, rank=rank)
    if corpus is None:
        corpus = demo_corpus(vader_snippets((recipe.source,)), recipe)
    sc, tc = demo_steer_configs(recipe, progress=progress)
    return fit_steer(model, tokenizer, corpus.texts, corpus.labels, sc, tc, base_model=base_model)


def sentiment_steer(
    lm: Any,
    candidates: Sequence[str | Path],
    train: Mapping[str, Any],
    out: Path,
    *,
    log: Callable[[str], None] = print,
) -> tuple[SteerTransform, str]:
    """Return ``(steer, where it came from)``: the first saved candidate, else a new one.

    Parameters
    ----------
    lm
        The loaded model (:func:`steer.resources.models.load_model`).
    candidates
        Folders that may hold a saved steer (analysis 10 writes ``out/10_steer_sentiment/steer``).
    train
        The ``[train]`` table used when no candidate holds a steer (:func:`sentiment_recipe`).
    out
        The new steer and its ``loss_history.csv`` are saved to ``<out>/steer``.
    log
        Receives a one-line summary of the training.

    Returns
    -------
    tuple
        The steer and its folder (``"trained here (<folder>)"`` for a new one).
    """
    for c in candidates:
        path = Path(c)
        if (path / "steer_config.json").is_file():
            return load_steer(path), str(path)
    fit = fit_sentiment_steer(lm.model, lm.tokenizer, train, base_model=lm.model_id)
    steer_dir = save_steer(fit.transform, out / "steer")
    hist = fit.history_frame()
    atomic_write_text(steer_dir / "loss_history.csv", hist.to_csv(index=False))
    log(f"trained a sentiment steer on {fit.n_texts} snippets: token NLL "
        f"{hist['nll'].iloc[:5].mean():.3f} -> {hist['nll'].iloc[-5:].mean():.3f}; "
        f"saved to {steer_dir}")  # fmt: skip
    return fit.transform, f"trained here ({steer_dir})"


@dataclass(frozen=True, eq=False)
class SteerAnalysis:
    """What an analysis of the sentiment steer starts from (:func:`start_steer_analysis`).

    Attributes
    ----------
    args
        The parsed command line (``--out``, ``--config``).
    cfg
        The config.
    out
        The output folder (created).
    lm
        The loaded model of ``[model] name``.
    steer
        The sentiment steer.
    origin
        Where the steer came from (:func:`sentiment_steer`).
    """

    args: argparse.Namespace
    cfg: dict[str, Any]
    out: Path
    lm: Any
    steer: SteerTransform
    origin: str


def start_steer_analysis(
    script: str | Path,
    description: str | None,
    argv: Sequence[str] | None = None,
    *,
    label: str = "steer",
    log: Callable[[str], None] = print,
) -> SteerAnalysis:
    """Parse the command line, read the config, load the model and find the sentiment steer.

    Parameters
    ----------
    script, description, argv
        As :func:`analysis_args`.
    label
        Names the steer in the log line.
    log
        Receives progress messages.

    Returns
    -------
    SteerAnalysis
        The arguments, config, output folder (created), model and steer; the config needs
        ``[model] name``, ``[steer] candidates`` and ``[train]`` (:func:`sentiment_steer`).
    """
    args = analysis_args(script, description, argv)
    cfg = read_config(args, make_out=True)
    lm = load_model(cfg["model"]["name"], log=log)
    steer, origin = sentiment_steer(lm, cfg["steer"]["candidates"], cfg["train"], args.out, log=log)
    log(f"{label}: {steer} from {origin}")
    return SteerAnalysis(args, cfg, Path(args.out), lm, steer, origin)
