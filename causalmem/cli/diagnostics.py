"""Command-line commands: pre-trend power and TWFE diagnostics (issue 14).

``causalmem pretrends SOURCE``: Roth (2022) power of the pre-test, on a JSON file of an event
study (``betahat``, ``sigma``, ``event_time``, optional ``reference_period``, as R
``pretrends``) or on a stored panel (CS event study with a universal base period, fitted here).
``causalmem bacon PANEL``: Goodman-Bacon decomposition and the dCDH weights of the static TWFE
coefficient.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    from causalmem.cli import CliError, _threads, console

    @app.command()
    def pretrends(
        source: Annotated[
            Path,
            typer.Argument(
                help="JSON with betahat, sigma, event_time [, reference_period], or a panel."
            ),
        ],
        outcome: Annotated[
            str | None, typer.Option(help="Panel outcome (default: the first).")
        ] = None,
        target_power: Annotated[
            float | None,
            typer.Option(help="Hypothesised linear trend: the slope detected with this power."),
        ] = None,
        slope: Annotated[
            float | None, typer.Option(help="Hypothesised linear trend: its slope.")
        ] = None,
        test: Annotated[str, typer.Option(help="Pre-test: 'pointwise' (Roth) or 'wald'.")] = (
            "pointwise"
        ),
        alp: Annotated[float, typer.Option(help="Level of the pre-test.")] = 0.05,
        min_e: Annotated[
            float, typer.Option(help="Panel: smallest event time (checkpoints).")
        ] = -20.0,
        max_e: Annotated[
            float, typer.Option(help="Panel: largest event time (checkpoints).")
        ] = 20.0,
        out: Annotated[
            Path | None, typer.Option(help="Write the tidy table to this CSV file.")
        ] = None,
    ) -> None:
        """Power of the pre-trend test against a linear trend, and bias after pre-testing.

        Prints the slopes detected with 50 % and 80 % power, the power against the hypothesised
        trend (default: the 50 %-power slope), the Bayes factor, the likelihood ratio, and the
        mean and coverage of each coefficient conditional on passing the pre-test.
        """
        _threads()
        from causalmem.analysis.pretrends import pretrends_power

        if not source.exists():
            raise CliError(f"{str(source)!r} does not exist; pass a JSON file or a panel.")
        if source.suffix.lower() == ".json":
            try:
                spec = json.loads(source.read_text())
                args = (spec["betahat"], spec["sigma"])
                et, ref = spec["event_time"], spec.get("reference_period", -1)
            except (KeyError, ValueError, TypeError) as exc:
                raise CliError(
                    f"{str(source)!r} must be JSON with betahat (list), sigma (list of lists), "
                    f"event_time (list) and optionally reference_period: {exc}"
                ) from exc
            res = pretrends_power(
                args[0],
                args[1],
                event_time=et,
                reference_period=ref,
                target_power=target_power,
                slope=slope,
                alp=alp,
                test=test,  # type: ignore[arg-type]
            )
        else:
            from causalmem.estimators import aggte, att_gt
            from causalmem.panel.io import read_panel

            panel = read_panel(source)
            fit = att_gt(panel, outcome, base_period="universal", bstrap=False)
            dyn = aggte(
                fit, type="dynamic", min_e=min_e, max_e=max_e, bstrap=False, event_time="periods"
            )
            res = pretrends_power(
                dyn,
                target_power=target_power,
                slope=slope,
                alp=alp,
                test=test,  # type: ignore[arg-type]
            )
        console.print(res.summary())
        if out is not None:
            from lmecon.atomic import atomic_write_text

            atomic_write_text(out, res.tidy().to_csv(index=False))
            console.print(f"wrote {out}")

    @app.command()
    def bacon(
        panel: Annotated[Path, typer.Argument(help="Stored panel (parquet).")],
        outcome: Annotated[str | None, typer.Option(help="Outcome (default: the first).")] = None,
        out: Annotated[
            Path | None,
            typer.Option(help="Write the 2x2 comparisons (and OUT stem + _weights) as CSV."),
        ] = None,
    ) -> None:
        """Goodman-Bacon decomposition and dCDH weights of the static TWFE coefficient.

        The decomposition needs a balanced panel (it is refused otherwise, as by R
        bacondecomp); the weights of de Chaisemartin & D'Haultfoeuille are computed on any
        panel.
        """
        _threads()
        from causalmem.errors import UnbalancedPanelError
        from causalmem.estimators.diagnostics import bacon_decomposition, twfe_weights
        from causalmem.panel.io import read_panel

        p = read_panel(panel)
        w = twfe_weights(p, outcome)
        try:
            b = bacon_decomposition(p, outcome)
        except UnbalancedPanelError as exc:
            console.print(f"[yellow]Bacon decomposition skipped:[/yellow] {exc}")
            b = None
        if b is not None:
            console.print(b.summary())
            console.print("")
        console.print(w.summary())
        if out is not None:
            from lmecon.atomic import atomic_write_text

            if b is not None:
                atomic_write_text(out, b.tidy().to_csv(index=False))
            wpath = out.with_name(out.stem + "_weights" + out.suffix)
            atomic_write_text(wpath, w.tidy().to_csv(index=False))
            console.print(f"wrote {out if b is not None else ''} {wpath}".strip())
