"""Command-line commands of the detoxification experiment (issue 17).

- ``steer detox-train``: train a toxicity steer (+1 toxic, -1 clean) on the Davidson et al.
  tweets (a local ``labeled_data.csv`` or its URL, sha256 pinned);
- ``steer detox-eval``: the paper's protocol (toxicity, fluency, diversity) for the unsteered
  model, LM-Steer at a sweep of values, activation addition and prompting, with a Pareto chart;
- ``steer scorer-card``: AUROC / accuracy of the offline toxicity scorers (and optionally the
  steer as a detector) on held-out human labels (Jigsaw-format and ETHOS files).
"""

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:  # noqa: C901, PLR0915 - one function per module
    """Add this module's commands to ``app``."""
    from steer.cli import CacheOpt, ThreadsOpt, _load_steered, _log, _threads, console

    DataOpt = Annotated[
        str,
        typer.Option(
            "--data",
            help="Davidson labeled_data.csv: a local path or a URL ('' = the canonical URL; "
            "downloaded once, sha256 pinned).",
        ),
    ]
    NoCheckOpt = Annotated[
        bool,
        typer.Option("--no-checksum", help="Read a local file in the same layout unchecked."),
    ]

    def _split(data: str, no_checksum: bool, cache_dir: Path | None, seed: int) -> object:
        from steer.resources.toxicity import DAVIDSON_SHA256, read_davidson, toxicity_split

        sha = None if no_checksum else DAVIDSON_SHA256
        tweets = read_davidson(data or None, sha256=sha, cache_dir=cache_dir, log=_log)
        return toxicity_split(tweets, seed=seed)

    @app.command("detox-train")
    def detox_train(
        out: Annotated[Path, typer.Option(help="Folder for the steer and its loss history.")],
        data: DataOpt = "",
        no_checksum: NoCheckOpt = False,
        model: Annotated[str, typer.Option(help="Model to steer.")] = "smollm2-135m-instruct",
        n_per_class: Annotated[int, typer.Option(help="Training tweets per class.")] = 1500,
        steps: Annotated[int, typer.Option(help="Adam steps.")] = 200,
        batch_size: Annotated[int, typer.Option(help="Texts per step.")] = 32,
        lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-2,
        rank: Annotated[int, typer.Option(help="Rank r (0: the model's d).")] = 0,
        epsilon: Annotated[float, typer.Option(help="Base strength eps_0.")] = 1e-3,
        max_length: Annotated[int, typer.Option(help="Tokens kept per tweet.")] = 48,
        seed: Annotated[int, typer.Option(help="Seed of the split, init and batches.")] = 0,
        threads: ThreadsOpt = 1,
        cache_dir: CacheOpt = None,
    ) -> None:
        """Train a toxicity steer (+1 toxic, -1 clean) on the Davidson tweets; detox with s < 0."""
        _threads(threads)
        from lmecon.atomic import atomic_write_text
        from steer.config import SteerConfig, SteerTrainConfig
        from steer.core.hooks import head_hidden_size
        from steer.core.io import save_steer
        from steer.resources.models import load_model
        from steer.train import fit_steer

        split = _split(data, no_checksum, cache_dir, seed)
        lm = load_model(model, cache_dir=cache_dir, log=_log)
        texts = list(split.texts[: 2 * n_per_class])  # type: ignore[attr-defined]
        labels = split.labels[: 2 * n_per_class]  # type: ignore[attr-defined]
        sc = SteerConfig(rank=rank or head_hidden_size(lm.model), epsilon=epsilon,
                         slot_names=("toxicity",))  # fmt: skip
        tc = SteerTrainConfig(steps=steps, batch_size=batch_size, lr=lr, max_length=max_length,
                              seed=seed)  # fmt: skip
        _log(f"training on {len(texts)} tweets ({split.counts})")  # type: ignore[attr-defined]
        fit = fit_steer(lm.model, lm.tokenizer, texts, labels, sc, tc, base_model=lm.model_id)
        save_steer(fit.transform, out)
        atomic_write_text(out / "loss_history.csv", fit.history_frame().to_csv(index=False))
        console.print(fit.summary())
        console.print(f"[bold]wrote {out}/[/bold]; detoxify with a negative value, e.g. -5")

    @app.command("detox-eval")
    def detox_eval(
        steer_dir: Annotated[Path, typer.Option("--steer", help="Folder of 'steer detox-train'.")],
        out: Annotated[Path, typer.Option(help="Output folder (table, samples, Pareto chart).")],
        data: DataOpt = "",
        no_checksum: NoCheckOpt = False,
        prompts: Annotated[
            Path | None,
            typer.Option(help="Neutral prompts (.jsonl with prompt.text, or one per line)."),
        ] = None,
        n_neutral: Annotated[int, typer.Option(help="Neutral prompts used (0: all).")] = 20,
        n_challenging: Annotated[int, typer.Option(help="Challenging prompts (0: all).")] = 20,
        value: Annotated[
            list[float], typer.Option(help="LM-Steer values (repeat; write --value=-5).")
        ] = [-3.0, -6.0],  # noqa: B006
        actadd: Annotated[
            list[float], typer.Option(help="ActAdd multipliers (repeat; none: skip).")
        ] = [1.0, 2.0],  # noqa: B006
        actadd_layer: Annotated[int, typer.Option(help="Decoder layer of ActAdd.")] = 15,
        prompting: Annotated[bool, typer.Option(help="Add the instruction baseline.")] = True,
        samples: Annotated[int, typer.Option(help="Samples per prompt (paper: 25).")] = 25,
        new_tokens: Annotated[int, typer.Option(help="Tokens per sample (paper: 20).")] = 20,
        top_p: Annotated[float, typer.Option(help="Nucleus mass (paper: 0.9).")] = 0.9,
        seed: Annotated[int, typer.Option(help="Seed of the split and of the samples.")] = 0,
        perplexity_model: Annotated[
            str | None, typer.Option(help="Fluency LM (default: the generator, unsteered).")
        ] = None,
        threads: ThreadsOpt = 1,
        cache_dir: CacheOpt = None,
    ) -> None:
        """Evaluate detoxification: unsteered, LM-Steer, ActAdd, prompting (paper Table 1)."""
        _threads(threads)
        from lmecon.atomic import atomic_write_text
        from lmecon.charts import save_chart
        from steer.evaluation.baselines import mean_difference_vector
        from steer.evaluation.detox import (
            actadd_methods,
            detox_evaluate,
            lmsteer_methods,
            prompting_method,
            unsteered_method,
        )
        from steer.resources.data import builtin_prompts, read_prompts
        from steer.resources.models import load_model
        from steer.resources.toxicity import challenging_prompts

        tr, lm = _load_steered(steer_dir, None, cache_dir, False, False)
        split = _split(data, no_checksum, cache_dir, seed)
        neutral = (read_prompts(prompts, n_neutral or None) if prompts is not None
                   else builtin_prompts("neutral", n_neutral or None))  # fmt: skip
        chall = challenging_prompts(split.texts_of("test", True), n_challenging or None,  # type: ignore[attr-defined]
                                    min_words=8, seed=seed)  # fmt: skip
        methods = [unsteered_method(), *lmsteer_methods(tr, value)]
        if actadd:
            vec = mean_difference_vector(
                lm.model, lm.tokenizer, split.texts_of("train", False)[:500],  # type: ignore[attr-defined]
                split.texts_of("train", True)[:500], layer=actadd_layer,  # type: ignore[attr-defined]
            )  # fmt: skip
            methods += actadd_methods(vec, actadd)
        if prompting:
            methods.append(prompting_method(lm.tokenizer))
        ppl_m = ppl_t = None
        if perplexity_model is not None:
            plm = load_model(perplexity_model, cache_dir=cache_dir, log=_log)
            ppl_m, ppl_t = plm.model, plm.tokenizer
        res = detox_evaluate(
            lm.model, lm.tokenizer, {"challenging": chall, "neutral": neutral}, methods,
            samples=samples, new_tokens=new_tokens, top_p=top_p, seed=seed,
            perplexity_model=ppl_m, perplexity_tokenizer=ppl_t, cache_dir=out / "cache",
            log=_log,
        )  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "table.csv", res.table().to_csv(index=False))
        res.tidy("sample").to_parquet(out / "samples.parquet")
        atomic_write_text(out / "summary.md", res.summary() + "\n")
        files = save_chart(res.plot(), out / "pareto", ("png", "svg"))
        console.print(res.summary())
        console.print(f"[bold]wrote table.csv, samples.parquet, summary.md and {len(files)} "
                      f"charts to {out}/[/bold]")  # fmt: skip

    @app.command("scorer-card")
    def scorer_card_cmd(
        jigsaw: Annotated[
            Path | None, typer.Option(help="Jigsaw-format CSV (comment_text + six labels).")
        ] = None,
        ethos: Annotated[
            Path | None, typer.Option(help="ETHOS binary CSV (comment;isHate).")
        ] = None,
        steer_dir: Annotated[
            Path | None, typer.Option("--steer", help="Add this steer as a detector.")
        ] = None,
        out: Annotated[Path | None, typer.Option(help="Write the card as CSV here.")] = None,
        threads: ThreadsOpt = 1,
        cache_dir: CacheOpt = None,
    ) -> None:
        """AUROC and accuracy of the offline toxicity scorers on held-out human labels."""
        _threads(threads)
        from lmecon.atomic import atomic_write_text
        from steer.evaluation.scorer_card import read_ethos, read_jigsaw_sample, scorer_card
        from steer.evaluation.scorers import Scorer, resolve_scorers

        sets = ([read_jigsaw_sample(jigsaw)] if jigsaw else []) + (
            [read_ethos(ethos)] if ethos else [])  # fmt: skip
        if not sets:
            raise typer.BadParameter("pass --jigsaw and/or --ethos (held-out labelled files).")
        scorers: list[Scorer] = list(resolve_scorers(["toxicity", "wordlist"]))
        if steer_dir is not None:
            from steer.evaluation.detector import steer_detector

            tr, lm = _load_steered(steer_dir, None, cache_dir, False, False)
            scorers.append(steer_detector(lm.model, lm.tokenizer, tr))
        card = scorer_card(sets, scorers)
        console.print(card.summary())
        if out is not None:
            atomic_write_text(out, card.tidy().to_csv(index=False))
            console.print(f"[bold]wrote {out}[/bold]")
