"""The real end-to-end demo: corpus → tokenizer → training → scoring → att_gt → report.

A tiny GPT-NeoX is trained from scratch on real English text (the VADER snippets from PyPI by
default) with a recorded data order; every checkpoint on the regular grid scores Pythia-style
samples of each macro-batch and never-trained held-out chunks; Callaway & Sant'Anna ATT(g, c)
then estimates the memorisation profile. Outputs (all under ``out_dir``)::

    lab/                 corpus provenance, tokenizer/, data/ (recorded order), checkpoints/
    scores/              one parquet shard per checkpoint + manifest.json
    panel.parquet        the long panel (schema and provenance inside)
    att_gt.parquet, aggte_dynamic.parquet, instantaneous.parquet, lr_schedule.parquet
    figures/             profile, instantaneous_lr, event_path (.png and .html)
    tables/              instantaneous, event_path, residual (.tex and .md)
    report.md, run.json

Rerunning on the same folder resumes: finished training and scoring are reused. Paths are
chosen by the caller (the CLI); nothing here changes global state beyond the calls' scope.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causalmem.analysis.profile import to_memorisation
from causalmem.lab import _pipeline
from causalmem.lab.config import LabConfig
from lmecon.atomic import atomic_write_parquet, atomic_write_text
from lmecon.charts import save_chart

__all__ = ["LabConfig", "LabDemoOutput", "run_lab_demo"]

Log = Callable[[str], None]


@dataclass(frozen=True)
class LabDemoOutput:
    """Where the demo wrote its artefacts, its stage timings and headline numbers."""

    out_dir: Path
    files: tuple[Path, ...]
    timings: dict[str, float]
    headline: dict[str, Any]


# ----------------------------------------------------------------------------- helpers
def _atomic_text(text: str, path: Path) -> None:
    atomic_write_text(path, text)


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    atomic_write_parquet(path, frame)


_FORMATS = ("png", "html")


def _memorisation(frame: pd.DataFrame, sign: int) -> pd.DataFrame:
    """Put tidy estimates on the memorisation scale (``profile.to_memorisation``)."""
    return to_memorisation(frame, 1 if sign >= 0 else -1)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


# ----------------------------------------------------------------------------- the demo
def run_lab_demo(
    out_dir: str | os.PathLike[str],
    cfg: LabConfig | None = None,
    log: Log = print,
    *,
    progress: bool = True,
) -> LabDemoOutput:
    """Train the mini-Pythia, score its checkpoints, estimate and report memorisation.

    Parameters
    ----------
    out_dir
        Output folder (created). A rerun resumes finished stages.
    cfg
        Settings (default :class:`LabConfig`).
    log
        One-line progress messages (the CLI passes a rich console printer).
    progress
        Show rich progress bars for training and scoring.

    Returns
    -------
    LabDemoOutput
    """
    from causalmem.estimators.aggte import aggte
    from causalmem.estimators.att_gt import att_gt
    from causalmem.lab.train import cohort_lr, lr_schedule, train
    from causalmem.panel.io import write_panel
    from causalmem.presentation.charts import event_path, instantaneous_vs_lr, profile_heatmap
    from causalmem.results.base import render_frame
    from causalmem.scoring.metrics import MEMORISATION_SIGN
    from causalmem.scoring.runner import read_manifest, scoring_plan

    cfg = cfg or LabConfig()
    if cfg.outcome not in MEMORISATION_SIGN:
        raise ValueError(f"outcome={cfg.outcome!r}; use one of {sorted(MEMORISATION_SIGN)}.")
    out = Path(out_dir)
    lab = out / "lab"
    lab.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    reused: list[str] = []
    files: list[Path] = []
    tcfg = cfg.train_config()
    t_all = time.perf_counter()

    # 1. corpus -------------------------------------------------------------------------
    t0 = time.perf_counter()
    corpus, corpus_sha = _pipeline.load_documents(cfg, log)
    _atomic_text(
        json.dumps(_pipeline.corpus_provenance(corpus, corpus_sha), indent=1), lab / "corpus.json"
    )
    timings["corpus"] = time.perf_counter() - t0
    log(
        f"corpus: {len(corpus):,} documents, {corpus.n_chars:,} characters "
        f"({corpus.provenance.get('source', cfg.corpus)})"
    )

    # 2. tokenizer ----------------------------------------------------------------------
    t0 = time.perf_counter()
    tokenizer, reuse = _pipeline.fit_tokenizer(
        corpus, corpus_sha, cfg.vocab_size, lab / "tokenizer"
    )
    if reuse:
        reused.append("tokenizer")
    vocab = int(tokenizer.get_vocab_size())
    timings["tokenizer"] = time.perf_counter() - t0
    log(f"tokenizer: byte-level BPE, {vocab:,} entries" + (" (reused)" if reuse else ""))

    # 3. data ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    data = _pipeline.split_data(tokenizer, corpus, cfg, tcfg)
    timings["data"] = time.perf_counter() - t0
    dp = data.provenance
    log(
        f"data: {dp['tokens']:,} tokens in {dp['unique_chunks']:,} unique {cfg.seq_len}-token "
        f"chunks: {dp['n_train']:,} trained once in a recorded order, {dp['n_validation']:,} "
        f"held out, {dp['n_reserve']:,} reserve"
    )

    # 4. training -----------------------------------------------------------------------
    t0 = time.perf_counter()
    run = train(data, tcfg, lab, vocab_size=vocab, progress=progress, log=log)
    timings["training"] = time.perf_counter() - t0
    if run.resumed_from == cfg.steps:
        reused.append("training")
    n_params = _n_params(cfg, vocab)
    log(
        f"training: {n_params / 1e6:.2f}M parameters, {cfg.steps} steps × {cfg.batch_size} × "
        f"{cfg.seq_len} tokens, {len(run.checkpoint_steps)} checkpoints in "
        f"{timings['training']:.1f} s; final loss {float(run.history['loss'].iloc[-1]):.3f}"
    )

    # 5. instances ----------------------------------------------------------------------
    t0 = time.perf_counter()
    steps = _pipeline.analysis_steps(run, cfg)
    sample = _pipeline.sample_instances(steps, cfg)
    tr, va, instances = _pipeline.lab_instances(run, sample, cfg)
    plan = scoring_plan(instances, steps, pre_periods=cfg.pre_periods)
    timings["instances"] = time.perf_counter() - t0
    n_cells = int(sum(int(m.sum()) for m in plan.values()))
    log(
        f"instances: {tr.n:,} trained ({cfg.k} batches × {cfg.m} sequences per macro-batch, "
        f"{steps.size - 1} cohorts) + {va.n:,} never trained; {n_cells:,} of "
        f"{instances.n * steps.size:,} (instance, checkpoint) pairs needed"
    )

    # 6. scoring ------------------------------------------------------------------------
    t0 = time.perf_counter()
    if (out / "scores" / "manifest.json").exists():
        done = {int(r["checkpoint"]["step"]) for r in read_manifest(out / "scores")["checkpoints"]}
        if set(steps.tolist()) <= done:
            reused.append("scoring")
    panel = _pipeline.score_run(
        run, steps, instances, out / "scores", cfg, plan=plan, progress=progress
    )
    timings["scoring"] = time.perf_counter() - t0
    n_tokens = n_cells * (cfg.seq_len - 1)
    log(
        f"scoring: {len(panel.frame):,} rows from {steps.size} checkpoints in "
        f"{timings['scoring']:.1f} s ({n_tokens / max(timings['scoring'], 1e-9):,.0f} "
        "predicted tokens/s)"
    )
    path = write_panel(panel, out / "panel.parquet")
    files.append(path)

    # 7. estimation ---------------------------------------------------------------------
    t0 = time.perf_counter()
    import warnings

    from causalmem.errors import CausalmemWarning

    with warnings.catch_warnings():
        # Cells before the scored pre-periods have no treated units by design (scoring plan).
        warnings.simplefilter("ignore", CausalmemWarning)
        res = att_gt(
            panel,
            yname=cfg.outcome,
            allow_unbalanced_panel=True,
            biters=cfg.biters,
            alp=cfg.alp,
            seed=cfg.seed,
        )
        dyn = aggte(res, "dynamic", na_rm=True)
    timings["estimation"] = time.perf_counter() - t0
    sign = int(MEMORISATION_SIGN[cfg.outcome])
    cells = _memorisation(res.tidy(), sign)
    inst = _memorisation(res.instantaneous(), sign)
    path_df = _memorisation(dyn.tidy(), sign)
    last = int(steps.max())
    resid = _memorisation(res.residual(at=last), sign)
    lr_by_cohort = cohort_lr(tcfg, steps)
    inst = inst.merge(lr_by_cohort, on="group", how="left")
    corr = (
        float(np.corrcoef(inst["estimate"], inst["lr_mean"])[0, 1])
        if len(inst) > 2
        else float("nan")
    )
    sched = lr_schedule(tcfg)
    log(
        f"att_gt: {res.cells.n_cells:,} cells of {cfg.outcome} in {timings['estimation']:.2f} s "
        f"({res.se_method} SEs, {res.band} band, critical value {res.crit_val:.2f})"
    )

    # 8. report -------------------------------------------------------------------------
    t0 = time.perf_counter()
    tidy_files = {
        "att_gt.parquet": cells,
        "aggte_dynamic.parquet": path_df,
        "instantaneous.parquet": inst,
        "residual.parquet": resid,
        "lr_schedule.parquet": sched,
    }
    for name, frame in tidy_files.items():
        _atomic_parquet(frame, out / name)
        files.append(out / name)
    unit = "nats" if cfg.outcome == "logprob" else cfg.outcome
    fig = out / "figures"
    files += save_chart(
        profile_heatmap(
            cells,
            title=f"Memorisation profile ({cfg.outcome}, {unit})",
            value_title=f"memorisation ({unit})",
        ),
        fig / "profile",
        _FORMATS,
    )
    files += save_chart(
        instantaneous_vs_lr(inst, sched, value_title=f"τ(g, g) ({unit})"),
        fig / "instantaneous_lr",
        _FORMATS,
    )
    files += save_chart(
        event_path(path_df, value_title=f"memorisation ({unit})"), fig / "event_path", _FORMATS
    )
    cols = ["estimate", "std_error", "statistic", "conf_low", "conf_high"]
    inst_tab = inst[["group", *cols]].assign(group=inst["group"].astype(int).astype(str))
    inst_tab["mean LR"] = inst["lr_mean"].map("{:.2e}".format)
    post = path_df.dropna(subset=["event_time"])
    post = post[post["event_time"] >= 0]
    path_tab = post[["event_time", *cols]].assign(
        event_time=post["event_time"].astype(int).astype(str)
    )
    resid_tab = resid[["group", *cols]].assign(group=resid["group"].astype(int).astype(str))
    tables = {
        "instantaneous": (inst_tab, "Instantaneous memorisation {tau}(g, g) of " + cfg.outcome),
        "event_path": (path_tab, "Memorisation path {theta}(e) by steps since training"),
        "residual": (resid_tab, "Residual memorisation {tau}(g, " + f"{last})"),
    }
    symbols = {
        "latex": {"tau": r"$\tau$", "theta": r"$\theta$"},
        "markdown": {"tau": "τ", "theta": "θ"},
    }
    for name, (frame, caption) in tables.items():
        for fmt, ext in (("latex", "tex"), ("markdown", "md")):
            p = out / "tables" / f"{name}.{ext}"
            text = render_frame(frame, fmt, digits=3, caption=caption.format(**symbols[fmt]))
            _atomic_text(text, p)
            files.append(p)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all

    e_show = [e for e in (0, 1, 2, 4, 8) if e * cfg.checkpoint_every <= last]
    path_at = post.set_index("event_time")
    headline: dict[str, Any] = {
        "outcome": cfg.outcome,
        "unit": unit,
        "n_params": n_params,
        "n_instances": instances.n,
        "n_trained_instances": tr.n,
        "n_never": va.n,
        "instantaneous_mean": float(inst["estimate"].mean()),
        "instantaneous_min_t": float(inst["statistic"].min()),
        "instantaneous_max_t": float(inst["statistic"].max()),
        "instantaneous_significant": int(((inst["conf_low"] > 0) | (inst["conf_high"] < 0)).sum()),
        "n_cohorts": len(inst),
        "event_path": {
            int(e * cfg.checkpoint_every): float(path_at.loc[e * cfg.checkpoint_every, "estimate"])
            for e in e_show
            if e * cfg.checkpoint_every in path_at.index
        },
        "residual_at": last,
        "residual_mean": float(resid["estimate"].mean()),
        "corr_instantaneous_lr": corr,
        "pretest_p_value": float(res.pretest()[1]),
        "crit_val": float(res.crit_val),
        "peak_rss_gb": _peak_rss_gb(),
        "reused_stages": reused,
    }
    report = out / "report.md"
    _atomic_text(_report(cfg, headline, inst, post, resid, timings, dp, corpus), report)
    files.append(report)
    meta = out / "run.json"
    _atomic_text(
        json.dumps(
            {
                "config": asdict(cfg),
                "timings_s": timings,
                "headline": headline,
                "corpus": dict(corpus.provenance),
                "data": dp,
                "provenance": dict(res.provenance),
                "files": [str(f.relative_to(out)) for f in files],
            },
            indent=1,
            default=str,
        ),
        meta,
    )
    files.append(meta)
    log(
        f"memorisation: instantaneous {headline['instantaneous_mean']:.2f} {unit} "
        f"(t {headline['instantaneous_min_t']:.1f} … {headline['instantaneous_max_t']:.1f}), "
        f"residual at step {last} {headline['residual_mean']:.2f}, corr with LR {corr:.2f}"
    )
    return LabDemoOutput(out_dir=out, files=tuple(files), timings=timings, headline=headline)


def _n_params(cfg: LabConfig, vocab: int) -> int:
    d, layers, ff = cfg.d_model, cfg.n_layer, 4 * cfg.d_model
    per_layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d)
    return 2 * vocab * d + layers * per_layer + 2 * d


def _report(
    cfg: LabConfig,
    h: dict[str, Any],
    inst: pd.DataFrame,
    path: pd.DataFrame,
    resid: pd.DataFrame,
    timings: dict[str, float],
    data: dict[str, Any],
    corpus: Any,
) -> str:
    unit = h["unit"]
    rows_inst = [
        f"| {int(r.group):,} | {r.estimate:.2f} | {r.std_error:.2f} | {r.statistic:.1f} | "
        f"{r.lr_mean:.2e} |"
        for r in inst.itertuples(index=False)
    ]
    picks = path[path["event_time"].isin([cfg.checkpoint_every * e for e in range(0, 64)])]
    rows_path = [
        f"| {int(r.event_time):,} | {r.estimate:.2f} | {r.std_error:.2f} | "
        f"[{r.conf_low:.2f}, {r.conf_high:.2f}] |"
        for r in picks.itertuples(index=False)
    ]
    ev = ", ".join(f"{k}: {v:.2f}" for k, v in h["event_path"].items())
    lines = [
        "# causalmem demo: memorisation profile of a mini-Pythia trained here",
        "",
        f"A {h['n_params'] / 1e6:.2f}M-parameter GPT-NeoX ({cfg.n_layer} layers, d {cfg.d_model}, "
        f"{cfg.n_head} heads, vocabulary {cfg.vocab_size}, context {cfg.seq_len}) was trained "
        f"from scratch for {cfg.steps} steps of {cfg.batch_size} sequences (AdamW, peak LR "
        f"{cfg.lr:g}, {cfg.warmup_frac:.0%} warm-up, cosine to {cfg.min_lr_ratio:.0%}) on "
        f"{corpus.provenance.get('source', cfg.corpus)} ({len(corpus):,} documents, "
        f"{data['tokens']:,} tokens). Each {cfg.seq_len}-token chunk is trained at most once, "
        "in a recorded order; held-out chunks are never trained.",
        "",
        f"Instances: per macro-batch (the {cfg.checkpoint_every} steps between two checkpoints) "
        f"{cfg.k} batches × {cfg.m} sequences ({h['n_trained_instances']:,} in "
        f"{h['n_cohorts']} cohorts) plus {h['n_never']:,} never-trained chunks. Outcome "
        f"`{cfg.outcome}` (log p(x) over {cfg.seq_len - 1} predicted tokens, {unit}); "
        "memorisation = ATT (sign-adjusted for surprisal-like outcomes). Estimator: Callaway & "
        f"Sant'Anna ATT(g, c), never-trained controls, varying base period, {cfg.biters} "
        f"multiplier draws, uniform {1 - cfg.alp:.0%} band (critical value {h['crit_val']:.2f}).",
        "",
        "## Headline",
        "",
        f"- Instantaneous memorisation τ(g, g): mean {h['instantaneous_mean']:.2f} {unit}; "
        f"significant in {h['instantaneous_significant']} of {h['n_cohorts']} cohorts; t from "
        f"{h['instantaneous_min_t']:.1f} to {h['instantaneous_max_t']:.1f}.",
        f"- Memorisation path θ(e) (steps since training): {ev}.",
        f"- Residual memorisation at the last checkpoint (step {h['residual_at']}): mean "
        f"{h['residual_mean']:.2f} {unit}.",
        f"- Correlation of τ(g, g) with the mean learning rate of its macro-batch: "
        f"{h['corr_instantaneous_lr']:.2f}.",
        f"- Pre-trend Wald test p-value: {h['pretest_p_value']:.3g}.",
        "",
        "![profile](figures/profile.png)",
        "",
        "![instantaneous memorisation and the learning rate](figures/instantaneous_lr.png)",
        "",
        "![memorisation path](figures/event_path.png)",
        "",
        "## Instantaneous memorisation by cohort",
        "",
        f"| cohort g | τ(g, g) ({unit}) | std. error | t | "
        f"mean LR in (g−{cfg.checkpoint_every}, g] |",
        "|---:|---:|---:|---:|---:|",
        *rows_inst,
        "",
        "## Memorisation path (event-study aggregation)",
        "",
        "| steps since training | θ(e) | std. error | band |",
        "|---:|---:|---:|---|",
        *rows_path,
        "",
        "## Timings (seconds, this machine)",
        "",
        *[
            f"- {k}: {v:.1f}"
            + (" (reused from an earlier run in this folder)" if k in h["reused_stages"] else "")
            for k, v in timings.items()
        ],
        f"- peak memory: {h['peak_rss_gb']:.2f} GB",
        "",
        "Files: `panel.parquet`, `scores/` (shards + manifest), `att_gt.parquet`, "
        "`aggte_dynamic.parquet`, `instantaneous.parquet`, `residual.parquet`, "
        "`lr_schedule.parquet`, `figures/*.png|html`, `tables/*.tex|md`, `lab/` (corpus "
        "provenance, tokenizer, recorded order, checkpoints), `run.json`.",
        "",
    ]
    del resid
    return "\n".join(lines)
