"""Wiring of the family analyses (``analyses/02_*`` … ``07_*``): command line and TOML."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from causalmem.workflows.family import AnalysisConfig, FamilyAnalysis

__all__ = ["analysis_cli", "analysis_from_cli"]


def analysis_cli(
    description: str | None,
    here: str | os.PathLike[str],
    *,
    family: bool = True,
    argv: Sequence[str] | None = None,
) -> argparse.Namespace:
    """Parse the command line shared by ``analyses/02_*`` … ``07_*``.

    Parameters
    ----------
    description
        Help text (the script's ``__doc__``).
    here
        The script's folder: ``--out`` defaults to ``out/<folder name>`` and ``--config`` to
        ``<folder>/config.toml``.
    family
        Also accept ``--family DIR`` (default None: the TOML's ``family``), the folder written
        by ``analyses/02_family``.
    argv
        Arguments to parse (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        ``out``, ``config`` (and ``family``) as paths.
    """
    folder = Path(here)
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", type=Path, default=Path("out") / folder.name)
    ap.add_argument("--config", type=Path, default=folder / "config.toml")
    if family:
        ap.add_argument("--family", type=Path, default=None, help="Family folder (overrides TOML).")
    return ap.parse_args(argv)


def analysis_from_cli(
    description: str | None,
    here: str | os.PathLike[str],
    argv: Sequence[str] | None = None,
) -> tuple[Path, FamilyAnalysis]:
    """Parse :func:`analysis_cli`, then run the TOML's :class:`AnalysisConfig` on the family.

    Returns
    -------
    tuple of pathlib.Path and FamilyAnalysis
        The output folder (``--out``) and the analysis of the family's headline outcome.
    """
    args = analysis_cli(description, here, argv=argv)
    return args.out, AnalysisConfig.from_toml(args.config).run(args.family)
