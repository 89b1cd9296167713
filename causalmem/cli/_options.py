"""Command-line options shared by several commands (one declaration, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = [
    "AlpOpt",
    "AnticipationOpt",
    "BasePeriodOpt",
    "BitersOpt",
    "CbandOpt",
    "ControlGroupOpt",
    "DropAlwaysTreatedOpt",
    "SeedOpt",
]

ControlGroupOpt = Annotated[str, typer.Option(help="nevertreated | notyettreated")]
BasePeriodOpt = Annotated[str, typer.Option(help="varying | universal")]
AnticipationOpt = Annotated[int, typer.Option(help="Steps of anticipation.")]
DropAlwaysTreatedOpt = Annotated[
    bool,
    typer.Option("--drop-always-treated", help="Drop units treated at or before the first step."),
]
BitersOpt = Annotated[int, typer.Option(help="Bootstrap draws (0: analytic SEs).")]
CbandOpt = Annotated[bool, typer.Option(help="Uniform (sup-t) confidence band.")]
AlpOpt = Annotated[float, typer.Option(help="Significance level.")]
SeedOpt = Annotated[int, typer.Option(help="Bootstrap seed.")]
