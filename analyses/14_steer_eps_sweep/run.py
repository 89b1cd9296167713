"""Analysis 14: the epsilon sweep (the paper's Fig. 4a) and a two-steer composition grid (Fig. 4b).

1. Sweep: the sentiment steer of analysis 10 at ``s * eps_0`` for every ``s`` of ``[sweep]
   values``, evaluated with the DExperts protocol on neutral prompts (metric vs value with SE
   bands).
2. Grid: a formality steer (VADER's NYT editorials vs tweets) is trained, composed with the
   sentiment steer (``steer.compose``: ``P_{eps1 W1 + eps2 W2}``) and evaluated on every pair of
   sentiment x formality values; sentiment is scored with VADER / TextBlob and formality with a
   naive Bayes classifier fitted on held-out snippets of the same two collections.

Usage: ``python analyses/14_steer_eps_sweep/run.py [--out DIR] [--config TOML]``
(default output: ``out/14_steer_eps_sweep``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import dataclasses
import json
import time
from pathlib import Path

from analyses.wiring.steer import analysis_args, read_config
from lmecon.atomic import atomic_write_text
from lmecon.charts import save_chart
from steer import SteerConfig, SteerTrainConfig, compose, fit_steer, load_steer, save_steer
from steer.charts.evaluation import composition_grid, epsilon_curves
from steer.evaluation import evaluate, save_evaluations, value_grid
from steer.evaluation.scorers import naive_bayes_scorer, resolve_scorers
from steer.resources.data import builtin_prompts, read_prompts, source_corpus, vader_snippets
from steer.resources.models import load_model

SWEEP_METRICS = ("vader_positive", "vader_mean", "textblob_positive", "offensive_max",
                 "ppl_median", "dist_2")  # fmt: skip


def main() -> None:
    args = analysis_args(__file__, __doc__)
    cfg = read_config(args)
    fm, ev, sw, gr = cfg["formality"], cfg["evaluate"], cfg["sweep"], cfg["grid"]
    t0 = time.perf_counter()
    steer_dir = Path(cfg["model"]["sentiment_steer"])
    if not (steer_dir / "steer_config.json").is_file():
        raise SystemExit(f"{steer_dir} holds no steer: run analyses/10_steer_sentiment/run.py "
                         "first, or set [model] sentiment_steer.")  # fmt: skip
    sentiment = load_steer(steer_dir)
    lm = load_model(cfg["model"]["name"], log=print)

    def prompts(n: int) -> list[str]:
        if ev["prompts_dir"]:
            return read_prompts(Path(ev["prompts_dir"]) / "neutral_prompts.jsonl", n or None)
        return builtin_prompts("neutral", n or None)

    common = {"new_tokens": ev["new_tokens"], "top_p": ev["top_p"], "log": print,
              "temperature": ev["temperature"], "seed": ev["seed"],
              "batch_size": ev["batch_size"]}  # fmt: skip
    files: list[Path] = []

    # 1. epsilon sweep of the sentiment steer
    sweep = evaluate(lm.model, lm.tokenizer, sentiment, prompts(sw["n_prompts"]), sw["values"],
                     samples=sw["samples"], scorers=ev["scorers"], prompt_set="neutral",
                     **common)  # fmt: skip
    files += save_evaluations(sweep, args.out / "sweep")
    files += save_chart(epsilon_curves(sweep.tidy(), SWEEP_METRICS,
                                       title=f"Sentiment steer strength on {lm.model_id}"),
                        args.out / "sweep" / "epsilon_curves", ("png", "html"))  # fmt: skip

    # 2. formality steer, composed with the sentiment steer, on a grid of values
    snippets = vader_snippets((fm["positive"], fm["negative"]))
    corpus = source_corpus(snippets, fm["positive"], fm["negative"],
                           n_per_class=fm["n_per_class"], max_words=fm["max_words"],
                           max_abs_rating=fm["max_abs_rating"], seed=fm["seed"])  # fmt: skip
    held = snippets[~snippets["text"].isin(corpus.texts)]
    scorer_texts = source_corpus(held, fm["positive"], fm["negative"],
                                 n_per_class=fm["scorer_n_per_class"], max_words=None,
                                 seed=fm["seed"] + 1)  # fmt: skip
    pos = [t for t, y in zip(scorer_texts.texts, scorer_texts.labels, strict=True) if y > 0]
    neg = [t for t, y in zip(scorer_texts.texts, scorer_texts.labels, strict=True) if y < 0]
    formality_scorer = naive_bayes_scorer(
        pos, neg, name="formality",
        note=f"naive Bayes P({fm['positive']} editorial style) vs {fm['negative']}, fitted on "
        f"{len(pos)} + {len(neg)} held-out VADER snippets (hit: > 0.5)",
    )  # fmt: skip
    sc = SteerConfig(num_steers=1, dummy_steer=True, rank=fm["rank"], epsilon=fm["epsilon"],
                     slot_names=("formality",))  # fmt: skip
    tc = SteerTrainConfig(steps=fm["steps"], batch_size=fm["batch_size"], lr=fm["lr"],
                     regularization=fm["regularization"], max_length=fm["max_length"],
                     seed=fm["seed"])  # fmt: skip
    fit = fit_steer(lm.model, lm.tokenizer, corpus.texts, corpus.labels, sc, tc,
                    base_model=lm.model_id)  # fmt: skip
    formality = dataclasses.replace(fit.transform, slot_names=("formality", "dummy_formality"))
    save_steer(formality, args.out / "formality_steer")
    hist = fit.history_frame()
    print(f"formality steer: NLL {hist['nll'].iloc[:5].mean():.3f} -> "
          f"{hist['nll'].iloc[-5:].mean():.3f}")  # fmt: skip
    both = compose(sentiment, formality)
    grid = value_grid(both, {"sentiment": gr["sentiment"], "formality": gr["formality"]})
    scorers = [*resolve_scorers(ev["scorers"]), formality_scorer]
    comp = evaluate(lm.model, lm.tokenizer, both, prompts(gr["n_prompts"]), grid,
                    samples=gr["samples"], scorers=scorers, prompt_set="neutral",
                    **common)  # fmt: skip
    files += save_evaluations(comp, args.out / "grid")
    gt = comp.tidy()
    for metric, domain in (("vader_positive", (0.0, 1.0)), ("formality_mean", (0.0, 1.0)),
                           ("ppl_median", None)):  # fmt: skip
        files += save_chart(composition_grid(gt, metric, x="value_sentiment",
                                             y="value_formality", x_title="sentiment value s1",
                                             y_title="formality value s2", domain=domain),
                            args.out / "grid" / f"grid_{metric}", ("png", "html"))  # fmt: skip
    # the formality scorer on its own snippets (a sanity check of the scorer)
    check = {
        "formal_snippets_mean": float(formality_scorer(pos[:200]).mean()),
        "informal_snippets_mean": float(formality_scorer(neg[:200]).mean()),
    }
    cols = ["vader_positive", "vader_mean", "textblob_positive", "formality_mean",
            "formality_positive", "ppl_median", "dist_2"]  # fmt: skip
    report = f"""# Analysis 14: epsilon sweep and composition grid on {lm.model_id}

Sentiment steer: {steer_dir}; formality steer: {fit.n_texts} snippets ({fm["positive"]} = +1,
{fm["negative"]} = -1, |rating| <= {fm["max_abs_rating"]}), NLL {hist["nll"].iloc[:5].mean():.3f}
-> {hist["nll"].iloc[-5:].mean():.3f}. Mean ± standard error over prompts (ppl_median and
ppl_over_1e4 over all samples). Time: {time.perf_counter() - t0:.0f} s.

## 1. Sweep ({sweep.spec.n_prompts} neutral prompts x {sweep.spec.samples} samples x
{sweep.spec.new_tokens} tokens, top-p {sweep.spec.top_p})

{sweep.to_markdown(list(SWEEP_METRICS) + ["ppl_over_1e4", "dist_1", "dist_3"])}

## 2. Grid ({comp.spec.n_prompts} neutral prompts x {comp.spec.samples} samples per cell)

Formality scorer check on held-out snippets: mean P(formal) {check["formal_snippets_mean"]:.3f}
on {fm["positive"]}, {check["informal_snippets_mean"]:.3f} on {fm["negative"]}.

{comp.to_markdown(cols)}

Value 0 keeps both dummy slots at 1 (as in the reference repository), so (0, 0) is not the bare
model.
"""
    files.append(atomic_write_text(args.out / "report.md", report))
    files.append(
        atomic_write_text(
            args.out / "config_used.json",
            json.dumps({**cfg, "scorer_check": check}, indent=2) + "\n",
        )
    )
    print(report)
    print(f"wrote {len(files)} files to {args.out}")


if __name__ == "__main__":
    main()
