"""The shared command-line error mechanism (lmecon.cli), on a two-command toy program."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from lmecon.cli import CliError, command_group, error_lines


def test_error_lines_word_the_error_and_the_debug_hint() -> None:
    assert error_lines("prog", "run", ValueError("bad  value\n here")) == (
        "prog run: ValueError: bad value here\n(run 'prog --debug run ...' for the full trace)"
    )
    assert error_lines("prog", "run", CliError("use --x")).splitlines()[0] == "prog run: use --x"
    assert error_lines("prog", "run", KeyError("col")).splitlines()[0] == "prog run: KeyError: col"


def _app() -> typer.Typer:
    app = typer.Typer(
        cls=command_group("prog", "PROG_DEBUG", lambda text, cmd: text.replace("n=", "--n ")),
        add_completion=False,
    )

    @app.callback()
    def main(debug: bool = typer.Option(False, "--debug")) -> None:
        """Toy program."""

    @app.command()
    def run(n: int = 1) -> None:
        raise ValueError(f"n={n} is too small; use n=5")

    @app.command()
    def ok() -> None:
        typer.echo("fine")

    return app


def test_a_failing_command_prints_two_lines_and_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROG_DEBUG", raising=False)
    res = CliRunner().invoke(_app(), ["run", "--n", "2"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert lines == [
        "prog run: ValueError: --n 2 is too small; use --n 5",
        "(run 'prog --debug run ...' for the full trace)",
    ]
    assert CliRunner().invoke(_app(), ["ok"]).output.strip() == "fine"


def test_usage_errors_exit_2_and_debug_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROG_DEBUG", raising=False)
    res = CliRunner().invoke(_app(), ["run", "--n", "x"])
    assert res.exit_code == 2 and "prog run:" in res.output
    res = CliRunner().invoke(_app(), ["--debug", "run"])
    assert isinstance(res.exception, ValueError)
    monkeypatch.setenv("PROG_DEBUG", "1")
    assert isinstance(CliRunner().invoke(_app(), ["run"]).exception, ValueError)
