"""Analysis 11: factor analysis of a sentiment steer on SmolLM2 (the paper's Table 6).

Reads every slot's ``W_i = P1_i P2_i^T`` through its SVD (:func:`steer.factors.factor_analysis`):
the scree of singular values, the top / bottom tokens of the top factors by their loading
``E v_k`` on the output embeddings (plain and varimax-rotated), and the factor scores of rated
snippets from another VADER collection (does the context side of a factor track sentiment?).

Usage: ``python analyses/11_steer_factors/run.py [--out DIR] [--config TOML]``
(default output: ``out/11_steer_factors``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import json
import time

import numpy as np
import pandas as pd

from analyses.wiring.steer import markdown_table, start_steer_analysis
from lmecon.atomic import atomic_write_text
from lmecon.charts import save_chart
from steer.charts.factors import loadings_chart, scree_chart
from steer.factors import factor_analysis, factor_scores
from steer.resources.data import sentiment_corpus, vader_snippets


def _markdown(df: pd.DataFrame) -> str:
    return markdown_table(df, ".3g")


def main() -> None:
    t0 = time.perf_counter()
    run = start_steer_analysis(__file__, __doc__)
    cfg, out, lm, transform, origin = run.cfg, run.out, run.lm, run.steer, run.origin
    fc, sc = cfg["factors"], cfg["scores"]

    fa = factor_analysis(transform, lm.model, lm.tokenizer, k=fc["k"], n_tokens=fc["n_tokens"])
    fv = factor_analysis(transform, lm.model, lm.tokenizer, k=fc["k"], n_tokens=fc["n_tokens"],
                         rotation="varimax")  # fmt: skip
    fcos = factor_analysis(transform, lm.model, lm.tokenizer, k=fc["k"], n_tokens=fc["n_tokens"],
                           rank_by="cosine")  # fmt: skip
    scree = fa.scree()
    atomic_write_text(out / "scree.csv", scree.to_csv(index=False))
    atomic_write_text(out / "loadings.csv", fa.tidy().to_csv(index=False))
    atomic_write_text(out / "loadings_varimax.csv", fv.tidy().to_csv(index=False))
    atomic_write_text(out / "loadings_cosine.csv", fcos.tidy().to_csv(index=False))

    # factor scores of held-out rated snippets (another collection than the training reviews)
    snippets = vader_snippets((sc["source"],))
    held = sentiment_corpus(snippets, n_per_class=sc["n_per_class"],
                            min_abs_rating=sc["min_abs_rating"], seed=sc["seed"])  # fmt: skip
    scores = factor_scores(fa, lm.model, lm.tokenizer, list(held.texts),
                           max_length=sc["max_length"])  # fmt: skip
    ratings = held.frame["rating"].to_numpy()
    scores = scores.assign(rating=ratings[scores["text_index"].to_numpy()])
    atomic_write_text(out / "factor_scores.csv", scores.to_csv(index=False))
    corr = (
        scores.groupby(["slot_name", "factor"])[["score", "rating"]]
        .apply(
            lambda g: pd.Series(
                {
                    "corr_score_rating": float(np.corrcoef(g["score"], g["rating"])[0, 1]),
                    "mean_score_pos": float(g.loc[g["rating"] > 0, "score"].mean()),
                    "mean_score_neg": float(g.loc[g["rating"] < 0, "score"].mean()),
                }
            )
        )  # fmt: skip
        .reset_index()
    )
    atomic_write_text(out / "factor_score_correlations.csv", corr.to_csv(index=False))

    sections = []
    for name in fa.slot_names:
        sv = scree[scree["slot_name"] == name]
        tab = fa.table(name, n=fc["table_tokens"]).merge(
            corr[corr["slot_name"] == name][
                ["factor", "mean_score_pos", "mean_score_neg", "corr_score_rating"]
            ],
            on="factor",
        )
        tab_v = fv.table(name, n=fc["table_tokens"]).drop(columns="explained")
        tab_c = fcos.table(name, n=fc["table_tokens"]).drop(columns="explained")
        top10 = float(sv["cumulative"].iloc[min(fc["k"], len(sv)) - 1])
        sections.append(
            f"## Slot `{name}`\n\n"
            f"sigma_1 = {sv['singular_value'].iloc[0]:.4g}, ||W||_F = "
            f"{float(np.sqrt((sv['singular_value'] ** 2).sum())):.4g}; the top {fc['k']} "
            f"directions hold {top10:.1%} of ||W||_F^2 (top 1: {sv['explained'].iloc[0]:.1%}).\n\n"
            f"### Singular directions (top / bottom tokens by E v_k; mean_score_pos / _neg = "
            f"mean factor score h.u_k of the positive / negative texts: where it is positive, a "
            f"positive slot value raises `top` and lowers `bottom`, where negative the reverse; "
            f"corr_score_rating = correlation of the score with the human rating)\n\n"
            + _markdown(tab)
            + "\n\n### Same directions, tokens ranked by cosine E v_k / ||e_v|| (embedding "
            "length ignored)\n\n"
            + _markdown(tab_c)
            + "\n\n### Varimax-rotated (top "
            + f"{fc['k']})\n\n"
            + _markdown(tab_v)
        )
        save_chart(loadings_chart(fa.tidy(), slot_name=name, n=fc["table_tokens"]),
                   out / f"loadings_{name}")  # fmt: skip
    save_chart(scree_chart(scree, n=fc["scree_n"], log_scale=fc["scree_log"]), out / "scree")
    secs = time.perf_counter() - t0
    summary = {
        "model": lm.model_id,
        "steer_origin": origin,
        "steer": repr(transform),
        "slots": list(fa.slot_names),
        "singular_values_top": {
            n: fa.singular_values[s][: fc["k"]].tolist()
            for s, n in zip(fa.slots, fa.slot_names, strict=True)
        },  # fmt: skip
        "explained_top_k": {
            n: float(scree[scree["slot_name"] == n]["cumulative"].iloc[fc["k"] - 1])
            for n in fa.slot_names
        },
        "score_texts": {"source": sc["source"], "n": len(held.texts)},
        "seconds": secs,
        "config": cfg,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    report = (
        f"# Factor analysis of a sentiment steer on {lm.model_id}\n\n"
        f"Steer: {transform!r} ({origin}).\n\n"
        "Orientation: W = P1 P2^T acts on the output embeddings e_v, so the right singular "
        "vectors v_k are token directions (loading E v_k, E = output embeddings) and the left "
        "ones u_k are context directions (score = mean h_t . u_k). At a positive steer value, "
        "factor k raises the logits of its `top` tokens after contexts with a positive score "
        "and lowers its `bottom` tokens (signs fixed so the largest |loading| is positive). "
        "`␣` marks a leading space.\n\n"
        + "\n\n".join(sections)
        + f"\n\nFactor scores: {len(held.texts)} VADER `{sc['source']}` snippets "
        f"(|rating| >= {sc['min_abs_rating']}, balanced). {secs:.0f} s in total.\n"
    )
    atomic_write_text(out / "report.md", report)
    print(report)


if __name__ == "__main__":
    main()
