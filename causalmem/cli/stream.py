"""Command-line commands: issue 15: streamed fitting (``causalmem fit-stream``).

``causalmem fit-stream DATA --out DIR [--unit U --step T --cohort G --outcome Y]`` fits ATT(g, t)
and the four aggregations on a parquet file or folder of shards without loading it: the role
columns are read in batches of ``--batch-rows`` rows (sorted by unit) and only per-cohort
statistics are kept. Roles default to the schema stored in a panel file written by causalmem
(``write_panel``), else to ``unit``/``step``/``cohort``/``y``. A progress bar shows units read,
rows/s and the ETA, and the command states its memory bound before it starts.
:func:`run_fit_stream` is the implementation (also usable as ``causalmem fit --stream``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from causalmem._types import BasePeriod, ControlGroup, check_literal
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
from lmecon.cli import CliError


def memory_bound_bytes(batch_rows: int, n_cols: int, t_len: int, biters: int) -> int:
    """Upper bound of the streamed fit's working memory (bytes), excluding the interpreter.

    A batch: ``batch_rows`` rows of ``n_cols`` columns as Arrow and numpy (x 3, float64) plus
    its unit x step matrices (x 3); statistics: ``(T + 1) T (T + B)`` floats (x 2 while
    recentring); the cell draws ``T^2 B`` floats (x 2 for the aggregations).
    """
    batch = batch_rows * 8 * (3 * n_cols + 3)
    stats = 2 * (t_len + 1) * t_len * (t_len + biters) * 8
    draws = 2 * t_len * t_len * biters * 8
    return int(batch + stats + draws)


def _stored_roles(data: Path) -> dict[str, Any]:
    """Roles from the causalmem schema of a panel file (or the first file of a folder)."""
    from causalmem.errors import PanelSchemaError
    from causalmem.panel.io import _payload, _read_parquet_metadata

    first = data if data.is_file() else next(iter(sorted(data.rglob("*.parquet"))), None)
    if first is None:
        return {}
    try:
        sch = _payload(first, _read_parquet_metadata(first))["schema"]
    except (PanelSchemaError, OSError, ValueError):
        return {}
    return {
        "unit": sch.get("unit"),
        "step": sch.get("step"),
        "cohort": sch.get("cohort"),
        "outcome": (sch.get("outcomes") or [None])[0],
        "weights": sch.get("weights"),
    }


def run_fit_stream(
    data: Path,
    out: Path,
    *,
    console: Console,
    unit: str | None = None,
    step: str | None = None,
    cohort: str | None = None,
    outcome: str | None = None,
    weights: str | None = None,
    unweighted: bool = False,
    control_group: str = "nevertreated",
    base_period: str = "varying",
    anticipation: int = 0,
    drop_always_treated: bool = False,
    biters: int = 1000,
    cband: bool = True,
    alp: float = 0.05,
    seed: int = 1234,
    batch_rows: int = 1 << 20,
    ray_address: str | None = None,
    progress: bool = True,
) -> int:
    """Stream-fit ``data`` and write the cells and four aggregations to ``out``.

    Returns the number of files written. Raises :class:`lmecon.cli.CliError` on bad options.
    """
    import pyarrow.dataset as ds
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from causalmem.cli import _write_fit
    from causalmem.estimators.streaming import StreamProgress, att_gt_stream

    if not data.exists():
        raise CliError(f"No parquet file or folder at {str(data)!r}.")
    if batch_rows < 1:
        raise CliError(f"--batch-rows must be positive, got {batch_rows}.")
    cg: ControlGroup = check_literal("control_group", control_group, ControlGroup)
    bp: BasePeriod = check_literal("base_period", base_period, BasePeriod)
    stored = _stored_roles(data)
    unit = unit or stored.get("unit") or "unit"
    step = step or stored.get("step") or "step"
    cohort = cohort or stored.get("cohort") or "cohort"
    outcome = outcome or stored.get("outcome") or "y"
    weights = None if unweighted else (weights or stored.get("weights"))
    dset = ds.dataset(str(data), format="parquet")
    total = int(dset.count_rows())
    names = [unit, step, cohort, outcome] + ([weights] if weights else [])
    missing = [c for c in names if c not in dset.schema.names]
    if missing:
        raise CliError(
            f"Columns {missing} are not in {str(data)!r}; its columns are "
            f"{dset.schema.names[:30]}. Name them with --unit/--step/--cohort/--outcome."
        )
    first = next(iter(dset.to_batches(columns=[unit], batch_size=4096)), None)
    t_guess = 2
    if first is not None and first.num_rows:
        u = first.column(0).to_numpy(zero_copy_only=False)
        t_guess = max(int((u == u[0]).sum()), 2)
    bound = memory_bound_bytes(min(batch_rows, total), len(names), t_guess, max(biters, 0))
    console.print(
        f"streaming {total:,} rows of {str(data)!r} in batches of {batch_rows:,} rows; "
        f"memory bound ~{bound / 2**30:.2f} GiB beyond the interpreter "
        f"(~{t_guess} steps, {biters} draws)"
    )
    opts: dict[str, Any] = dict(
        control_group=cg,
        anticipation=anticipation,
        base_period=bp,
        weightsname=weights,
        bstrap=biters > 0,
        biters=max(biters, 1),
        cband=cband,
        alp=alp,
        seed=seed,
        drop_always_treated=drop_always_treated,
        batch_rows=batch_rows,
    )
    if ray_address is not None:
        from causalmem.estimators.ray_engine import att_gt_ray

        address = None if ray_address == "local" else ray_address
        res = att_gt_ray(data, outcome, step, unit, cohort, address=address, **opts)
    else:
        bar = Progress(
            TextColumn("units {task.fields[units]:,}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows, {task.fields[rate]:,.0f} rows/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not progress,
        )
        with bar:
            task = bar.add_task("stream", total=total, units=0, rate=0.0)

            def report(p: StreamProgress) -> None:
                bar.update(task, completed=p.rows, units=p.units, rate=p.rows_per_s)

            res = att_gt_stream(str(data), outcome, step, unit, cohort, progress=report, **opts)
    dyn: dict[str, float | None] = {
        "min_e": float("-inf"),
        "max_e": float("inf"),
        "balance_e": None,
    }
    n_files = _write_fit(res, out, dyn)
    console.print(
        f"fitted {res.cells.n_cells:,} cells of {outcome!r} on {res.n_units:,} units "
        f"({res.se_method} SEs, {res.band} band); wrote {n_files} files to {out}/"
    )
    return n_files


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    from causalmem.cli import _threads, console

    @app.command("fit-stream")
    def fit_stream(
        data: Annotated[Path, typer.Argument(help="Parquet file or folder of parquet shards.")],
        out: Annotated[Path, typer.Option(help="Output folder.")],
        unit: Annotated[
            str | None, typer.Option(help="Unit column (rows sorted by it; default: stored).")
        ] = None,
        step: Annotated[str | None, typer.Option(help="Step column.")] = None,
        cohort: Annotated[
            str | None, typer.Option(help="Cohort column (NA = never treated).")
        ] = None,
        outcome: Annotated[str | None, typer.Option(help="Outcome column.")] = None,
        weights: Annotated[str | None, typer.Option(help="Weight column.")] = None,
        unweighted: Annotated[
            bool, typer.Option("--unweighted", help="Ignore the stored weights.")
        ] = False,
        control_group: ControlGroupOpt = "nevertreated",
        base_period: BasePeriodOpt = "varying",
        anticipation: AnticipationOpt = 0,
        drop_always_treated: DropAlwaysTreatedOpt = False,
        biters: BitersOpt = 1000,
        cband: CbandOpt = True,
        alp: AlpOpt = 0.05,
        seed: SeedOpt = 1234,
        batch_rows: Annotated[
            int, typer.Option(help="Rows read per batch (bounds the memory).")
        ] = 1 << 20,
        ray_address: Annotated[
            str | None,
            typer.Option(
                help="Run the map step as Ray tasks on this cluster ('local' for a local Ray)."
            ),
        ] = None,
        progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    ) -> None:
        """Fit ATT(g,t) and the four aggregations by streaming a parquet dataset.

        The rows must be sorted by unit across files (checked). Balanced panels without
        covariates are streamed; unbalanced ones fall back to the in-memory engine (with a
        message). Results equal ``causalmem fit`` on the same data up to rounding (the bootstrap
        multipliers are keyed by seed and unit id).
        """
        _threads()
        run_fit_stream(
            data,
            out,
            console=console,
            unit=unit,
            step=step,
            cohort=cohort,
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
            batch_rows=batch_rows,
            ray_address=ray_address,
            progress=progress,
        )
