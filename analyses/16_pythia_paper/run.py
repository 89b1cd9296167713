"""Analysis 16: the paper's Pythia memorisation profiles through causalmem's four commands.

Reads ``recipe.toml`` (next to this file, or ``--recipe``) and runs, in ``--out``::

    causalmem sample OUT/instances.parquet  [sample] options       (once, shared by the sizes)
    causalmem score  OUT/instances.parquet --out OUT/<name> --model <model>  [score] options
    causalmem fit    OUT/<name>/panel.parquet --out OUT/<name>/fit  [fit] options
    causalmem report OUT/<name>  [report] options

for every ``[[models]]`` entry (``model`` = a hub id, or ``checkpoints`` = a folder of
``step<N>/`` checkpoints). Each step is resumable: an existing instance table is kept, scoring
resumes from its shards. ``--dry-run`` prints the commands; ``--models 70m 160m`` runs a subset.

Usage: ``python analyses/16_pythia_paper/run.py [--recipe TOML] [--out DIR] [--dry-run]``
(default output ``out/16_pythia_paper``).
"""

from __future__ import annotations

import argparse
import shlex
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
_PER_MODEL = ("score", "fit", "report")


def _options(table: Mapping[str, Any]) -> list[str]:
    """``{"batch_size": 8, "ray": True}`` -> ``["--batch-size", "8", "--ray"]``."""
    out: list[str] = []
    for key, value in table.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                out.append(flag)
        elif isinstance(value, list):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


def commands(
    recipe: Mapping[str, Any], out: Path, models: Sequence[str] | None = None
) -> list[list[str]]:
    """The ``causalmem`` command lines of a recipe, in order."""
    table = out / "instances.parquet"
    cmds = [["sample", str(table), *_options(recipe.get("sample", {}))]]
    for entry in recipe.get("models", []):
        name = str(entry["name"])
        if models and name not in models:
            continue
        per = {k: {**recipe.get(k, {}), **entry.get(k, {})} for k in _PER_MODEL}
        run = out / name
        source = (
            ["--checkpoints", str(entry["checkpoints"])]
            if "checkpoints" in entry
            else ["--model", str(entry["model"])]
        )
        cmds.append(["score", str(table), "--out", str(run), *source, *_options(per["score"])])
        cmds.append(
            ["fit", str(run / "panel.parquet"), "--out", str(run / "fit"), *_options(per["fit"])]
        )
        cmds.append(["report", str(run), *_options(per["report"])])
    return cmds


def _invoke(args: list[str]) -> None:
    """Run one ``causalmem`` command in this process (errors propagate)."""
    from typer.main import get_command

    from causalmem.cli import app

    get_command(app).main(args=args, prog_name="causalmem", standalone_mode=False)


def main(argv: Sequence[str] | None = None, run: Callable[[list[str]], None] = _invoke) -> int:
    """Run (or print) the recipe's commands; return the number of commands."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, default=HERE / "recipe.toml")
    ap.add_argument("--out", type=Path, default=Path("out/16_pythia_paper"))
    ap.add_argument("--models", nargs="+", default=None, help="names of [[models]] to run")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    recipe = tomllib.loads(args.recipe.read_text())
    cmds = commands(recipe, args.out, args.models)
    for cmd in cmds:
        print("causalmem " + shlex.join(cmd), flush=True)
        if args.dry_run:
            continue
        if cmd[0] == "sample" and Path(cmd[1]).exists():
            print(f"  (kept: {cmd[1]} exists; delete it to sample again)")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        run(cmd)
    return len(cmds)


if __name__ == "__main__":
    main()
