"""The simulated variant of the demo (``causalmem demo --simulated``): a Pythia-shaped panel.

``causalmem demo`` runs the lab demo (:mod:`causalmem.workflows.lab_demo`: a mini-Pythia trained
here, scored and estimated). This variant needs no torch and runs in seconds: it simulates a
panel with the paper's shape (Pythia's 154 checkpoints, 143 macro-batch cohorts of 100 instances
plus 2,000 never-trained validation instances) and a known memorisation profile, estimates it,
and reports how well the estimates recover the truth. Paths are chosen by the caller (the CLI,
``analyses/01_simulated_profile``); this module only writes under the directory it is given.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from causalmem.estimators.aggte import aggte
from causalmem.estimators.att_gt import att_gt
from causalmem.panel import pythia
from causalmem.panel.io import read_panel, write_panel
from causalmem.panel.panel import Panel
from causalmem.panel.simulate import SimulatedPanel, simulate_panel
from causalmem.results.aggte import AggteResult
from causalmem.results.attgt import AttGtResult
from lmecon.atomic import atomic_write_parquet, atomic_write_text


@dataclass(frozen=True)
class SimulatedDemoConfig:
    """Settings of the demo (all have paper-like defaults; a TOML file may override them)."""

    units_per_cohort: int = 100
    n_never: int = 2000
    cohort_every: int = 1000
    last_cohort: int = 143_000
    instantaneous: float = 0.40  # drop in mean surprisal (nats/token) right after training
    residual: float = 0.05  # long-run drop
    decay_steps: float = 20_000.0
    noise_sd: float = 0.30
    unit_sd: float = 1.0
    residual_at: int = pythia.PAPER_EPOCH_CUTOFF
    biters: int = 1000
    alp: float = 0.05
    seed: int = 1234
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: str | Path) -> SimulatedDemoConfig:
        """Read a ``[demo]`` table from a TOML file; unknown keys are an error."""
        data = tomllib.loads(Path(path).read_text()).get("demo", {})
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown [demo] keys {unknown}; known: {sorted(known)}.")
        return cls(**data)


@dataclass(frozen=True)
class DemoOutput:
    """Where the demo wrote its artefacts, and its headline numbers."""

    out_dir: Path
    files: tuple[Path, ...]
    timings: dict[str, float]
    recovery: dict[str, float]


def _effect(cfg: SimulatedDemoConfig) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    def att(g: np.ndarray, t: np.ndarray, e: np.ndarray) -> np.ndarray:
        k = np.asarray(t, dtype=float) - np.asarray(g, dtype=float)
        drop = (cfg.instantaneous - cfg.residual) * np.exp(-k / cfg.decay_steps) + cfg.residual
        return np.where(np.asarray(e) >= 0, -drop, 0.0)

    return att


def run_demo(
    out_dir: str | Path,
    cfg: SimulatedDemoConfig | None = None,
    log: Callable[[str], None] = print,
) -> DemoOutput:
    """Simulate, store, reload, estimate and report a memorisation profile.

    Parameters
    ----------
    out_dir
        Output folder (created). Existing files of the same names are replaced atomically.
    cfg
        Settings; defaults reproduce the paper's panel shape.
    log
        Progress callback (the CLI passes a rich console printer).

    Returns
    -------
    DemoOutput
    """
    cfg = cfg or SimulatedDemoConfig()
    out = Path(out_dir)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    files: list[Path] = []

    sim, panel = _simulate(cfg, timings, log)
    t0 = time.perf_counter()
    path = write_panel(panel, out / "panel.parquet")
    files.append(Path(path))
    panel = read_panel(path)
    timings["write_read_panel"] = time.perf_counter() - t0
    res, aggs = _estimate(panel, cfg, timings, log)

    cells = res.tidy().merge(
        sim.truth[["group", "time", "att"]].rename(columns={"att": "truth"}),
        on=["group", "time"],
        how="left",
    )
    _write_estimates(out, cells, aggs, files)
    recovery = _recovery(cells)
    views = {
        "instantaneous": res.instantaneous(),
        "residual": res.residual(at=cfg.residual_at),
        "persistent": aggs["dynamic"].tidy(),
    }
    _write_tables(out, cfg, views, aggs, files)
    _write_summary(out, res, aggs, files)
    _write_text(out / "report.md", _report(cfg, res, aggs, views, recovery, timings), files)
    run_json = {
        "config": asdict(cfg),
        "timings_s": timings,
        "recovery": recovery,
        "provenance": dict(res.provenance),
        "files": [str(f.name) for f in files],
    }
    _write_text(out / "run.json", json.dumps(run_json, indent=1, default=str), files)
    log(
        f"recovery vs the simulated truth: bias {recovery['bias']:+.4f}, RMSE "
        f"{recovery['rmse']:.4f}, uniform-band coverage "
        f"{recovery['uniform_band_coverage_post']:.3f}"
    )
    return DemoOutput(out_dir=out, files=tuple(files), timings=timings, recovery=recovery)


# ----------------------------------------------------------------------------- stages
def _simulate(
    cfg: SimulatedDemoConfig, timings: dict[str, float], log: Callable[[str], None]
) -> tuple[SimulatedPanel, Panel]:
    """Simulate the Pythia-shaped panel with the known profile; return it and its Panel."""
    t0 = time.perf_counter()
    steps = [int(s) for s in pythia.pythia_checkpoint_steps(include_log_spaced=True)]
    cohorts = list(range(cfg.cohort_every, cfg.last_cohort + 1, cfg.cohort_every))
    sim = simulate_panel(
        cohorts=cohorts,
        units_per_cohort=cfg.units_per_cohort,
        n_never=cfg.n_never,
        steps=steps,
        att=_effect(cfg),
        unit_sd=cfg.unit_sd,
        noise_sd=cfg.noise_sd,
        outcome="sup_seq",
        seed=cfg.seed,
    )
    panel = Panel.from_frame(
        sim.frame,
        unit="unit",
        step="step",
        cohort="cohort",
        outcomes=("sup_seq",),
        meta={"source": "causalmem demo: simulated Pythia-shaped panel", "config": asdict(cfg)},
    )
    timings["simulate"] = time.perf_counter() - t0
    log(
        f"simulated {panel.n_units:,} instances x {len(steps)} checkpoints "
        f"({len(panel.frame):,} rows, {len(cohorts)} cohorts + {cfg.n_never:,} never trained)"
    )
    return sim, panel


def _estimate(
    panel: Panel,
    cfg: SimulatedDemoConfig,
    timings: dict[str, float],
    log: Callable[[str], None],
) -> tuple[AttGtResult, dict[str, AggteResult]]:
    """Fit ATT(g, t) and its four aggregations (timed)."""
    t0 = time.perf_counter()
    res = att_gt(panel, biters=cfg.biters, alp=cfg.alp, seed=cfg.seed)
    timings["att_gt"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    aggs = {k: aggte(res, k) for k in ("simple", "dynamic", "group", "calendar")}
    timings["aggte_all_four"] = time.perf_counter() - t0
    log(
        f"att_gt: {res.cells.n_cells:,} cells in {timings['att_gt']:.2f} s "
        f"({res.se_method} SEs, {res.band} band, critical value {res.crit_val:.2f}); "
        f"four aggregations in {timings['aggte_all_four']:.2f} s"
    )
    return res, aggs


def _recovery(cells: pd.DataFrame) -> dict[str, float]:
    """Compare the estimated cells with the simulated truth: bias, RMSE, band coverage."""
    post = cells[cells["post"]]
    inside = (post["conf_low"] <= post["truth"]) & (post["truth"] <= post["conf_high"])
    return {
        "cells_post": float(len(post)),
        "bias": float((post["estimate"] - post["truth"]).mean()),
        "rmse": float(np.sqrt(((post["estimate"] - post["truth"]) ** 2).mean())),
        "uniform_band_coverage_post": float(inside.mean()),
        "all_cells_inside_band": float(
            ((cells["conf_low"] <= cells["truth"]) & (cells["truth"] <= cells["conf_high"]))[
                ~cells["reference"]
            ].all()
        ),
    }


# ----------------------------------------------------------------------------- outputs
def _write_text(path: Path, text: str, files: list[Path]) -> None:
    """Write ``text`` to ``path`` atomically and record the file."""
    atomic_write_text(path, text)
    files.append(path)


def _write_estimates(
    out: Path, cells: pd.DataFrame, aggs: dict[str, AggteResult], files: list[Path]
) -> None:
    """Write the tidy cells (with the truth) and the four aggregations as parquet files."""
    cells_path = out / "att_gt.parquet"
    atomic_write_parquet(cells_path, cells)
    files.append(cells_path)
    for name, agg in aggs.items():
        p = out / f"aggte_{name}.parquet"
        atomic_write_parquet(p, agg.tidy())
        files.append(p)


def _write_tables(
    out: Path,
    cfg: SimulatedDemoConfig,
    views: dict[str, pd.DataFrame],
    aggs: dict[str, AggteResult],
    files: list[Path],
) -> None:
    """Write the instantaneous and residual cells and the aggregations as LaTeX and Markdown."""
    from causalmem.results.base import render_frame

    cols = ["group", "estimate", "std_error", "conf_low", "conf_high"]
    tables = {
        "att_gt_instantaneous": (
            views["instantaneous"][cols],
            "Instantaneous memorisation cells ATT(g, g)",
        ),
        "att_gt_residual": (
            views["residual"][cols],
            f"Residual memorisation ATT(g, {cfg.residual_at})",
        ),
    }
    for name, (frame, caption) in tables.items():
        for fmt, ext in (("latex", "tex"), ("markdown", "md")):
            text = render_frame(frame.head(20), fmt, caption=caption)
            _write_text(out / "tables" / f"{name}.{ext}", text, files)
    for name, agg in aggs.items():
        for fmt, ext in (("latex", "tex"), ("markdown", "md")):
            text = agg.to_latex() if fmt == "latex" else agg.to_markdown()
            _write_text(out / "tables" / f"aggte_{name}.{ext}", text, files)


def _write_summary(
    out: Path, res: AttGtResult, aggs: dict[str, AggteResult], files: list[Path]
) -> None:
    """Write ``summary.txt``: the head of the ATT(g, t) summary and three aggregations."""
    text = (
        res.summary().split("\n---")[0][:4000]
        + "\n...\n\n"
        + "\n\n".join(a.summary() for k, a in aggs.items() if k != "dynamic")
    )
    _write_text(out / "summary.txt", text, files)


def _report(
    cfg: SimulatedDemoConfig,
    res: Any,
    aggs: dict[str, Any],
    views: dict[str, pd.DataFrame],
    recovery: dict[str, float],
    timings: dict[str, float],
) -> str:
    dyn = aggs["dynamic"].tidy().dropna(subset=["event_time"]).set_index("event_time")
    picks = [e for e in (0, 1000, 2000, 4000, 8000, 16000, 32000, 64000) if e in dyn.index]
    inst = views["instantaneous"]
    lines = [
        "# causalmem demo: memorisation profile of a simulated Pythia-shaped panel",
        "",
        f"Panel: {res.n_units:,} instances x {res.cells.tlist.size} checkpoints; "
        f"{res.cells.glist.size} treatment cohorts (macro-batches) + {cfg.n_never:,} never-trained "
        "validation instances. Outcome `sup_seq` = mean per-token surprisal; memorisation = -ATT.",
        "",
        f"Estimator: Callaway & Sant'Anna ATT(g,t), never-treated controls, varying base period; "
        f"{res.se_method} SEs ({cfg.biters} Rademacher multiplier draws), {res.band} "
        f"{int(100 * (1 - cfg.alp))}% band, critical value {res.crit_val:.3f}.",
        "",
        "## Headline numbers",
        "",
        f"- Instantaneous memorisation (mean of -ATT(g,g) over cohorts): "
        f"{-inst['estimate'].mean():.4f} (truth {cfg.instantaneous:.4f}); significant in "
        f"{int((inst['conf_high'] < 0).sum())} of {len(inst)} cohorts (uniform band).",
        f"- Residual memorisation at step {cfg.residual_at:,}: mean -ATT "
        f"{-views['residual']['estimate'].mean():.4f} over {len(views['residual'])} cohorts.",
        f"- Overall (simple) ATT: {aggs['simple'].overall_estimate:.4f} "
        f"(SE {aggs['simple'].overall_std_error:.4f}).",
        "",
        "Persistent memorisation (event-study aggregation, -ATT by steps since training):",
        "",
        "| steps after training | memorisation | std. error |",
        "|---:|---:|---:|",
        *[
            f"| {int(e):,} | {-dyn.loc[e, 'estimate']:.4f} | {dyn.loc[e, 'std_error']:.4f} |"
            for e in picks
        ],
        "",
        "## Recovery of the simulated truth",
        "",
        f"- Post-treatment cells: {int(recovery['cells_post']):,}; bias "
        f"{recovery['bias']:+.5f}; RMSE {recovery['rmse']:.5f}.",
        f"- Share of post-treatment cells whose uniform band covers the truth: "
        f"{recovery['uniform_band_coverage_post']:.3f}.",
        "",
        "## Timings (seconds, this machine)",
        "",
        *[f"- {k}: {v:.2f}" for k, v in timings.items()],
        "",
        "Files: `panel.parquet` (schema and provenance in the parquet metadata), `att_gt.parquet`"
        " (tidy cells with the truth), `aggte_*.parquet`, `tables/*.tex|md`, `summary.txt`, "
        "`run.json`.",
        "",
    ]
    return "\n".join(lines)
