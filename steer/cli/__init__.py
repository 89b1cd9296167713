"""Command line: ``steer train``, ``steer generate``, ``steer evaluate`` and ``steer demo``.

Errors: a failing command prints what went wrong, where and how to fix it on one or two lines
(to stderr) and exits with status 1; ``steer --debug COMMAND ...`` (or ``STEER_DEBUG=1``) shows the
full Python trace instead.

Models: the commands that read a steer load ``--model`` when given; without it they load the
steer's recorded base model only if that is the embedded SmolLM2 or a local folder, and a hub id
only with ``--allow-hub-model`` (a steer file should not make the command download and run an
arbitrary model). A steer trained for another model (vocabulary, output embeddings or tokenizer
differ from the record in its ``steer_config.json``) is refused unless ``--allow-other-model``.

Threads: the commands run torch on one thread by default. On this project's shared 2-core
machines two threads made generation 3-5x slower in every run and training 1.3-3x slower
whenever another job held the second core (1.7x faster when it was free; see
``bench/steer.py --threads 2``); pass ``--threads`` to change it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from lmecon.cli import command_group

app = typer.Typer(
    add_completion=False,
    help="LM-Steer: output-embedding steers for causal LMs.",
    cls=command_group("steer", "STEER_DEBUG"),
    pretty_exceptions_show_locals=False,
)
console = Console()


@app.callback()
def _main(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="STEER_DEBUG", help="Show the full trace on errors."),
    ] = False,
) -> None:
    """LM-Steer: output-embedding steers for causal LMs."""


ModelOpt = Annotated[
    str,
    typer.Option(help="'smollm2-135m-instruct' (embedded, offline), a local folder or a hub id."),
]
ThreadsOpt = Annotated[int, typer.Option(help="torch threads (1 is fastest on 2 shared cores).")]
CacheOpt = Annotated[
    Path | None, typer.Option(help="Cache root (default $STEER_CACHE or ~/.cache/causalmem/steer).")
]
AllowOtherOpt = Annotated[
    bool,
    typer.Option(
        "--allow-other-model",
        help="Use the steer even if --model is not the model it was trained for.",
    ),
]
HubOpt = Annotated[
    bool,
    typer.Option(
        "--allow-hub-model",
        help="Without --model: load the steer's base model even when it is a hub id (default: "
        "only a local folder or the embedded SmolLM2).",
    ),
]


def _threads(n: int) -> None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    import torch

    torch.set_num_threads(max(1, n))


def _log(msg: str) -> None:
    console.print(f"[green]-[/green] {msg}")


def _read_labelled(path: Path) -> tuple[list[str], list[Any]]:
    import pandas as pd

    if path.suffix == ".jsonl":
        df = pd.read_json(path, lines=True)
    elif path.suffix == ".csv":
        df = pd.read_csv(path)
    elif path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        raise typer.BadParameter(f"{path}: use .jsonl, .csv or .parquet with text,label columns.")
    missing = {"text", "label"} - set(df.columns)
    if missing:
        raise typer.BadParameter(f"{path} lacks column(s) {sorted(missing)}.")
    return df["text"].astype(str).tolist(), df["label"].tolist()


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Folder for the steer and its loss history.")],
    model: ModelOpt = "smollm2-135m-instruct",
    data: Annotated[
        str, typer.Option(help="'vader' (human-rated snippets) or a .jsonl/.csv with text,label.")
    ] = "vader",
    source: Annotated[str, typer.Option(help="VADER collection: movie|tweets|amazon|nyt.")] = (
        "movie"
    ),
    n_per_class: Annotated[int, typer.Option(help="VADER snippets per sign.")] = 300,
    min_abs_rating: Annotated[float, typer.Option(help="VADER: keep |rating| >= this.")] = 1.5,
    label_mode: Annotated[str, typer.Option(help="VADER labels: graded|binary.")] = "graded",
    steps: Annotated[int, typer.Option(help="Adam steps.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Texts per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-2,
    rank: Annotated[int, typer.Option(help="Rank r of P1, P2 (0: the model's d).")] = 0,
    epsilon: Annotated[float, typer.Option(help="Base strength eps_0.")] = 1e-3,
    regularization: Annotated[float, typer.Option(help="lambda on |P1|^2 + |P2|^2.")] = 1e-6,
    max_length: Annotated[int, typer.Option(help="Tokens kept per text.")] = 48,
    dummy: Annotated[bool, typer.Option(help="Add the dummy slot (held at 1).")] = True,
    hidden_cache: Annotated[str, typer.Option(help="auto|always|never")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of initialisation and batch order.")] = 0,
    threads: ThreadsOpt = 1,
    cache_dir: CacheOpt = None,
) -> None:
    """Train a steer on labelled texts with the LM frozen; write it as safetensors + JSON."""
    _threads(threads)
    from steer._types import HiddenCache, LabelMode, VaderSource, check_literal
    from steer.config import SteerConfig, SteerTrainConfig
    from steer.core.hooks import head_hidden_size
    from steer.core.io import save_steer
    from steer.resources.data import sentiment_corpus, vader_snippets
    from steer.resources.models import load_model
    from steer.train import fit_steer

    check_literal("hidden_cache", hidden_cache, HiddenCache)
    lm = load_model(model, cache_dir=cache_dir, log=_log)
    if data == "vader":
        check_literal("source", source, VaderSource)
        check_literal("label_mode", label_mode, LabelMode)
        corpus = sentiment_corpus(
            vader_snippets((source,), cache_dir=cache_dir),  # type: ignore[arg-type]
            n_per_class=n_per_class,
            min_abs_rating=min_abs_rating,
            max_words=30,
            label_mode=label_mode,  # type: ignore[arg-type]
            seed=seed,
        )
        texts, labels = list(corpus.texts), corpus.labels.tolist()
        names: tuple[str, ...] = ("sentiment",)
    else:
        texts, labels = _read_labelled(Path(data))
        names = ()
    d = head_hidden_size(lm.model)
    sc = SteerConfig(num_steers=1, dummy_steer=dummy, rank=rank or d, epsilon=epsilon,
                     slot_names=names)  # fmt: skip
    tc = SteerTrainConfig(steps=steps, batch_size=batch_size, lr=lr, regularization=regularization,
                     max_length=max_length, seed=seed, hidden_cache=hidden_cache)  # type: ignore[arg-type]  # fmt: skip
    _log(f"training on {len(texts)} texts")
    fit = fit_steer(lm.model, lm.tokenizer, texts, labels, sc, tc, base_model=lm.model_id)
    save_steer(fit.transform, out)
    fit.history_frame().to_csv(out / "loss_history.csv", index=False)
    h = fit.history_frame()
    _log(
        f"loss {h['loss'].iloc[:5].mean():.4f} -> {h['loss'].iloc[-5:].mean():.4f} "
        f"(first/last 5 steps); caching {fit.cache_seconds:.1f} s, steps {fit.train_seconds:.1f} s"
    )
    console.print(f"[bold]wrote {out}/[/bold] (steer, steer_config.json, loss_history.csv)")


def _parse_values(raw: str, transform: Any) -> tuple[float, ...]:
    from steer.errors import SteerValuesError

    try:
        nums = [float(x) for x in raw.replace(",", " ").split()]
    except ValueError as exc:
        raise typer.BadParameter(f"--value {raw!r}: use numbers like 5 or '5,1'.") from exc
    if len(nums) == transform.num_steers and len(nums) != len(transform.labelled_slots):
        return tuple(nums)
    try:
        return tuple(transform.values(nums))
    except SteerValuesError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command()
def generate(
    steer_dir: Annotated[Path, typer.Option("--steer", help="Folder written by 'steer train'.")],
    prompt: Annotated[list[str], typer.Option(help="Prompt (repeat for several).")],
    value: Annotated[
        list[str],
        typer.Option(
            help="Strength s of the labelled slot(s), eps = s * eps_0; dummy slots get 1. "
            "Repeat for a sweep; write negative values as --value=-5; '5,1' gives all k slots."
        ),
    ] = ["0"],  # noqa: B006
    model: Annotated[
        str | None,
        typer.Option(help="Model (default: the steer's base model if local or embedded)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="New tokens at most.")] = 20,
    min_new_tokens: Annotated[int, typer.Option(help="New tokens at least (EOS banned).")] = 0,
    sample: Annotated[bool, typer.Option(help="Sample instead of greedy decoding.")] = False,
    top_p: Annotated[float, typer.Option(help="Nucleus mass when sampling.")] = 0.9,
    temperature: Annotated[float, typer.Option(help="Temperature when sampling.")] = 1.0,
    num_samples: Annotated[int, typer.Option(help="Continuations per prompt and value.")] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Also write the generations as CSV.")] = None,
    allow_other_model: AllowOtherOpt = False,
    allow_hub_model: HubOpt = False,
    threads: ThreadsOpt = 1,
    cache_dir: CacheOpt = None,
) -> None:
    """Generate continuations with a trained steer at one or more strengths."""
    _threads(threads)
    from steer.generation import generate as run_generate
    from steer.generation import generations_frame

    tr, lm = _load_steered(steer_dir, model, cache_dir, allow_hub_model, allow_other_model)
    settings = [_parse_values(v, tr) for v in value]
    rows_p = [p for p in prompt for _ in settings]
    rows_v = [s for _ in prompt for s in settings]
    gens = run_generate(
        lm.model,
        lm.tokenizer,
        rows_p,
        transform=tr,
        values=rows_v,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        do_sample=sample,
        top_p=top_p,
        temperature=temperature,
        num_samples=num_samples,
        seed=seed,
    )
    table = Table("prompt", "values", "continuation", show_lines=True)
    for g in gens:
        table.add_row(g.prompt, ", ".join(f"{x:g}" for x in g.values or ()), g.text)
    console.print(table)
    if out is not None:
        generations_frame(gens).to_csv(out, index=False)
        console.print(f"[bold]wrote {out}[/bold]")


@app.command()
def evaluate(
    out: Annotated[Path, typer.Option(help="Output folder (parquet, summary.md, charts).")],
    steer_dir: Annotated[
        Path | None,
        typer.Option(
            "--steer", help="Folder written by 'steer train' (none: the unsteered model)."
        ),  # fmt: skip
    ] = None,
    value: Annotated[
        list[str],
        typer.Option(
            help="Strength s of the labelled slot(s) (dummy slots 1); repeat for a sweep; write "
            "negative values as --value=-5; '5,1' gives all k slots."
        ),
    ] = ["-5", "0", "5"],  # noqa: B006
    prompts: Annotated[
        Path | None,
        typer.Option(help="Prompt file: .jsonl ({'prompt': {'text': ...}}) or one per line."),
    ] = None,
    prompt_set: Annotated[
        str, typer.Option(help="Built-in prompt set when no --prompts: neutral|positive|negative.")
    ] = "neutral",
    n_prompts: Annotated[int, typer.Option(help="Use the first n prompts (0: all).")] = 0,
    model: Annotated[
        str | None, typer.Option(help="Model (default: the steer's base model, else SmolLM2).")
    ] = None,
    samples: Annotated[int, typer.Option(help="Samples per prompt and value (paper: 25).")] = 25,
    new_tokens: Annotated[int, typer.Option(help="Exact new tokens per sample (paper: 20).")] = 20,
    top_p: Annotated[float, typer.Option(help="Nucleus mass (paper: 0.9 for sentiment).")] = 0.9,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Base seed of the per-(prompt, sample) seeds.")] = 0,
    scorer: Annotated[
        list[str], typer.Option(help="Scorer (repeat): vader|textblob|afinn|offensive.")
    ] = ["vader", "textblob", "offensive"],  # noqa: B006
    perplexity_model: Annotated[
        str | None, typer.Option(help="Fluency scorer LM (default: the model, unsteered).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 50,
    charts: Annotated[bool, typer.Option(help="Write epsilon-curve charts (PNG + HTML).")] = True,
    allow_other_model: AllowOtherOpt = False,
    allow_hub_model: HubOpt = False,
    threads: ThreadsOpt = 1,
    cache_dir: CacheOpt = None,
) -> None:
    """Evaluate a steer with the DExperts protocol: sentiment, offensiveness, fluency, diversity."""
    _threads(threads)
    from steer.core.io import load_steer
    from steer.errors import SteerInputError
    from steer.evaluation.harness import evaluate as run_evaluate
    from steer.evaluation.result import save_evaluations
    from steer.resources.data import builtin_prompts, read_prompts
    from steer.resources.models import load_model

    try:
        texts = (read_prompts(prompts, n_prompts or None) if prompts is not None
                 else builtin_prompts(prompt_set, n_prompts or None))  # fmt: skip
    except SteerInputError as exc:
        raise typer.BadParameter(str(exc)) from exc
    tr = load_steer(steer_dir) if steer_dir is not None else None
    lm = load_model(_model_name(tr, model, allow_hub_model, steer_dir), cache_dir=cache_dir,
                    log=_log)  # fmt: skip
    tr = _bind(tr, lm, allow_other_model, steer_dir)
    settings = [_parse_values(v, tr) for v in value] if tr is not None else None
    ppl_model = ppl_tok = None
    if perplexity_model is not None:
        scorer_lm = load_model(perplexity_model, cache_dir=cache_dir, log=_log)
        ppl_model, ppl_tok = scorer_lm.model, scorer_lm.tokenizer
    label = prompts.stem if prompts is not None else prompt_set
    try:
        ev = run_evaluate(
            lm.model, lm.tokenizer, tr, texts, settings, samples=samples, new_tokens=new_tokens,
            top_p=top_p, temperature=temperature, seed=seed, scorers=scorer,
            perplexity_model=ppl_model, perplexity_tokenizer=ppl_tok, batch_size=batch_size,
            prompt_set=label, log=_log,
        )  # fmt: skip
    except SteerInputError as exc:
        raise typer.BadParameter(str(exc)) from exc
    files = save_evaluations(ev, out)
    metrics = [m for m in ("vader_positive", "vader_mean", "textblob_positive", "offensive_max",
                           "ppl_median", "dist_2") if m in set(ev.tidy()["metric"])]  # fmt: skip
    console.print(ev.to_markdown(metrics))
    if charts and tr is not None and len(ev.spec.settings or ()) > 1:
        from steer.charts.evaluation import epsilon_curves

        chart = epsilon_curves(ev.tidy(), metrics)
        for suffix in ("html", "png"):
            path = out / f"epsilon_curves.{suffix}"
            try:
                chart.save(str(path))
                files.append(path)
            except Exception as exc:  # noqa: BLE001 - PNG needs vl-convert; HTML always works
                _log(f"could not write {path.name}: {exc}")
    console.print(f"[bold]wrote {len(files)} files to {out}/[/bold]")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out/steer-demo"),
    config: Annotated[Path | None, typer.Option(help="TOML file with a [demo] table.")] = None,
    threads: ThreadsOpt = 1,
    cache_dir: CacheOpt = None,
) -> None:
    """Train a sentiment steer on SmolLM2 offline and show generations and VADER per epsilon."""
    _threads(threads)
    from steer.workflows.demo import SteerDemoConfig, run_demo

    cfg = SteerDemoConfig.from_toml(config) if config else SteerDemoConfig()
    res = run_demo(out, cfg, log=_log, cache_dir=cache_dir)
    gens = res.generations
    for p in cfg.display_prompts:
        table = Table("s", "eps", "VADER", "continuation", title=repr(p), show_lines=False)
        for r in gens[gens["prompt"] == p].itertuples():
            cells = (f"{r.value:+g}", f"{r.epsilon:+.2g}", f"{r.vader:+.2f}", str(r.continuation))
            table.add_row(*cells)
        console.print(table)
    t = Table("s", "eps", "n", "mean VADER", "se", "positive", "dist-2", "ppl (median)",
              title="mean VADER compound per epsilon (all prompts)")  # fmt: skip
    for r in res.table.itertuples():
        t.add_row(f"{r.value:+g}", f"{r.epsilon:+.2g}", str(r.n), f"{r.vader_mean:+.3f}",
                  f"{r.vader_se:.3f}", f"{r.positive_share:.2f}", f"{r.dist_2:.2f}",
                  f"{r.perplexity_median:.1f}")  # fmt: skip
    console.print(t)
    console.print(f"without any steer: mean VADER {res.unsteered_vader:+.3f}")
    verdict = "[green]rises[/green]" if res.rises else "[red]does not rise strictly[/red]"
    console.print(
        f"mean VADER {verdict} with epsilon (Spearman {res.spearman:+.3f}); "
        f"total {res.seconds['total']:.0f} s"
    )
    console.print(f"[bold]wrote {len(res.files)} files to {res.out_dir}/[/bold]")
    console.print(json.dumps({k: round(v, 1) for k, v in res.seconds.items()}))


def _model_name(tr: Any, model: str | None, allow_hub: bool, steer_dir: Path | None) -> str:
    """Return the model to load: ``--model``, else the steer's local or embedded base model."""
    from steer.errors import SteerInputError
    from steer.resources.models import SMOLLM2, SMOLLM2_HUB_ID

    if model is not None:
        return model
    if tr is None:
        return SMOLLM2
    base = str(tr.base_model)
    if base == SMOLLM2_HUB_ID or base.lower() == SMOLLM2:
        return SMOLLM2
    if Path(base).expanduser().is_dir() or allow_hub:
        return base
    raise SteerInputError(
        f"{steer_dir}: the steer names base model {base!r}, which is neither a local folder nor "
        f"the embedded {SMOLLM2!r}; pass --model {base} to load it explicitly (from the hub if "
        "it is a hub id), or --allow-hub-model to load whatever the steer names."
    )


def _bind(tr: Any, lm: Any, allow_other: bool, steer_dir: Path | None) -> Any:
    """Check the steer against the loaded model; with the override, re-record it for it."""
    from steer.core.compat import check_base_model, rebase
    from steer.core.hooks import check_dimension

    if tr is None:
        return None
    check_dimension(lm.model, tr)
    check_base_model(
        lm.model, tr, lm.tokenizer, allow_other_model=allow_other, where=str(steer_dir)
    )
    return rebase(tr, lm.model, lm.tokenizer) if allow_other else tr


def _load_steered(
    steer_dir: Path, model: str | None, cache_dir: Any, allow_hub: bool, allow_other: bool
) -> tuple[Any, Any]:
    from steer.core.io import load_steer
    from steer.resources.models import load_model

    tr = load_steer(steer_dir)
    lm = load_model(_model_name(tr, model, allow_hub, steer_dir), cache_dir=cache_dir, log=_log)
    return _bind(tr, lm, allow_other, steer_dir), lm


@app.command()
def factors(
    steer_dir: Annotated[Path, typer.Option("--steer", help="Folder written by 'steer train'.")],
    out: Annotated[Path, typer.Option(help="Output folder (CSV, Markdown, charts).")],
    model: Annotated[
        str | None, typer.Option(help="Model (default: the steer's base model, else SmolLM2).")
    ] = None,
    k: Annotated[int, typer.Option(help="Factors per slot.")] = 10,
    n_tokens: Annotated[int, typer.Option(help="Tokens per pole.")] = 20,
    rotation: Annotated[
        str, typer.Option(help="none|varimax|quartimax|promax|oblimin (of the top-k factors).")
    ] = "none",
    rank_by: Annotated[str, typer.Option(help="loading (the paper: E v_k) | cosine.")] = "loading",
    allow_other_model: AllowOtherOpt = False,
    allow_hub_model: HubOpt = False,
    threads: ThreadsOpt = 1,
    cache_dir: CacheOpt = None,
) -> None:
    """Factor analysis of W: singular values (scree) and the tokens on both poles of each factor."""
    _threads(threads)
    from lmecon.atomic import atomic_write_text
    from steer.errors import SteerInputError
    from steer.factors import factor_analysis

    tr, lm = _load_steered(steer_dir, model, cache_dir, allow_hub_model, allow_other_model)
    try:
        fa = factor_analysis(
            tr, lm.model, lm.tokenizer, k=k, n_tokens=n_tokens,
            rotation=None if rotation == "none" else rotation, rank_by=rank_by,  # type: ignore[arg-type]
        )  # fmt: skip
    except SteerInputError as exc:
        raise typer.BadParameter(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "scree.csv", fa.scree().to_csv(index=False))
    atomic_write_text(out / "loadings.csv", fa.tidy().to_csv(index=False))
    tables = [f"## slot {name}\n\n{fa.table(name).to_markdown(index=False)}\n" for name in
              tr.slot_names]  # fmt: skip
    atomic_write_text(out / "factors.md", "\n".join(tables))
    console.print(tables[0])
    console.print(f"[bold]wrote scree.csv, loadings.csv and factors.md to {out}/[/bold]")


@app.command()
def highlight(
    steer_dir: Annotated[Path, typer.Option("--steer", help="Folder written by 'steer train'.")],
    text: Annotated[list[str], typer.Option(help="Text to analyse (repeat for several).")],
    out: Annotated[Path, typer.Option(help="HTML page to write (self-contained).")],
    value: Annotated[
        str, typer.Option(help="Strength s of the labelled slot(s) (dummy slots 1), e.g. 5 or -5.")
    ] = "5",
    baseline: Annotated[
        str, typer.Option(help="zero (the paper) | negated (the repo) | dummy.")
    ] = "zero",
    n_spans: Annotated[int, typer.Option(help="Best spans per text.")] = 4,
    max_length: Annotated[int, typer.Option(help="Tokens per span at most.")] = 10,
    model: Annotated[
        str | None, typer.Option(help="Model (default: the steer's base model, else SmolLM2).")
    ] = None,
    allow_other_model: AllowOtherOpt = False,
    allow_hub_model: HubOpt = False,
    threads: ThreadsOpt = 1,
    cache_dir: CacheOpt = None,
) -> None:
    """Per-token evidence of a steer (log-prob shift) with the best spans, as coloured HTML."""
    _threads(threads)
    from lmecon.atomic import atomic_write_text
    from steer.errors import SteerInputError
    from steer.highlighting import highlight as run_highlight
    from steer.highlighting import highlights_html

    tr, lm = _load_steered(steer_dir, model, cache_dir, allow_hub_model, allow_other_model)
    values = _parse_values(value, tr)
    try:
        results = [
            run_highlight(lm.model, lm.tokenizer, tr, t, values=values, baseline=baseline,  # type: ignore[arg-type]
                          n_spans=n_spans, max_length=max_length)
            for t in text
        ]  # fmt: skip
    except SteerInputError as exc:
        raise typer.BadParameter(str(exc)) from exc
    atomic_write_text(out, highlights_html(results))
    for r in results:
        console.print(r.spans_frame().to_string(index=False))
    console.print(f"[bold]wrote {out}[/bold]")


# Commands defined in sibling modules (imported last: they use the names above).
from steer.cli import detox, export  # noqa: E402

for _module in (
    detox,
    export,
):
    _module.register(app)


if __name__ == "__main__":
    app()
