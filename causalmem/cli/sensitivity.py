"""Command-line commands: issue 14: HonestDiD sensitivity (`causalmem sensitivity`).

``causalmem sensitivity SOURCE``: robust confidence sets for a memorisation target under
violations of parallel trends (Rambachan & Roth 2023), on a JSON file of an event study
(``betahat``, ``sigma``, ``num_pre`` [, ``event_time``], as R ``HonestDiD``) or on a stored
panel (CS event study with a universal base period, fitted here).
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
    def sensitivity(
        source: Annotated[
            Path,
            typer.Argument(help="JSON with betahat, sigma, num_pre [, event_time], or a panel."),
        ],
        outcome: Annotated[
            str | None, typer.Option(help="Panel outcome (default: the first).")
        ] = None,
        restriction: Annotated[
            str, typer.Option(help="SD (smoothness), RM (relative magnitudes) or SDRM.")
        ] = "SD",
        method: Annotated[
            str | None,
            typer.Option(help="FLCI, C-F, C-LF or Conditional (default: R HonestDiD's)."),
        ] = None,
        m: Annotated[
            list[float] | None,
            typer.Option("--m", help="Grid of M (or Mbar); repeat the option. Default: R's."),
        ] = None,
        target: Annotated[
            str, typer.Option(help="instantaneous | persistent | average | residual")
        ] = "instantaneous",
        e: Annotated[float | None, typer.Option(help="Event time of target=persistent.")] = None,
        window: Annotated[
            tuple[float, float] | None,
            typer.Option(help="Event-time window of target=average (two numbers)."),
        ] = None,
        bias: Annotated[str | None, typer.Option(help="Sign restriction: positive|negative.")] = (
            None
        ),
        monotone: Annotated[
            str | None, typer.Option(help="Shape restriction: increasing|decreasing.")
        ] = None,
        alp: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
        null: Annotated[float, typer.Option(help="Value defining the breakdown M.")] = 0.0,
        min_e: Annotated[float, typer.Option(help="Panel: smallest event time.")] = -20.0,
        max_e: Annotated[float, typer.Option(help="Panel: largest event time.")] = 20.0,
        out: Annotated[
            Path | None, typer.Option(help="Write the tidy table to this CSV file.")
        ] = None,
        chart: Annotated[
            Path | None, typer.Option(help="Write the sensitivity plot (stem: .png/.svg/.html).")
        ] = None,
    ) -> None:
        """Robust confidence sets and the breakdown value (Rambachan & Roth 2023, HonestDiD).

        Prints the original interval of the target, the robust set for each M (Δ^SD) or Mbar
        (Δ^RM, Δ^SDRM), and the breakdown value: the smallest M at which the set includes NULL.
        """
        _threads()
        from causalmem.analysis.sensitivity import honest_did
        from causalmem.errors import CausalmemError

        if not source.exists():
            raise CliError(f"{str(source)!r} does not exist; pass a JSON file or a panel.")
        kw = {
            "restriction": restriction,
            "method": method,
            "m_grid": list(m) if m else None,
            "target": target,
            "e": e,
            "window": window,
            "bias": bias,
            "monotone": monotone,
            "alp": alp,
            "null": null,
        }
        try:
            if source.suffix.lower() == ".json":
                try:
                    spec = json.loads(source.read_text())
                    data = {
                        "betahat": spec["betahat"],
                        "sigma": spec["sigma"],
                        "num_pre": int(spec["num_pre"]),
                        "event_time": spec.get("event_time"),
                    }
                except (KeyError, ValueError, TypeError) as exc:
                    raise CliError(
                        f"{str(source)!r} must be JSON with betahat (list), sigma (list of "
                        f"lists), num_pre (int) and optionally event_time (list): {exc}"
                    ) from exc
                res = honest_did(**data, **kw)  # type: ignore[arg-type]
            else:
                from causalmem.estimators import aggte, att_gt
                from causalmem.panel.io import read_panel

                panel = read_panel(source)
                fit = att_gt(panel, outcome, base_period="universal", bstrap=False)
                dyn = aggte(fit, type="dynamic", min_e=min_e, max_e=max_e, bstrap=False)
                res = honest_did(dyn, **kw)  # type: ignore[arg-type]
        except CausalmemError as exc:
            raise CliError(str(exc)) from exc
        console.print(res.summary())
        if out is not None:
            from lmecon.atomic import atomic_write_text

            atomic_write_text(out, res.tidy().to_csv(index=False))
            console.print(f"wrote {out}")
        if chart is not None:
            from lmecon.charts import save_chart

            for path in save_chart(res.plot(), chart):
                console.print(f"wrote {path}")
