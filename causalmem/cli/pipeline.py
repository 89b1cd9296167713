r"""Command-line commands: issue 16: `causalmem sample` and `causalmem score`.

The whole pipeline from a training run to a report::

    causalmem sample instances.parquet --preset pythia --order .../document-00000-of-00020.bin \\
        --validation pile_val_2049.npy
    causalmem score instances.parquet --model EleutherAI/pythia-70m-deduped --revisions pythia \\
        --out runs/70m
    causalmem fit runs/70m/panel.parquet --out runs/70m/fit
    causalmem report runs/70m --epoch-end 95000

``score`` writes ``OUT/scores/`` (resumable shards and manifest), ``OUT/panel.parquet`` (the
long panel ``fit`` and ``report`` read), ``OUT/lr_schedule.parquet`` when the peak learning rate
is known (Pythia's by name, or ``--max-lr``) and ``OUT/score.json`` (arguments, instance-table
provenance).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import typer

if TYPE_CHECKING:
    from causalmem.instances import Instances
    from causalmem.scoring.checkpoints import Checkpoint

_PRESETS = ("none", "pythia")


def parse_steps(text: str) -> npt.NDArray[np.int64]:
    """Parse a step list: ``pythia`` (154), ``pythia-1k`` (144), ``0:95000:1000``, ``1,2,4``.

    Parts are separated by commas; ``a:b:every`` includes ``b`` when it is on the grid.

    Examples
    --------
    >>> parse_steps("0:3000:1000,1,2").tolist()
    [0, 1, 2, 1000, 2000, 3000]
    """
    from causalmem.panel.pythia import pythia_checkpoint_steps

    out: list[int] = []
    for raw in text.split(","):
        part = raw.strip().lower()
        if not part:
            continue
        if part in ("pythia", "pythia-1k"):
            out.extend(pythia_checkpoint_steps(part == "pythia").tolist())
        elif ":" in part:
            bits = part.split(":")
            try:
                a, b, every = (int(x) for x in bits) if len(bits) == 3 else (0, 0, 0)
            except ValueError:
                a, b, every = 0, 0, 0
            if every <= 0 or b < a or a < 0:
                raise ValueError(
                    f"step range {raw.strip()!r} must read start:stop:every with 0 <= start <= "
                    "stop and every > 0, e.g. 0:95000:1000."
                )
            out.extend(range(a, b + 1, every))
        else:
            try:
                value = int(part)
            except ValueError:
                raise ValueError(
                    f"step {raw.strip()!r} is not an integer, a range start:stop:every, 'pythia' "
                    "or 'pythia-1k'."
                ) from None
            if value < 0:
                raise ValueError(f"step {value} is negative.")
            out.append(value)
    if not out:
        raise ValueError("the step list is empty.")
    return np.unique(np.asarray(out, dtype=np.int64))


def _lab_run(run: Path) -> tuple[Path, Path, int, npt.NDArray[np.int64]]:
    """(order prefix, validation .npy, batch size, checkpoint steps) of a lab run folder."""
    from causalmem.scoring.checkpoints import local_checkpoints

    run_json = run / "run.json"
    if not run_json.is_file():
        raise FileNotFoundError(
            f"{run} is not a finished lab run (no run.json); pass the folder the lab trained in."
        )
    cfg = json.loads(run_json.read_text()).get("config", {})
    batch = int(cfg["batch_size"])
    steps = np.asarray([c.step for c in local_checkpoints(run / "checkpoints")], dtype=np.int64)
    return run / "data" / "train", run / "data" / "validation.npy", batch, steps


def _sample(
    *,
    order: Path | None,
    lab_run: Path | None,
    validation: Path | None,
    preset: str,
    batch_size: int | None,
    steps: str | None,
    k: int | None,
    m: int | None,
    seed: int | None,
    epoch_cutoff: int | None,
    n_validation: int | None,
    validation_seed: int | None,
    seq_len: int | None,
    full_hash_limit: int,
) -> tuple[Instances, dict[str, Any]]:
    """Build the instances and their provenance (the body of ``causalmem sample``)."""
    from causalmem.instances import Instances
    from causalmem.panel.pythia import (
        PAPER_EPOCH_CUTOFF,
        PAPER_SAMPLING,
        PYTHIA_BATCH_SIZE,
        pythia_checkpoint_steps,
    )
    from causalmem.scoring.sampling import (
        file_provenance,
        open_order,
        order_files,
        sample_training,
        sample_validation,
    )
    from lmecon.cli import CliError

    if preset not in _PRESETS:
        raise CliError(f"--preset {preset!r} is not one of {list(_PRESETS)}.")
    if (order is None) == (lab_run is None):
        raise CliError("pass exactly one of --order (a token file) and --lab-run (a lab folder).")
    pythia = preset == "pythia"
    grid: npt.NDArray[np.int64] | None = parse_steps(steps) if steps else None
    source = "order"
    if lab_run is not None:
        order, lab_val, lab_batch, lab_steps = _lab_run(lab_run)
        validation = validation or lab_val
        batch_size = batch_size or lab_batch
        grid = grid if grid is not None else lab_steps
        source = "lab"
    if pythia:
        batch_size = batch_size or PYTHIA_BATCH_SIZE
        grid = grid if grid is not None else pythia_checkpoint_steps(False)
        epoch_cutoff = PAPER_EPOCH_CUTOFF if epoch_cutoff is None else epoch_cutoff
    if batch_size is None or grid is None:
        raise CliError(
            "--batch-size and --steps are needed for a plain token file (or use --preset "
            "pythia, or --lab-run)."
        )
    defaults = dict(PAPER_SAMPLING)
    k = defaults["k"] if k is None else k
    m = defaults["m"] if m is None else m
    seed = defaults["seed"] if seed is None else seed
    n_val = defaults["n_validation"] if n_validation is None else n_validation
    val_seed = defaults["validation_seed"] if validation_seed is None else validation_seed
    if order is None:  # pragma: no cover - ruled out above
        raise CliError("no training order.")
    index = open_order(order, seq_len)
    train = sample_training(
        index,
        grid,
        batch_size,
        k=k,
        m=m,
        seed=seed,
        epoch_cutoff=epoch_cutoff,
        seq_len=seq_len,
    )
    parts = [train]
    files = {
        "order": file_provenance(order_files(index) or [order], full_hash_limit=full_hash_limit)
    }
    if validation is not None:
        vindex = open_order(validation, seq_len or train.seq_len)
        val = sample_validation(vindex, n_val or None, seed=val_seed, seq_len=train.seq_len)
        parts.append(val)
        files["validation"] = file_provenance(
            order_files(vindex) or [validation], full_hash_limit=full_hash_limit
        )
    ins = Instances.concat(parts)
    prov = {
        "command": "causalmem sample",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "preset": preset,
        "files": files,
        "batch_size": int(batch_size),
        "checkpoint_steps": [int(s) for s in grid],
        "epoch_cutoff": epoch_cutoff,
        "k": int(k),
        "m": int(m),
        "seed": int(seed),
        "n_validation": int(n_val),
        "validation_seed": int(val_seed),
        "truncate_to": seq_len,
        "n_train": train.n,
        "order_sequences": len(index),
    }
    return ins, prov


def _checkpoints(
    model: list[str] | None,
    checkpoints_dir: Path | None,
    revisions: str | None,
    steps: str | None,
) -> list[Checkpoint]:
    """Return the checkpoints ``causalmem score`` scores, from its options."""
    from causalmem.scoring.checkpoints import Checkpoint, local_checkpoints
    from lmecon.cli import CliError

    wanted = set(parse_steps(steps).tolist()) if steps else None
    if (not model) == (checkpoints_dir is None):
        raise CliError("pass --model (a hub id or local folders) or --checkpoints (a folder).")
    if checkpoints_dir is not None:
        found = list(local_checkpoints(checkpoints_dir))
    elif all(Path(m).is_dir() for m in model or ()):
        found = [Checkpoint(str(Path(m))) for m in model or ()]
    else:
        if len(model or ()) != 1:
            raise CliError("pass one hub id with --model (its checkpoints are --revisions).")
        name = (model or [""])[0]
        if revisions is None and steps is None:
            if "pythia" not in name.lower():
                raise CliError(
                    f"--model {name!r} needs --revisions (e.g. step0,step1000) or --steps."
                )
            revisions = "pythia"
        if revisions is not None and revisions.strip().lower() in ("pythia", "pythia-1k"):
            revs = [f"step{s}" for s in parse_steps(revisions)]
        elif revisions is not None:
            revs = [r.strip() for r in revisions.split(",") if r.strip()]
        else:
            revs = [f"step{s}" for s in sorted(wanted or ())]
        found = [Checkpoint(name, r) for r in revs]
    if wanted is not None:
        found = [c for c in found if c.step in wanted]
    if not found:
        raise CliError("no checkpoint to score (check --steps against the checkpoints).")
    return found


def _panel(scores_dir: Path, name: str) -> Any:
    """Return the long panel of a scoring folder, with the model name in its metadata."""
    from causalmem.panel.panel import Panel
    from causalmem.scoring.metrics import METRICS
    from causalmem.scoring.runner import read_manifest, read_scores

    frame = read_scores(scores_dir, as_frame=True, allow_duplicate_weights=True)
    n_steps = frame["step"].nunique()
    balanced = len(frame) == frame["unit"].nunique() * n_steps
    manifest = read_manifest(scores_dir)
    return Panel.from_frame(
        frame,
        unit="unit",
        step="step",
        cohort="cohort",
        outcomes=METRICS,
        allow_unbalanced_panel=not balanced,
        meta={
            "model": name,
            "source": "causalmem score",
            "instances": manifest.get("instances"),
            "checkpoints": len(manifest.get("checkpoints", [])),
        },
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    from causalmem.cli import _threads, console
    from lmecon.cli import CliError

    @app.command()
    def sample(
        out: Annotated[Path, typer.Argument(help="Instance table to write (.parquet).")],
        order: Annotated[
            Path | None,
            typer.Option(
                help="Training order: a Megatron .bin/.idx prefix (Pythia's document), Pythia's "
                "first piece document-00000-of-00020.bin, or a .npy token array."
            ),
        ] = None,
        lab_run: Annotated[
            Path | None,
            typer.Option(help="A lab run folder (recorded order, validation, batch size, grid)."),
        ] = None,
        validation: Annotated[
            Path | None,
            typer.Option(help="Never-trained chunks: .npy [n, seq_len] or a .bin/.idx prefix."),
        ] = None,
        preset: Annotated[
            str, typer.Option(help="pythia: batch 1024, 1k grid, cut-off 95000, paper sampling.")
        ] = "none",
        batch_size: Annotated[
            int | None, typer.Option(help="Sequences per optimizer step of the run.")
        ] = None,
        steps: Annotated[
            str | None,
            typer.Option(help="Checkpoint grid: 0:95000:1000, 1,2,4, pythia or pythia-1k."),
        ] = None,
        k: Annotated[int | None, typer.Option(help="Batches per macro-batch (10).")] = None,
        m: Annotated[int | None, typer.Option(help="Sequences per batch (10).")] = None,
        seed: Annotated[int | None, typer.Option(help="Sampling seed (1994).")] = None,
        epoch_cutoff: Annotated[
            int | None, typer.Option(help="Keep cohorts up to this step (pythia: 95000).")
        ] = None,
        n_validation: Annotated[
            int | None, typer.Option(help="Validation chunks to draw (2000; 0 = all).")
        ] = None,
        validation_seed: Annotated[
            int | None, typer.Option(help="Seed of the validation draw (1234).")
        ] = None,
        seq_len: Annotated[
            int | None,
            typer.Option(help="Tokens per instance (truncate; chunk length of a flat .npy)."),
        ] = None,
        full_hash_limit: Annotated[
            int,
            typer.Option(help="Hash source files fully up to this many bytes (else head+tail)."),
        ] = 1 << 30,
    ) -> None:
        """Sample instances from a training run's data order; write an instance table.

        Per macro-batch of the checkpoint grid, k batches × m sequences of the training order
        (cohort = the first checkpoint after the batch), plus never-trained validation chunks
        (cohort <NA>). The table keeps cohorts, positions and its provenance (files with size
        and SHA-256, seeds, arguments).
        """
        _threads()
        from causalmem.scoring.sampling import write_instance_table

        try:
            ins, prov = _sample(
                order=order,
                lab_run=lab_run,
                validation=validation,
                preset=preset,
                batch_size=batch_size,
                steps=steps,
                k=k,
                m=m,
                seed=seed,
                epoch_cutoff=epoch_cutoff,
                n_validation=n_validation,
                validation_seed=validation_seed,
                seq_len=seq_len,
                full_hash_limit=full_hash_limit,
            )
        except (ValueError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from exc
        path = write_instance_table(out, ins, prov)
        n_coh = int(pd.Series(ins.cohort).dropna().nunique())
        console.print(
            f"wrote {ins.n:,} instances ({prov['n_train']:,} trained in {n_coh} cohorts, "
            f"{int(ins.never.sum()):,} never trained; {ins.seq_len} tokens) to {path}"
        )

    @app.command()
    def score(
        instances: Annotated[Path, typer.Argument(help="Instance table (causalmem sample).")],
        out: Annotated[Path, typer.Option(help="Output folder (resumable).")],
        model: Annotated[
            list[str] | None,
            typer.Option(help="Hub id (with --revisions) or local checkpoint folders (repeat)."),
        ] = None,
        checkpoints: Annotated[
            Path | None, typer.Option(help="Folder of step<N>/ checkpoint folders.")
        ] = None,
        revisions: Annotated[
            str | None,
            typer.Option(help="pythia (154 built in), pythia-1k (144) or step0,step1000,…"),
        ] = None,
        steps: Annotated[
            str | None, typer.Option(help="Only these steps (0:95000:1000, 1,2,4, pythia).")
        ] = None,
        device: Annotated[
            str | None, typer.Option(help="cuda, cpu, cuda:1 … (default: CUDA if any).")
        ] = None,
        dtype: Annotated[
            str | None, typer.Option(help="bfloat16 | float32 | float16 (default bf16 on CUDA).")
        ] = None,
        batch_size: Annotated[str, typer.Option(help="Sequences per pass, or auto.")] = "auto",
        method: Annotated[
            str, typer.Option(help="auto | fused | logits (metric computation).")
        ] = "auto",
        vocab_chunk: Annotated[
            int | None, typer.Option(help="Vocabulary chunk of the fused scorer.")
        ] = None,
        threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
        pre_periods: Annotated[
            int | None,
            typer.Option(
                help="Score each cohort only from this many checkpoints before its base "
                "period on (unbalanced panel, about half the work); default: every checkpoint."
            ),
        ] = None,
        ray: Annotated[bool, typer.Option("--ray", help="One Ray task per checkpoint.")] = False,
        ray_address: Annotated[
            str | None, typer.Option(help="Ray cluster address (auto: join a running one).")
        ] = None,
        gpus_per_task: Annotated[
            float | None, typer.Option(help="GPUs per Ray task (default 1 if the cluster has).")
        ] = None,
        cpus_per_task: Annotated[float, typer.Option(help="CPUs per Ray task.")] = 1.0,
        offline: Annotated[
            bool, typer.Option("--offline", help="Never touch the network (local cache only).")
        ] = False,
        allow_duplicate_weights: Annotated[
            bool,
            typer.Option(
                "--allow-duplicate-weights", help="Score checkpoints with identical weights."
            ),
        ] = False,
        max_lr: Annotated[
            float | None,
            typer.Option(help="Peak LR for the report's schedule (default: Pythia's by name)."),
        ] = None,
        total_steps: Annotated[
            int | None, typer.Option(help="Training steps of the LR schedule (Pythia 143000).")
        ] = None,
        progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    ) -> None:
        """Score the instances at every checkpoint; write shards, panel.parquet and provenance.

        Resumable: rerun the same command after an interruption (finished checkpoints are
        kept, after their checksums and weights are checked). Prints tokens/s and an ETA per
        checkpoint. `causalmem fit OUT/panel.parquet` and `causalmem report OUT` continue.
        """
        _threads()
        from causalmem.panel.io import write_panel
        from causalmem.panel.pythia import PYTHIA_TOTAL_STEPS, pythia_lr_schedule, pythia_max_lr
        from causalmem.scoring.runner import scoring_plan
        from causalmem.scoring.sampling import read_instance_table
        from lmecon.atomic import atomic_write_parquet, atomic_write_text

        if method not in ("auto", "fused", "logits"):
            raise CliError(f"--method {method!r} is not one of auto, fused, logits.")
        bs: int | str = batch_size
        if batch_size != "auto":
            try:
                bs = int(batch_size)
            except ValueError:
                raise CliError(f"--batch-size {batch_size!r} is not a number or auto.") from None
        try:
            ins, prov = read_instance_table(instances)
            cks = _checkpoints(model, checkpoints, revisions, steps)
        except (ValueError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from exc
        plan = (
            None
            if pre_periods is None
            else scoring_plan(ins, [int(c.step or 0) for c in cks], pre_periods=pre_periods)
        )
        out.mkdir(parents=True, exist_ok=True)
        name = (model or [str(checkpoints)])[0]
        console.print(
            f"scoring {ins.n:,} instances × {len(cks)} checkpoints of {name} "
            f"({ins.seq_len} tokens each) into {out}/scores"
        )
        log = lambda msg: console.print(f"[green]-[/green] {msg}")  # noqa: E731
        kwargs: dict[str, Any] = {
            "plan": plan,
            "batch_size": bs,
            "device": device,
            "dtype": dtype,
            "allow_duplicate_weights": allow_duplicate_weights,
            "local_files_only": True if offline else None,
            "progress": progress,
            "log": log,
            "as_frame": True,
            "method": method,
            "vocab_chunk": vocab_chunk,
        }
        t0 = time.perf_counter()
        if ray:
            from causalmem.scoring.ray_backend import score_ray

            score_ray(
                cks,
                ins,
                out / "scores",
                address=ray_address,
                num_gpus_per_task=gpus_per_task,
                num_cpus_per_task=cpus_per_task,
                **kwargs,
            )
        else:
            from causalmem.scoring.runner import score as run_score

            run_score(cks, ins, out / "scores", num_threads=threads, **kwargs)
        seconds = time.perf_counter() - t0
        files = []
        if len({c.step for c in cks}) >= 2:
            files.append(write_panel(_panel(out / "scores", name), out / "panel.parquet"))
        pythia = "pythia" in name.lower()
        peak = max_lr if max_lr is not None else (pythia_max_lr(name) if pythia else None)
        if peak is not None:
            sched = pythia_lr_schedule(peak, total_steps or PYTHIA_TOTAL_STEPS)
            files.append(atomic_write_parquet(out / "lr_schedule.parquet", sched))
        body = {
            "command": "causalmem score",
            "model": name,
            "checkpoints": [c.to_dict() for c in cks],
            "instances": {"path": str(instances), **prov},
            "options": {
                "device": device,
                "dtype": dtype,
                "batch_size": batch_size,
                "method": method,
                "vocab_chunk": vocab_chunk,
                "pre_periods": pre_periods,
                "ray": ray,
                "max_lr": peak,
                "total_steps": total_steps,
            },
            "seconds": round(seconds, 2),
        }
        files.append(atomic_write_text(out / "score.json", json.dumps(body, indent=1)))
        console.print(f"[bold]scored in {seconds:.1f} s; wrote {', '.join(map(str, files))}")
