"""The report application: read a folder of panels, fit every model, render one HTML file.

``build_report(panel_dir, out)`` reads the models in ``panel_dir`` (a family folder with
``family.json``, a lab-demo folder with ``panel.parquet``, or a folder of causalmem panel
parquet files, one per model), fits ``att_gt`` on each (:func:`~causalmem.workflows.family.
analyse_family`) and the event-time paths (``aggte``), and writes the page rendered by
:func:`causalmem.presentation.report.render_report`, atomically.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from causalmem.presentation.report import ReportContent, render_report, short_meta
from lmecon.atomic import atomic_write_text
from lmecon.provenance import versions

__all__ = ["build_report", "load_panels", "sensitivity_results"]

_REPORT_VERSIONS = ("causalmem", "numpy", "pandas", "scipy", "pyarrow", "altair",
                    "vl-convert-python", "torch", "transformers")  # fmt: skip


def load_panels(panel_dir: str | os.PathLike[str]) -> Any:
    """Read the models of ``panel_dir`` as a :class:`~causalmem.workflows.family.Family`.

    Accepts a family folder (``family.json``), a lab-demo folder (``panel.parquet``, with its
    ``lr_schedule.parquet`` and ``scores/manifest.json`` when present), or a folder of causalmem
    panel parquet files (one model each; their LR schedule is unknown unless a
    ``<stem>.lr.parquet`` with ``step, lr`` sits next to them).
    """
    from causalmem.panel.io import read_panel
    from causalmem.workflows.family import Family, ModelRun, _load

    d = Path(panel_dir)
    if not d.is_dir():
        raise NotADirectoryError(f"{d} is not a folder; pass the folder that holds the panels.")
    if (d / "family.json").exists():
        return _load(d, json.loads((d / "family.json").read_text()))
    files = (
        [d / "panel.parquet"]
        if (d / "panel.parquet").exists()
        else sorted(p for p in d.glob("*.parquet") if not p.name.endswith(".lr.parquet"))
    )
    runs = []
    for f in files:
        try:
            panel = read_panel(f)
        except Exception:  # noqa: BLE001 - tidy result files sit next to panels; skip them
            continue
        folder = f.parent
        lr_path = (
            folder / "lr_schedule.parquet"
            if f.name == "panel.parquet"
            else f.with_suffix(".lr.parquet")
        )
        lr = pd.read_parquet(lr_path) if lr_path.exists() else pd.DataFrame({"step": [], "lr": []})
        man_path = folder / "scores" / "manifest.json"
        manifest = (
            json.loads(man_path.read_text())
            if f.name == "panel.parquet" and man_path.exists()
            else None
        )
        name = str(panel.meta.get("user", {}).get("model", "")) or (
            folder.name if f.name == "panel.parquet" else f.stem
        )
        runs.append(
            ModelRun(
                name=name,
                panel=panel,
                lr=lr,
                n_params=float("nan"),
                max_lr=float(lr["lr"].max()) if len(lr) else float("nan"),
                epoch_end=float(panel.steps.max()),
                source="panel",
                path=str(f),
                manifest=manifest,
            )
        )
    if not runs:
        raise FileNotFoundError(
            f"No causalmem panel in {d}: expected family.json, panel.parquet or *.parquet panels "
            "written by causalmem.write_panel."
        )
    return Family(models=tuple(runs), out_dir=d)


def _manifest_rows(fam: Any) -> pd.DataFrame:
    rows = []
    for m in fam.models:
        if m.manifest:
            cps = m.manifest.get("checkpoints", [])
            rows.append(
                {
                    "model": m.name,
                    "checkpoints": len(cps),
                    "rows": m.manifest.get("rows"),
                    "instances_sha256": str(m.manifest.get("instances", ""))[:16],
                    "devices": ",".join(sorted({str(c.get("device")) for c in cps})),
                    "dtypes": ",".join(sorted({str(c.get("dtype")) for c in cps})),
                    "scoring_s": float(sum(float(c.get("seconds_score", 0)) for c in cps)),
                }
            )
    return pd.DataFrame(rows)


def sensitivity_results(
    fam: Any, outcome: str, *, alp: float = 0.05, window: int = 20
) -> dict[str, Any]:
    """HonestDiD robust sets (Δ^SD, FLCI) of each model's instantaneous effect.

    Refits ``att_gt`` with a universal base period (the report's fits use the varying one,
    whose pre-period coefficients HonestDiD cannot use), aggregates event times
    ``-window..window`` in checkpoint positions and calls
    :func:`~causalmem.analysis.sensitivity.honest_did`. A model whose event study has no pre-
    or post-period coefficient gets the reason (``str``) instead of a result.
    """
    import warnings

    from causalmem.analysis.sensitivity import honest_did
    from causalmem.errors import CausalmemError, CausalmemWarning
    from causalmem.estimators.aggte import aggte
    from causalmem.estimators.att_gt import att_gt

    out: dict[str, Any] = {}
    for m in fam.models:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CausalmemWarning)
                fit = att_gt(m.panel, outcome, base_period="universal", bstrap=False)
                dyn = aggte(
                    fit,
                    "dynamic",
                    min_e=-window,
                    max_e=window,
                    event_time="periods",
                    bstrap=False,
                    cband=False,
                )
                out[m.name] = honest_did(dyn, restriction="SD", alp=alp)
        except CausalmemError as exc:
            out[m.name] = str(exc)
    return out


def build_report(
    panel_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sections: Sequence[tuple[str, str]] = (),
    outcome: str | None = None,
    biters: int = 1000,
    alp: float = 0.05,
    seed: int = 1234,
    epoch_end: float | None = None,
    command: str | None = None,
    sensitivity: bool = False,
) -> Path:
    """Build one self-contained HTML report of the panels in ``panel_dir``.

    Parameters
    ----------
    panel_dir
        A family folder, a lab-demo folder or a folder of panels (see :func:`load_panels`).
    out
        The HTML file to write (atomically; parent folders are created).
    sections
        Extra ``(title, html)`` sections appended after the built-in ones (the HTML is inserted
        as given: keep it self-contained; :func:`~causalmem.presentation.report.read_section`).
    outcome
        Outcome column (default: the family's recorded outcome, else ``logprob`` when present,
        else the panel's first outcome).
    biters, alp, seed
        Multiplier bootstrap for the bands and the joint bootstrap across models.
    epoch_end
        T for residual memorisation and the first-epoch correlation (default: each model's
        recorded epoch end, else its last checkpoint).
    command
        The command line recorded under provenance (default: ``sys.argv``).
    sensitivity
        Add the HonestDiD section (:func:`sensitivity_results`: one universal-base ``att_gt``
        per model, Δ^SD FLCI for the instantaneous effect, event times -20..20). Off by
        default: it refits every model once more.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from causalmem.estimators.aggte import aggte
    from causalmem.workflows.family import analyse_family, findings_markdown

    fam = load_panels(panel_dir)
    recorded = None
    fj = Path(panel_dir) / "family.json"
    if fj.exists():
        recorded = json.loads(fj.read_text()).get("outcome")
    outs = fam.models[0].panel.schema.outcomes
    y = outcome or recorded or ("logprob" if "logprob" in outs else outs[0])
    an = analyse_family(
        fam, y, biters=biters, alp=alp, seed=seed, epoch_end=epoch_end,
        findings=len(fam.models) >= 2,
    )  # fmt: skip
    prov: dict[str, Any] = {
        "command": command if command is not None else " ".join(sys.argv),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "panel_dir": str(panel_dir),
        "versions": {"python": sys.version.split()[0], **versions(_REPORT_VERSIONS, missing=None)},
        "panels": {m.name: {"path": m.path, "meta": short_meta(m.panel.meta)} for m in fam.models},
    }
    content = ReportContent(
        name=Path(panel_dir).name,
        outcome=y,
        analysis=an,
        models=fam.tidy().drop(columns=["path"]),
        dynamic={n: aggte(an.fit.results[n], "dynamic", min_e=0) for n in fam.names},
        lr=fam.lr_table(),
        biters=biters,
        alp=alp,
        findings_markdown=None if an.findings is None else findings_markdown(an.findings),
        manifests=_manifest_rows(fam),
        duplicates=fam.duplicate_checkpoints(),
        provenance=prov,
        sections=tuple(sections),
        sensitivity=sensitivity_results(fam, y, alp=alp) if sensitivity else {},
    )
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, render_report(content))
    return target
