"""Analysis 17: memorisation during fine-tuning of SmolLM2-135M-Instruct (full vs LoRA).

Fine-tunes the pretrained model in full and with LoRA on one recorded order of the VADER
snippets, samples Pythia-style instances and never-trained chunks, scores them at every saved
checkpoint, fits Callaway & Sant'Anna ATT(g, t) and reports the instantaneous, persistent and
residual memorisation with the learning-rate schedule.

Usage: ``python analyses/17_finetune_memorisation/run.py [--profile reduced|cpu|gpu]
[--methods full lora] [--out DIR] [--figures DIR]`` (default output:
``out/17_finetune_memorisation/<profile>``; reruns reuse finished fine-tuning and scoring, so
two processes may run ``--methods full`` and ``--methods lora`` side by side and a final call
without ``--methods`` writes the comparison). Writes ``comparison.csv|md``, per method
``instantaneous.csv``, ``persistent.csv``, ``residual.csv``, ``att_gt.csv``, ``history.csv``,
``lr_schedule.csv``, the chart ``figures/finetune_profile.png|svg|html`` (also copied to
``--figures`` as ``finetune_profile_<profile>.*``), ``findings.md`` and ``run.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import tomllib
from pathlib import Path

import pandas as pd

from causalmem.lab.finetune import resolve_base_model
from causalmem.results.base import render_frame
from causalmem.workflows.finetune_memorisation import (
    FinetuneMemorisationConfig,
    comparison_chart,
    finetune_ground_truth,
    finetune_memorisation,
    prepare_finetune_data,
)
from lmecon.atomic import atomic_write_text
from lmecon.charts import save_chart

HERE = Path(__file__).parent
_COLS = ["estimate", "std_error", "conf_low", "conf_high"]


def _md(frame: pd.DataFrame, digits: int = 3) -> str:
    shown = frame.copy()
    for c in shown.columns:
        if pd.api.types.is_integer_dtype(shown[c]) or pd.api.types.is_bool_dtype(shown[c]):
            shown[c] = shown[c].astype(str)
    return render_frame(shown, "markdown", digits=digits)


def _truth_chart(truth: pd.DataFrame) -> object:
    """Estimate (with its interval) against the true τ(g, c) per cell, one panel per method."""
    from lmecon.charts import alt

    a = alt()
    frame = truth.assign(period=truth["post"].map({True: "post (c ≥ g)", False: "pre (c < g)"}))
    lo, hi = float(frame[["truth_raw", "conf_low"]].min().min()), float(frame["conf_high"].max())
    diag = (
        a.Chart(pd.DataFrame({"x": [lo, hi], "y": [lo, hi]}))
        .mark_line(color="gray", strokeDash=[4, 4])
        .encode(x="x:Q", y="y:Q")
    )
    panels = []
    for method, part in frame.groupby("method", sort=False):
        base = a.Chart(part).encode(
            x=a.X("truth_raw:Q", title="true τ(g, c): mean Y^A − Y^B (nats)"),
            color=a.Color("period:N", title="cell"),
        )
        panels.append(
            a.layer(
                diag,
                base.mark_errorbar(opacity=0.6).encode(
                    y=a.Y("conf_low:Q", title="att_gt estimate (nats)"), y2="conf_high:Q"
                ),
                base.mark_point(filled=True).encode(y="estimate:Q"),
            ).properties(width=280, height=260, title=str(method))
        )
    return a.hconcat(*panels).properties(
        title="Estimated vs true memorisation (counterfactual fine-tuning), 95% uniform bands"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="reduced")
    ap.add_argument("--config", type=Path, default=HERE / "config.toml")
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--figures", type=Path, default=None)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument(
        "--ground-truth",
        action="store_true",
        help="also fine-tune the counterfactual run B of each method and compare with the truth",
    )
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    profiles = tomllib.loads(args.config.read_text())["profiles"]
    if args.profile not in profiles:
        raise SystemExit(f"unknown profile {args.profile!r}; choose one of {sorted(profiles)}")
    cfg = FinetuneMemorisationConfig.from_mapping(profiles[args.profile])
    out: Path = args.out or Path("out") / HERE.name / args.profile
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", flush=True)

    progress = not args.no_progress
    base = resolve_base_model(cfg.model, log=log)
    data = prepare_finetune_data(cfg, base, log=log)
    res = finetune_memorisation(
        data, base, out, cfg, methods=args.methods, progress=progress, log=log
    )
    truths = {}
    if args.ground_truth:
        for name, m in res.methods.items():
            truths[name] = finetune_ground_truth(m, data, out, cfg, progress=progress, log=log)
    if args.methods is not None and set(args.methods) != set(cfg.methods):
        log("partial run (subset of methods): comparison and chart skipped")
        return
    comp = res.comparison()
    comp["peak_lr"] = comp["peak_lr"] * 1e4
    comp = comp.rename(columns={"peak_lr": "peak_lr (1e-4)"})
    atomic_write_text(out / "comparison.md", _md(comp) + "\n")
    chart = comparison_chart(
        res.methods,
        title=f"SmolLM2-135M-Instruct fine-tuned on VADER snippets ({args.profile} profile)",
    )
    files = save_chart(chart, out / "figures" / "finetune_profile", ("png", "svg", "html"))
    if args.figures is not None:
        args.figures.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, args.figures / f"finetune_profile_{args.profile}{f.suffix}")
    sh = cfg.shared
    lines = [
        f"# Analysis 17: memorisation during fine-tuning ({args.profile} profile)",
        "",
        f"Base model {cfg.model}; corpus {cfg.corpus}; {sh.steps} steps × {sh.batch_size} × "
        f"{sh.seq_len} tokens, checkpoints every {sh.checkpoint_every}; {cfg.k} × {cfg.m} "
        f"instances per macro-batch, {cfg.n_validation} never-trained; outcome {cfg.outcome}.",
        "",
        "## Comparison",
        "",
        _md(comp),
        "",
    ]
    for name, m in res.methods.items():
        lines += [
            f"## {name} (peak lr {m.run.config.lr:g})",
            "",
            "Instantaneous τ(g, g) with the macro-batch learning rate:",
            "",
            _md(
                m.instantaneous[["group", *_COLS]].assign(
                    **{"lr_mean (1e-4)": m.instantaneous["lr_mean"] * 1e4}
                )
            ),
            "",
            "Persistent θ(e):",
            "",
            _md(m.persistent[["event_time", *_COLS]]),
            "",
            "Residual τ(g, T):",
            "",
            _md(m.residual[["group", "time", *_COLS]]),
            "",
            f"Pre-trends: {m.profile.pretrend()}",
            "",
        ]
    if truths:
        gt = pd.concat([t.metrics() for t in truths.values()], ignore_index=True)
        atomic_write_text(out / "ground_truth_metrics.csv", gt.to_csv(index=False))
        cells = pd.concat([t.truth.assign(method=n) for n, t in truths.items()])
        gfiles = save_chart(
            _truth_chart(cells), out / "figures" / "finetune_ground_truth", ("png", "svg", "html")
        )
        if args.figures is not None:
            for f in gfiles:
                target = args.figures / f"finetune_ground_truth_{args.profile}{f.suffix}"
                shutil.copyfile(f, target)
        lines += ["## Ground truth (counterfactual fine-tuning, run B)", "", _md(gt), ""]
        for name, t in truths.items():
            cols = ["group", "time", "truth_raw", "truth_adjusted", "estimate", "conf_low"]
            lines += [f"### {name}: cells", "", _md(t.truth[[*cols, "conf_high", "post"]]), ""]
    stages = {
        n: {
            "finetune_s": m.run.seconds,
            "score_s": m.scoring_seconds(),
            **({"counterfactual_finetune_s": truths[n].run_b.seconds} if n in truths else {}),
        }
        for n, m in res.methods.items()
    }
    body = {
        "profile": args.profile,
        "config": cfg.to_dict(),
        "base_model": str(base),
        "data": data.provenance,
        "stage_seconds": stages,
        "seconds_this_call": time.perf_counter() - t0,
    }
    atomic_write_text(out / "run.json", json.dumps(body, indent=1, default=str))
    lines.append(f"Total wall time of this call: {time.perf_counter() - t0:.0f} s.")
    atomic_write_text(out / "findings.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
