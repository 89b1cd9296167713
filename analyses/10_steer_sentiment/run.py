"""Analysis 10: a sentiment steer on SmolLM2, evaluated with the DExperts protocol.

Trains the sentiment steer of ``steer demo`` (VADER movie snippets, labels = rating / 4,
sentiment slot + dummy slot), saves it to ``<out>/steer/`` for the other analyses, and evaluates
the paper's four settings with :func:`steer.evaluation.harness.evaluate`: the positive steer (+s) on
neutral and negative prompts, the negative steer (-s) on neutral and positive prompts, each next
to the same prompts at value 0 (dummy slot only).

Usage: ``python analyses/10_steer_sentiment/run.py [--out DIR] [--config TOML] [--reuse-steer]``
(default output: ``out/10_steer_sentiment``; ``config_benchmark.toml`` runs the full protocol
on ``../shared/data/lmsteer-prompts``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import json
import time
from pathlib import Path

import pandas as pd

from analyses.wiring.steer import analysis_parser, read_config, sentiment_steer
from lmecon.atomic import atomic_write_text
from steer.charts.evaluation import epsilon_curves
from steer.evaluation import evaluate, save_evaluations
from steer.resources.data import builtin_prompts, read_prompts
from steer.resources.models import load_model

SETS = {"neutral": (-1.0, 0.0, 1.0), "negative": (0.0, 1.0), "positive": (-1.0, 0.0)}
COLUMNS = ["vader_positive", "vader_mean", "textblob_positive", "textblob_mean", "offensive_max",
           "offensive_any", "ppl_mean", "ppl_median", "ppl_over_1e4", "dist_1", "dist_2",
           "dist_3", "dist_2_ref"]  # fmt: skip


def main() -> None:
    ap = analysis_parser(__file__, __doc__)
    ap.add_argument("--reuse-steer", action="store_true", help="load <out>/steer if it exists")
    args = ap.parse_args()
    cfg = read_config(args)
    ev_cfg = cfg["evaluate"]
    t0 = time.perf_counter()
    lm = load_model(cfg["model"]["name"], log=print)

    # trained with the recipe of `steer demo` and saved to <out>/steer (unless reused)
    steer_dir = args.out / "steer"
    transform, origin = sentiment_steer(
        lm, [steer_dir] if args.reuse_steer else [], cfg["train"], args.out
    )
    if origin == str(steer_dir):
        print(f"reusing {steer_dir}")

    s = float(ev_cfg["strength"])
    evals = []
    for name, signs in SETS.items():
        if ev_cfg["prompts_dir"]:
            path = Path(ev_cfg["prompts_dir"]) / f"{name}_prompts.jsonl"
            prompts = read_prompts(path, ev_cfg["n_prompts"] or None)
        else:
            prompts = builtin_prompts(name, ev_cfg["n_prompts"] or None)
        evals.append(evaluate(
            lm.model, lm.tokenizer, transform, prompts, [x * s for x in signs],
            samples=ev_cfg["samples"], new_tokens=ev_cfg["new_tokens"], top_p=ev_cfg["top_p"],
            temperature=ev_cfg["temperature"], seed=ev_cfg["seed"],
            scorers=ev_cfg["scorers"], batch_size=ev_cfg["batch_size"], prompt_set=name,
            log=print,
        ))  # fmt: skip
    files = save_evaluations(evals, args.out, markdown_metrics=COLUMNS)

    summary = pd.concat([e.summary_frame() for e in evals], ignore_index=True)
    rows = []
    for label, pset, value in (
        ("positive steer", "neutral", s), ("positive steer", "negative", s),
        ("negative steer", "neutral", -s), ("negative steer", "positive", -s),
    ):  # fmt: skip
        for v, who in ((0.0, "value 0 (dummy only)"), (value, label)):
            r = summary[(summary["prompt_set"] == pset) & (summary["value"] == v)].iloc[0]
            cells = [f"{label} on {pset}", who, f"{v:+g}"]
            for m in COLUMNS:
                se = r.get(f"{m}_se", float("nan"))
                cell = f"{r[m]:.0f}" if m == "ppl_over_1e4" else f"{r[m]:.3f}"
                cells.append(cell + (f" ± {se:.3f}" if pd.notna(se) else ""))
            rows.append("| " + " | ".join(cells) + " |")
    head = ["setting", "steer", "s", *COLUMNS]
    table = "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|",
                       *rows])  # fmt: skip
    spec = evals[0].spec
    src = ev_cfg["prompts_dir"] or "built-in lists (steer.resources.data.BUILTIN_PROMPTS)"
    n = {e.spec.prompt_set: e.spec.n_prompts for e in evals}
    report = f"""# Analysis 10: sentiment steer on {lm.model_id}, DExperts protocol

- Steer: {steer_dir} (eps_0 = {transform.epsilon:g}, rank {transform.rank}, slots
  {transform.slot_names}); value s steers with eps = s * eps_0, dummy slot at 1.
- Prompts: {src}; {n} prompts per set.
- Protocol: {spec.samples} samples x exactly {spec.new_tokens} tokens per prompt and value,
  top-p {spec.top_p}, T = {spec.temperature}, per-(prompt, sample) seeds (base seed {spec.seed}).
- Scorers (offline; deviation from the paper's DistilBERT-SST2 and Perspective API):
  {"; ".join(f"{k}: {v}" for k, v in evals[0].provenance["scorers"].items())}
- Fluency: perplexity of the continuation under the unsteered model (token ids; none dropped).
- Mean ± standard error over prompts; ppl_median and ppl_over_1e4 are over all samples.
- Time: {time.perf_counter() - t0:.0f} s.

## The four settings

{table}
"""
    files.append(atomic_write_text(args.out / "report.md", report))
    frame = pd.concat([e.tidy() for e in evals], ignore_index=True)
    chart = epsilon_curves(frame, ("vader_positive", "vader_mean", "textblob_positive",
                                   "offensive_max", "ppl_median", "dist_2"),
                           title=f"Sentiment steer on {lm.model_id}")  # fmt: skip
    for suffix in ("png", "html"):
        chart.save(str(args.out / f"sentiment_by_value.{suffix}"))
        files.append(args.out / f"sentiment_by_value.{suffix}")
    (args.out / "config_used.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(report)
    print(f"wrote {len(files) + 1} files to {args.out}")


if __name__ == "__main__":
    main()
