"""One error mechanism for the command lines of both packages (``causalmem``, ``steer``).

:func:`command_group` builds the Typer/Click group class of a program: any exception a command
raises is printed as at most two lines on stderr — ``PROGRAM COMMAND: what went wrong, where,
how to fix it`` and a hint to rerun with ``--debug`` — and the program exits with status 1 (2
for a malformed command line, as Click does). With ``PROGRAM --debug`` or the program's
environment variable set, the exception propagates with its full trace. A program may reword
library advice into its own options (``advice``), e.g. ``allow_unbalanced_panel=True`` into
``--allow-unbalanced-panel``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

try:  # typer >= 0.29 vendors click
    from typer._click import core as click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer builds on click itself
    import click  # type: ignore[no-redef]
    from click.exceptions import ClickException  # type: ignore[assignment,no-redef]

__all__ = ["CliError", "command_group", "error_lines"]

Advice = Callable[[str, Any], str]


class CliError(Exception):
    """A command-line mistake already worded for the user (printed without its class name)."""


def error_lines(program: str, command: str, exc: BaseException, advice: str | None = None) -> str:
    """Word ``exc`` as two lines: ``PROGRAM COMMAND: [Kind: ]message`` and the debug hint.

    ``advice`` replaces the message (already reworded by the program); a :class:`CliError`
    is shown without its class name.
    """
    text = advice if advice is not None else " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    kind = "" if isinstance(exc, CliError) else f"{type(exc).__name__}: "
    return (
        f"{program} {command}: {kind}{text}\n"
        f"(run '{program} --debug {command} ...' for the full trace)"
    )


def _debug(ctx: click.Context, env: str) -> bool:
    value = os.environ.get(env, "").strip().lower()
    return bool(ctx.params.get("debug")) or value not in ("", "0", "false", "no")


def command_group(program: str, debug_env: str, advice: Advice | None = None) -> type[TyperGroup]:
    """Return the group class (``typer.Typer(cls=...)``) that reports errors as two lines.

    Parameters
    ----------
    program
        The program's name, first word of every error line.
    debug_env
        Environment variable that, when set (not ``0``/``false``/``no``), shows full traces
        like ``--debug`` (the group's callback must define a ``debug`` option).
    advice
        ``advice(message, command)``: reword the library's message for the command line
        (``command`` is the Click command that failed, or None).
    """
    err = Console(stderr=True, soft_wrap=True, highlight=False)

    class Commands(TyperGroup):
        def invoke(self, ctx: click.Context) -> Any:
            try:
                return super().invoke(ctx)
            except (typer.Exit, typer.Abort):
                raise
            except ClickException as exc:  # a malformed command line: exit 2, as click does
                if _debug(ctx, debug_env):
                    raise
                where = " ".join(filter(None, (program, ctx.invoked_subcommand)))
                message = " ".join(exc.format_message().split())
                err.print(f"{where}: {message}\n(see '{where} --help')", markup=False)
                ctx.exit(exc.exit_code)
            except Exception as exc:
                if _debug(ctx, debug_env):
                    raise
                name = ctx.invoked_subcommand or ctx.info_name or program
                text = " ".join(str(exc).split()) or type(exc).__name__
                worded = advice(text, self.get_command(ctx, name)) if advice else None
                err.print(error_lines(program, name, exc, worded), markup=False)
                ctx.exit(1)

    Commands.__name__ = Commands.__qualname__ = f"{program.capitalize()}Commands"
    return Commands
