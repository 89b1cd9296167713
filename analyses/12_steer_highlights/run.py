"""Analysis 12: keyword evidence of a sentiment steer on SmolLM2 (the paper's Table 7).

For each text, :func:`steer.highlighting.highlight` computes the per-token shift
``Delta_i = log P_{eps W}(v_i | v_<i) - log P_0(v_i | v_<i)`` under the positive steer (+s) and
the negative steer (-s) and picks the best spans by the paper's DP (4 spans of <= 10 tokens).
Writes an HTML page with coloured tokens, the span table, every token's Delta, and a
discrimination table: the mean Delta per token of held-out positive and negative snippets under
each steer direction and each baseline (zero = the paper, negated = the reference app's +s vs
-s, dummy = the labelled slot at 0 with the dummy slot kept).

Usage: ``python analyses/12_steer_highlights/run.py [--out DIR] [--config TOML]``
(default output: ``out/12_steer_highlights``).
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
from steer.charts.highlight import delta_chart
from steer.highlighting import highlight_grid, highlights_html
from steer.resources.data import sentiment_corpus, vader_snippets


def _markdown(df: pd.DataFrame) -> str:
    return markdown_table(df, "+.3f")


def main() -> None:
    t0 = time.perf_counter()
    run = start_steer_analysis(__file__, __doc__)
    cfg, out, lm, transform, origin = run.cfg, run.out, run.lm, run.steer, run.origin
    hc, ho = cfg["highlight"], cfg["heldout"]
    s = float(hc["value"])

    held = sentiment_corpus(vader_snippets((ho["source"],)), n_per_class=ho["n_per_class"],
                            min_abs_rating=ho["min_abs_rating"], seed=ho["seed"])  # fmt: skip
    texts = [(t, "positive", "config") for t in hc["positive"]]
    texts += [(t, "negative", "config") for t in hc["negative"]]
    texts += [(t, "positive" if y > 0 else "negative", ho["source"])
              for t, y in zip(held.texts, held.labels, strict=True)]  # fmt: skip

    token_frames, span_frames, disc_rows, shown, titles = [], [], [], [], []
    n_shown = {"positive": 0, "negative": 0}
    baselines = ("zero", "negated", "dummy")
    directions = (("positive steer", 1.0), ("negative steer", -1.0))
    for i, (text, label, origin_t) in enumerate(texts):
        grid = highlight_grid(lm.model, lm.tokenizer, transform, text,
                              values=[sign * s for _, sign in directions], baselines=baselines,
                              n_spans=hc["n_spans"], max_length=hc["max_length"])  # fmt: skip
        settings = [(d, sign, b) for d, sign in directions for b in baselines]
        for hl, (direction, sign, baseline) in zip(grid, settings, strict=True):
            n_pred = int(np.isfinite(hl.delta).sum())
            disc_rows.append({"text_index": i, "label": label, "origin": origin_t,
                              "direction": direction, "baseline": baseline,
                              "delta_per_token": hl.total_delta / n_pred,
                              "total_delta": hl.total_delta})  # fmt: skip
            if baseline != hc["baseline"]:
                continue
            meta = {"text_index": i, "label": label, "origin": origin_t,
                    "direction": direction, "value": sign * s}  # fmt: skip
            token_frames.append(hl.tidy().assign(**meta))
            span_frames.append(hl.spans_frame().assign(**meta))
            # the steer that matches the text's label is the evidence the paper shows
            match = (label == "positive") == (sign > 0)
            if match and (origin_t == "config" or n_shown[label] < ho["n_html"]):
                if origin_t != "config":
                    n_shown[label] += 1
                shown.append(hl)
                titles.append(f"[{label} text, {origin_t}] {direction} (s = {sign * s:+g})")
        if (i + 1) % 10 == 0:
            print(f"{i + 1}/{len(texts)} texts ({time.perf_counter() - t0:.0f} s)", flush=True)

    tokens = pd.concat(token_frames, ignore_index=True)
    spans = pd.concat(span_frames, ignore_index=True)
    disc = pd.DataFrame(disc_rows)
    table = (
        disc.groupby(["baseline", "direction", "label"])["delta_per_token"]
        .agg(["mean", "std", "count"])
        .reset_index()
    )
    atomic_write_text(out / "tokens.csv", tokens.to_csv(index=False))
    atomic_write_text(out / "spans.csv", spans.to_csv(index=False))
    atomic_write_text(out / "discrimination.csv", disc.to_csv(index=False))
    atomic_write_text(out / "discrimination_summary.csv", table.to_csv(index=False))
    atomic_write_text(out / "highlights.html", highlights_html(shown, titles=titles))
    first = tokens[(tokens["origin"] == "config")]
    charts = [
        delta_chart(g, title=f"text {i}: {d}")
        for (i, d), g in first.groupby(["text_index", "direction"], sort=True)
        if ((texts[i][1] == "positive") == d.startswith("positive"))
    ]
    import altair as alt

    save_chart(alt.vconcat(*charts), out / "delta_charts")

    matched = spans[(spans["origin"] == "config")
                    & ((spans["label"] == "positive") == (spans["value"] > 0))]  # fmt: skip
    span_tab = matched[["text_index", "label", "value", "span", "text", "total_delta"]]
    gap = {}
    for b in ("zero", "negated", "dummy"):
        sub = table[table["baseline"] == b].set_index(["direction", "label"])["mean"]
        gap[b] = {
            "positive steer: pos - neg": float(sub[("positive steer", "positive")]
                                               - sub[("positive steer", "negative")]),
            "negative steer: neg - pos": float(sub[("negative steer", "negative")]
                                               - sub[("negative steer", "positive")]),
        }  # fmt: skip
    secs = time.perf_counter() - t0
    summary = {"model": lm.model_id, "steer_origin": origin, "value": s,
               "baseline": hc["baseline"], "n_texts": len(texts),
               "discrimination_gap": gap, "seconds": secs, "config": cfg}  # fmt: skip
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    report = (
        f"# Keyword evidence of a sentiment steer on {lm.model_id}\n\n"
        f"Steer: {transform!r} ({origin}); s = ±{s:g} (eps = ±{s * transform.epsilon:g}), "
        f"baseline `{hc['baseline']}`, best {hc['n_spans']} spans of <= {hc['max_length']} "
        "tokens. Delta_i = log P_steered(v_i | v_<i) - log P_0(v_i | v_<i).\n\n"
        "## Best spans of the configured texts (steer direction = the text's label)\n\n"
        + _markdown(span_tab.assign(value=span_tab["value"].astype(float)))
        + "\n\n## Discrimination: mean Delta log P per token, held-out + configured texts\n\n"
        + _markdown(table.assign(count=table["count"].astype(int)))
        + "\n\nGap (mean Delta per token of matching minus mismatching texts): "
        + json.dumps(gap, indent=1)
        + f"\n\n{len(texts)} texts ({len(held.texts)} VADER `{ho['source']}` snippets with "
        f"|rating| >= {ho['min_abs_rating']}); {secs:.0f} s.\n"
    )
    atomic_write_text(out / "report.md", report)
    print(report)


if __name__ == "__main__":
    main()
