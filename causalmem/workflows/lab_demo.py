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

The stages are private functions sharing one :class:`_Run` (folder, settings, timings, reused
stages, written files): :func:`_prepare_data`, :func:`_train_model`, :func:`_sample`,
:func:`_score`, :func:`_estimate`, :func:`_write_tidy`, :func:`_write_figures`,
:func:`_write_tables`, :func:`_headline`, :func:`_write_report` and :func:`_write_run_json`.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.analysis.profile import to_memorisation
from causalmem.lab import _pipeline
from causalmem.lab.config import LabConfig
from lmecon.atomic import atomic_write_parquet, atomic_write_text
from lmecon.charts import save_chart

if TYPE_CHECKING:
    from causalmem.instances import Instances
    from causalmem.lab.corpus import Corpus
    from causalmem.lab.train import LabData, TrainConfig, TrainedRun
    from causalmem.panel.panel import Panel
    from causalmem.results.aggte import AggteResult
    from causalmem.results.attgt import AttGtResult

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
_FORMATS = ("png", "html")


def _memorisation(frame: pd.DataFrame, sign: int) -> pd.DataFrame:
    """Put tidy estimates on the memorisation scale (``profile.to_memorisation``)."""
    return to_memorisation(frame, 1 if sign >= 0 else -1)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _unit(cfg: LabConfig) -> str:
    """Return the unit of the headline outcome (``nats`` for log-probabilities, else its name)."""
    return "nats" if cfg.outcome == "logprob" else cfg.outcome


def _n_params(cfg: LabConfig, vocab: int) -> int:
    d, layers, ff = cfg.d_model, cfg.n_layer, 4 * cfg.d_model
    per_layer = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * ff + ff) + (ff * d + d)
    return 2 * vocab * d + layers * per_layer + 2 * d


@dataclass
class _Run:
    """State shared by the stages of one demo run (mutable: the stages record into it)."""

    out: Path
    cfg: LabConfig
    tcfg: TrainConfig
    log: Log
    progress: bool
    timings: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def lab(self) -> Path:
        """The lab folder (corpus provenance, tokenizer, recorded order, checkpoints)."""
        return self.out / "lab"


@dataclass(frozen=True)
class _Inputs:
    """Corpus, vocabulary size and packed split of a run."""

    corpus: Corpus
    vocab: int
    data: LabData


@dataclass(frozen=True)
class _Sample:
    """The analysed checkpoints, the instances and which (instance, checkpoint) pairs to score."""

    steps: npt.NDArray[np.int64]
    trained: Instances
    never: Instances
    instances: Instances
    plan: dict[int, npt.NDArray[np.bool_]]
    n_cells: int


@dataclass(frozen=True)
class _Estimates:
    """The fitted ATT(g, t) and its views on the memorisation scale."""

    res: AttGtResult
    cells: pd.DataFrame
    inst: pd.DataFrame
    path: pd.DataFrame
    post: pd.DataFrame
    resid: pd.DataFrame
    sched: pd.DataFrame
    corr: float
    last: int


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
    from causalmem.scoring.metrics import MEMORISATION_SIGN

    cfg = cfg or LabConfig()
    if cfg.epochs != 1:
        raise ValueError(
            f"epochs={cfg.epochs}: the lab demo is the one-epoch design (every sampled instance "
            "is trained once); for repeated exposure use "
            "causalmem.lab.ground_truth.reexposure_ground_truth and "
            "causalmem.estimators.reexposure.reexposure_att (analyses/09_reexposure)."
        )
    if cfg.outcome not in MEMORISATION_SIGN:
        raise ValueError(f"outcome={cfg.outcome!r}; use one of {sorted(MEMORISATION_SIGN)}.")
    run = _Run(Path(out_dir), cfg, cfg.train_config(), log, progress)
    run.lab.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    inputs = _prepare_data(run)
    trained, n_params = _train_model(run, inputs)
    sample = _sample(run, trained)
    panel = _score(run, trained, sample)
    est = _estimate(run, panel, sample.steps)
    t0 = time.perf_counter()
    _write_tidy(run, est)
    _write_figures(run, est)
    _write_tables(run, est)
    run.timings["report"] = time.perf_counter() - t0
    run.timings["total"] = time.perf_counter() - t_all
    headline = _headline(run, est, sample, n_params)
    _write_report(run, headline, est, inputs)
    _write_run_json(run, headline, est, inputs)
    log(
        f"memorisation: instantaneous {headline['instantaneous_mean']:.2f} {headline['unit']} "
        f"(t {headline['instantaneous_min_t']:.1f} … {headline['instantaneous_max_t']:.1f}), "
        f"residual at step {est.last} {headline['residual_mean']:.2f}, corr with LR "
        f"{est.corr:.2f}"
    )
    return LabDemoOutput(
        out_dir=run.out, files=tuple(run.files), timings=run.timings, headline=headline
    )


# ----------------------------------------------------------------------------- stages
def _prepare_data(run: _Run) -> _Inputs:
    """Stages 1-3: load the corpus, fit (or reuse) the tokenizer, pack and split the chunks."""
    cfg, log, timings = run.cfg, run.log, run.timings
    t0 = time.perf_counter()
    corpus, corpus_sha = _pipeline.load_documents(cfg, log)
    atomic_write_text(
        run.lab / "corpus.json",
        json.dumps(_pipeline.corpus_provenance(corpus, corpus_sha), indent=1),
    )
    timings["corpus"] = time.perf_counter() - t0
    log(
        f"corpus: {len(corpus):,} documents, {corpus.n_chars:,} characters "
        f"({corpus.provenance.get('source', cfg.corpus)})"
    )

    t0 = time.perf_counter()
    tokenizer, reuse = _pipeline.fit_tokenizer(
        corpus, corpus_sha, cfg.vocab_size, run.lab / "tokenizer"
    )
    if reuse:
        run.reused.append("tokenizer")
    vocab = int(tokenizer.get_vocab_size())
    timings["tokenizer"] = time.perf_counter() - t0
    log(f"tokenizer: byte-level BPE, {vocab:,} entries" + (" (reused)" if reuse else ""))

    t0 = time.perf_counter()
    data = _pipeline.split_data(tokenizer, corpus, cfg, run.tcfg)
    timings["data"] = time.perf_counter() - t0
    dp = data.provenance
    log(
        f"data: {dp['tokens']:,} tokens in {dp['unique_chunks']:,} unique {cfg.seq_len}-token "
        f"chunks: {dp['n_train']:,} trained once in a recorded order, {dp['n_validation']:,} "
        f"held out, {dp['n_reserve']:,} reserve"
    )
    return _Inputs(corpus, vocab, data)


def _train_model(run: _Run, inputs: _Inputs) -> tuple[TrainedRun, int]:
    """Stage 4: train (or resume) the model; return the run and its parameter count."""
    from causalmem.lab.train import train

    cfg = run.cfg
    t0 = time.perf_counter()
    trained = train(
        inputs.data, run.tcfg, run.lab, vocab_size=inputs.vocab, progress=run.progress, log=run.log
    )
    run.timings["training"] = time.perf_counter() - t0
    if trained.resumed_from == cfg.steps:
        run.reused.append("training")
    n_params = _n_params(cfg, inputs.vocab)
    run.log(
        f"training: {n_params / 1e6:.2f}M parameters, {cfg.steps} steps × {cfg.batch_size} × "
        f"{cfg.seq_len} tokens, {len(trained.checkpoint_steps)} checkpoints in "
        f"{run.timings['training']:.1f} s; final loss {float(trained.history['loss'].iloc[-1]):.3f}"
    )
    return trained, n_params


def _sample(run: _Run, trained: TrainedRun) -> _Sample:
    """Stage 5: the analysed grid, the sampled and never-trained instances, the scoring plan."""
    from causalmem.scoring.runner import scoring_plan

    cfg = run.cfg
    t0 = time.perf_counter()
    steps = _pipeline.analysis_steps(trained, cfg)
    sample = _pipeline.sample_instances(steps, cfg)
    tr, va, instances = _pipeline.lab_instances(trained, sample, cfg)
    plan = scoring_plan(instances, steps, pre_periods=cfg.pre_periods)
    run.timings["instances"] = time.perf_counter() - t0
    n_cells = int(sum(int(m.sum()) for m in plan.values()))
    run.log(
        f"instances: {tr.n:,} trained ({cfg.k} batches × {cfg.m} sequences per macro-batch, "
        f"{steps.size - 1} cohorts) + {va.n:,} never trained; {n_cells:,} of "
        f"{instances.n * steps.size:,} (instance, checkpoint) pairs needed"
    )
    return _Sample(steps, tr, va, instances, plan, n_cells)


def _score(run: _Run, trained: TrainedRun, sample: _Sample) -> Panel:
    """Stage 6: score the planned pairs (resumable) and write ``panel.parquet``."""
    from causalmem.panel.io import write_panel
    from causalmem.scoring.runner import read_manifest

    cfg, out, steps = run.cfg, run.out, sample.steps
    t0 = time.perf_counter()
    if (out / "scores" / "manifest.json").exists():
        done = {int(r["checkpoint"]["step"]) for r in read_manifest(out / "scores")["checkpoints"]}
        if set(steps.tolist()) <= done:
            run.reused.append("scoring")
    panel = _pipeline.score_run(
        trained,
        steps,
        sample.instances,
        out / "scores",
        cfg,
        plan=sample.plan,
        progress=run.progress,
    )
    seconds = time.perf_counter() - t0
    run.timings["scoring"] = seconds
    n_tokens = sample.n_cells * (cfg.seq_len - 1)
    run.log(
        f"scoring: {len(panel.frame):,} rows from {steps.size} checkpoints in "
        f"{seconds:.1f} s ({n_tokens / max(seconds, 1e-9):,.0f} predicted tokens/s)"
    )
    run.files.append(write_panel(panel, out / "panel.parquet"))
    return panel


def _fit(panel: Panel, cfg: LabConfig) -> tuple[AttGtResult, AggteResult]:
    """Fit ATT(g, t) on ``cfg.outcome`` and its dynamic aggregation."""
    from causalmem.estimators.aggte import aggte

    res = _pipeline.fit_att_gt(panel, cfg)
    with _pipeline.expected_empty_cells():
        dyn = aggte(res, "dynamic", na_rm=True)
    return res, dyn


def _estimate(run: _Run, panel: Panel, steps: npt.NDArray[np.int64]) -> _Estimates:
    """Stage 7: ATT(g, t), its views on the memorisation scale and the learning-rate link."""
    from causalmem.lab.train import cohort_lr, lr_schedule
    from causalmem.scoring.metrics import MEMORISATION_SIGN

    cfg = run.cfg
    t0 = time.perf_counter()
    res, dyn = _fit(panel, cfg)
    run.timings["estimation"] = time.perf_counter() - t0
    sign = int(MEMORISATION_SIGN[cfg.outcome])
    cells = _memorisation(res.tidy(), sign)
    inst = _memorisation(res.instantaneous(), sign)
    path = _memorisation(dyn.tidy(), sign)
    last = int(steps.max())
    resid = _memorisation(res.residual(at=last), sign)
    inst = inst.merge(cohort_lr(run.tcfg, steps), on="group", how="left")
    corr = (
        float(np.corrcoef(inst["estimate"], inst["lr_mean"])[0, 1])
        if len(inst) > 2
        else float("nan")
    )
    run.log(
        f"att_gt: {res.cells.n_cells:,} cells of {cfg.outcome} in "
        f"{run.timings['estimation']:.2f} s ({res.se_method} SEs, {res.band} band, critical "
        f"value {res.crit_val:.2f})"
    )
    post = path.dropna(subset=["event_time"])
    post = post[post["event_time"] >= 0]
    sched = lr_schedule(run.tcfg)
    return _Estimates(res, cells, inst, path, post, resid, sched, corr, last)


def _write_tidy(run: _Run, est: _Estimates) -> None:
    """Write the tidy estimates and the learning-rate schedule as parquet files."""
    tidy_files = {
        "att_gt.parquet": est.cells,
        "aggte_dynamic.parquet": est.path,
        "instantaneous.parquet": est.inst,
        "residual.parquet": est.resid,
        "lr_schedule.parquet": est.sched,
    }
    for name, frame in tidy_files.items():
        atomic_write_parquet(run.out / name, frame)
        run.files.append(run.out / name)


def _write_figures(run: _Run, est: _Estimates) -> None:
    """Draw the profile heat map, τ(g, g) against the learning rate and the event path."""
    from causalmem.presentation.charts import event_path, instantaneous_vs_lr, profile_heatmap

    cfg, unit, fig = run.cfg, _unit(run.cfg), run.out / "figures"
    run.files.extend(
        save_chart(
            profile_heatmap(
                est.cells,
                title=f"Memorisation profile ({cfg.outcome}, {unit})",
                value_title=f"memorisation ({unit})",
            ),
            fig / "profile",
            _FORMATS,
        )
    )
    run.files.extend(
        save_chart(
            instantaneous_vs_lr(est.inst, est.sched, value_title=f"τ(g, g) ({unit})"),
            fig / "instantaneous_lr",
            _FORMATS,
        )
    )
    run.files.extend(
        save_chart(
            event_path(est.path, value_title=f"memorisation ({unit})"),
            fig / "event_path",
            _FORMATS,
        )
    )


_TABLE_COLUMNS = ["estimate", "std_error", "statistic", "conf_low", "conf_high"]
_SYMBOLS = {
    "latex": {"tau": r"$\tau$", "theta": r"$\theta$"},
    "markdown": {"tau": "τ", "theta": "θ"},
}


def _table_frames(cfg: LabConfig, est: _Estimates) -> dict[str, tuple[pd.DataFrame, str]]:
    """Return the report tables (cohorts, event times as text) and their caption templates."""
    cols = _TABLE_COLUMNS
    inst, post, resid = est.inst, est.post, est.resid
    inst_tab = inst[["group", *cols]].assign(group=inst["group"].astype(int).astype(str))
    inst_tab["mean LR"] = inst["lr_mean"].map("{:.2e}".format)
    path_tab = post[["event_time", *cols]].assign(
        event_time=post["event_time"].astype(int).astype(str)
    )
    resid_tab = resid[["group", *cols]].assign(group=resid["group"].astype(int).astype(str))
    return {
        "instantaneous": (inst_tab, "Instantaneous memorisation {tau}(g, g) of " + cfg.outcome),
        "event_path": (path_tab, "Memorisation path {theta}(e) by steps since training"),
        "residual": (resid_tab, "Residual memorisation {tau}(g, " + f"{est.last})"),
    }


def _write_tables(run: _Run, est: _Estimates) -> None:
    """Write the instantaneous, event-path and residual tables as LaTeX and Markdown."""
    from causalmem.results.base import render_frame

    for name, (frame, caption) in _table_frames(run.cfg, est).items():
        for fmt, ext in (("latex", "tex"), ("markdown", "md")):
            p = run.out / "tables" / f"{name}.{ext}"
            text = render_frame(frame, fmt, digits=3, caption=caption.format(**_SYMBOLS[fmt]))
            atomic_write_text(p, text)
            run.files.append(p)


def _headline(run: _Run, est: _Estimates, sample: _Sample, n_params: int) -> dict[str, Any]:
    """Return the headline numbers (also written to ``run.json`` and quoted by the report)."""
    cfg, inst, every = run.cfg, est.inst, run.cfg.checkpoint_every
    e_show = [e for e in (0, 1, 2, 4, 8) if e * every <= est.last]
    path_at = est.post.set_index("event_time")["estimate"]
    return {
        "outcome": cfg.outcome,
        "unit": _unit(cfg),
        "n_params": n_params,
        "n_instances": sample.instances.n,
        "n_trained_instances": sample.trained.n,
        "n_never": sample.never.n,
        "instantaneous_mean": float(inst["estimate"].mean()),
        "instantaneous_min_t": float(inst["statistic"].min()),
        "instantaneous_max_t": float(inst["statistic"].max()),
        "instantaneous_significant": int(((inst["conf_low"] > 0) | (inst["conf_high"] < 0)).sum()),
        "n_cohorts": len(inst),
        "event_path": {
            int(e * every): float(path_at.loc[e * every])
            for e in e_show
            if e * every in path_at.index
        },
        "residual_at": est.last,
        "residual_mean": float(est.resid["estimate"].mean()),
        "corr_instantaneous_lr": est.corr,
        "pretest_p_value": float(est.res.pretest()[1]),
        "crit_val": float(est.res.crit_val),
        "peak_rss_gb": _peak_rss_gb(),
        "reused_stages": run.reused,
    }


def _write_report(run: _Run, headline: dict[str, Any], est: _Estimates, inputs: _Inputs) -> None:
    """Write ``report.md``."""
    report = run.out / "report.md"
    text = _report(
        run.cfg, headline, est.inst, est.post, run.timings, inputs.data.provenance, inputs.corpus
    )
    atomic_write_text(report, text)
    run.files.append(report)


def _write_run_json(run: _Run, headline: dict[str, Any], est: _Estimates, inputs: _Inputs) -> None:
    """Write ``run.json``: config, timings, headline, provenance and the files written."""
    meta = run.out / "run.json"
    body = {
        "config": asdict(run.cfg),
        "timings_s": run.timings,
        "headline": headline,
        "corpus": dict(inputs.corpus.provenance),
        "data": inputs.data.provenance,
        "provenance": dict(est.res.provenance),
        "files": [str(f.relative_to(run.out)) for f in run.files],
    }
    atomic_write_text(meta, json.dumps(body, indent=1, default=str))
    run.files.append(meta)


# ----------------------------------------------------------------------------- report.md
def _report(
    cfg: LabConfig,
    h: dict[str, Any],
    inst: pd.DataFrame,
    path: pd.DataFrame,
    timings: dict[str, float],
    data: dict[str, Any],
    corpus: Corpus,
) -> str:
    lines = [
        *_report_intro(cfg, h, data, corpus),
        *_report_headline(h),
        *_report_tables(cfg, h, inst, path),
        *_report_footer(h, timings),
    ]
    return "\n".join(lines)


def _report_intro(
    cfg: LabConfig, h: dict[str, Any], data: dict[str, Any], corpus: Corpus
) -> list[str]:
    """Title, the model and corpus, the instances, outcome and estimator."""
    return [
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
        f"`{cfg.outcome}` (log p(x) over {cfg.seq_len - 1} predicted tokens, {h['unit']}); "
        "memorisation = ATT (sign-adjusted for surprisal-like outcomes). Estimator: Callaway & "
        f"Sant'Anna ATT(g, c), never-trained controls, varying base period, {cfg.biters} "
        f"multiplier draws, uniform {1 - cfg.alp:.0%} band (critical value {h['crit_val']:.2f}).",
        "",
    ]


def _report_headline(h: dict[str, Any]) -> list[str]:
    """Return the headline bullets and the three figures of the report."""
    unit = h["unit"]
    ev = ", ".join(f"{k}: {v:.2f}" for k, v in h["event_path"].items())
    return [
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
    ]


def _rows(frame: pd.DataFrame) -> Iterator[Any]:
    """Iterate over the rows of ``frame`` as named tuples (typed loosely for the f-strings)."""
    return iter(frame.itertuples(index=False))


def _report_tables(
    cfg: LabConfig, h: dict[str, Any], inst: pd.DataFrame, path: pd.DataFrame
) -> list[str]:
    """Return the instantaneous-memorisation and memorisation-path tables (Markdown)."""
    rows_inst = [
        f"| {int(r.group):,} | {r.estimate:.2f} | {r.std_error:.2f} | {r.statistic:.1f} | "
        f"{r.lr_mean:.2e} |"
        for r in _rows(inst)
    ]
    picks = path[path["event_time"].isin([cfg.checkpoint_every * e for e in range(0, 64)])]
    rows_path = [
        f"| {int(r.event_time):,} | {r.estimate:.2f} | {r.std_error:.2f} | "
        f"[{r.conf_low:.2f}, {r.conf_high:.2f}] |"
        for r in _rows(picks)
    ]
    return [
        "## Instantaneous memorisation by cohort",
        "",
        f"| cohort g | τ(g, g) ({h['unit']}) | std. error | t | "
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
    ]


def _report_footer(h: dict[str, Any], timings: dict[str, float]) -> list[str]:
    """Stage timings, peak memory and the list of files."""
    return [
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
