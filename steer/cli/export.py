"""Command-line commands of issue 17: ``steer export`` and ``steer import-official``.

No ``from __future__ import annotations`` here: typer evaluates the option annotations, and the
shared option types are imported inside :func:`register` (they live in the parent package).
"""

from pathlib import Path
from typing import Annotated

import typer

FORMATS = ("peft", "baked", "gguf", "official")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    from steer.cli import (
        AllowOtherOpt,
        CacheOpt,
        HubOpt,
        ThreadsOpt,
        _load_steered,
        _log,
        _parse_values,
        _threads,
        console,
    )

    @app.command("export")
    def export(
        steer_dir: Annotated[
            Path, typer.Option("--steer", help="Folder written by 'steer train'.")
        ],
        out: Annotated[
            Path,
            typer.Option(
                help="Target: a folder (peft, baked), a .gguf file (gguf) or a .pt file (official)."
            ),
        ],
        fmt: Annotated[
            str, typer.Option("--format", help="peft | baked | gguf | official.")
        ] = "baked",
        value: Annotated[
            str,
            typer.Option(
                help="Strength s of the labelled slot(s), eps = s * eps_0 (dummy slots 1); "
                "'5,1' gives all k slots; write negative values as --value=-5. Not used by "
                "'official' (which stores the factors, not a strength)."
            ),
        ] = "1",
        model: Annotated[
            str | None,
            typer.Option(help="Base model (default: the steer's base model if local/embedded)."),
        ] = None,
        dtype: Annotated[str, typer.Option(help="gguf: f32 (exact) | f16.")] = "f32",
        tokenizer_pre: Annotated[
            str | None,
            typer.Option(help="gguf: llama.cpp pre-tokenizer name (default: known families)."),
        ] = None,
        allow_other_model: AllowOtherOpt = False,
        allow_hub_model: HubOpt = False,
        threads: ThreadsOpt = 1,
        cache_dir: CacheOpt = None,
    ) -> None:
        """Export a steer as a PEFT LoRA, a baked model, a GGUF file or an official checkpoint."""
        _threads(threads)
        if fmt not in FORMATS:
            raise typer.BadParameter(f"--format {fmt!r}: use one of {', '.join(FORMATS)}.")
        if fmt == "official":
            from steer.core.io import load_steer
            from steer.export.official import save_official

            path = save_official(load_steer(steer_dir), out)
            console.print(f"[bold]wrote {path}[/bold] (official LM-Steer layout)")
            return
        from steer.export import export_baked, export_gguf, export_peft

        tr, lm = _load_steered(steer_dir, model, cache_dir, allow_hub_model, allow_other_model)
        values = _parse_values(value, tr)
        writer = {"peft": export_peft, "baked": export_baked, "gguf": export_gguf}[fmt]
        kwargs = {"dtype": dtype, "tokenizer_pre": tokenizer_pre} if fmt == "gguf" else {}
        _log(f"exporting {tr.slot_names} at values {values} as {fmt}")
        path = writer(
            lm.model, tr, out, values, tokenizer=lm.tokenizer,
            allow_other_model=allow_other_model, **kwargs,  # type: ignore[operator]
        )  # fmt: skip
        console.print(f"[bold]wrote {path}[/bold]")

    @app.command("import-official")
    def import_official(
        checkpoint: Annotated[Path, typer.Argument(help="Official LM-Steer .pt checkpoint.")],
        out: Annotated[Path, typer.Option(help="Folder for steer.safetensors + JSON.")],
        base_model: Annotated[
            str | None, typer.Option(help="Base model name (default: the checkpoint's).")
        ] = None,
        model: Annotated[
            str | None,
            typer.Option(help="Load this model to check the hidden size and record it as base."),
        ] = None,
        epsilon: Annotated[
            float | None, typer.Option(help="Base strength (default: the checkpoint's args).")
        ] = None,
        slot_name: Annotated[
            list[str] | None, typer.Option(help="Slot names in order (repeat).")
        ] = None,
        threads: ThreadsOpt = 1,
        cache_dir: CacheOpt = None,
    ) -> None:
        """Import an official LM-Steer checkpoint (safe loading) as a steer folder."""
        _threads(threads)
        from steer.core.io import save_steer
        from steer.export.official import load_official

        lm = None
        if model is not None:
            from steer.resources.models import load_model

            lm = load_model(model, cache_dir=cache_dir, log=_log)
        tr = load_official(
            checkpoint, base_model=base_model or (lm.model_id if lm else None), epsilon=epsilon,
            slot_names=tuple(slot_name or ()), model=lm.model if lm else None,
            tokenizer=lm.tokenizer if lm else None,
        )  # fmt: skip
        save_steer(tr, out)
        console.print(f"[bold]wrote {out}/[/bold] ({tr!r})")
