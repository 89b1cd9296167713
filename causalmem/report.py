"""One self-contained HTML report of the memorisation profiles in a folder of panels.

``build_report(panel_dir, out)`` reads the models in ``panel_dir`` (a family folder with
``family.json``, a lab-demo folder with ``panel.parquet``, or a folder of causalmem panel
parquet files, one per model), fits ``att_gt`` on each, and writes one HTML file with:

* figures, embedded as inline SVG rendered by vl-convert (no scripts, stylesheets or fonts are
  fetched: the file opens offline);
* tables (per-model summaries, ``etable`` of the event-time paths, correlations, prediction);
* diagnostics (pre-trend joint test per model, bootstrap and band settings, panel summary,
  scoring manifests and duplicated checkpoint weights);
* provenance (panel parquet metadata, package versions, the command).

Extra sections (``sections=[(title, html), ...]``) are appended, so other modules (e.g. a
ground-truth validation) can add to the same report. The file is written atomically.
"""

from __future__ import annotations

import html
import json
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from causalmem._atomic import atomic_path, atomic_write_text

__all__ = ["build_report", "chart_svg", "load_panels", "read_section", "save_chart"]


def save_chart(
    chart: Any, stem: str | os.PathLike[str], formats: Sequence[str] = ("png", "svg", "html")
) -> list[Path]:
    """Save an Altair chart as ``stem.<fmt>`` for each format, atomically (PNG/SVG: vl-convert).

    HTML is saved with the Vega libraries inlined (``inline=True``), so it opens offline.
    """
    base = Path(stem)
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = base.with_suffix(f".{fmt}")
        kwargs: dict[str, Any] = {}
        if fmt == "png":
            kwargs["scale_factor"] = 2.0
        elif fmt == "html":
            kwargs["inline"] = True
        with atomic_path(target) as tmp:
            chart.save(str(tmp), format=fmt, **kwargs)
        out.append(target)
    return out


def chart_svg(chart: Any) -> str:
    """Render an Altair chart to an SVG string with vl-convert (no network access)."""
    try:
        import vl_convert as vlc
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError("the report needs vl-convert: pip install vl-convert-python") from exc
    svg = vlc.vegalite_to_svg(chart.to_dict(), allowed_base_urls=[])
    return str(svg)


def load_panels(panel_dir: str | os.PathLike[str]) -> Any:
    """Read the models of ``panel_dir`` as a :class:`~causalmem.family.Family`.

    Accepts a family folder (``family.json``), a lab-demo folder (``panel.parquet``, with its
    ``lr_schedule.parquet`` and ``scores/manifest.json`` when present), or a folder of causalmem
    panel parquet files (one model each; their LR schedule is unknown unless a
    ``<stem>.lr.parquet`` with ``step, lr`` sits next to them).
    """
    from causalmem.family import Family, ModelRun, _load
    from causalmem.panel.io import read_panel

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


def read_section(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Read a pre-rendered HTML section file as a ``(title, html)`` pair for :func:`build_report`.

    A leading ``<h2>title</h2>`` (as written by ``analyses/08_ground_truth``) becomes the title;
    otherwise the file name is used. Files that load external scripts, styles or images are
    refused, so the report stays self-contained.

    Parameters
    ----------
    path
        The HTML fragment.

    Returns
    -------
    tuple[str, str]
        Title (plain text) and HTML body.
    """
    import re

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"report section {p} does not exist; pass an HTML fragment file.")
    text = p.read_text(encoding="utf-8")
    if re.search(r"""<(script|link)\b|(src|href)\s*=\s*["']?https?:""", text, re.I):
        raise ValueError(
            f"report section {p} loads external scripts, styles or images; the report must be "
            "self-contained: inline figures (e.g. SVG) and drop <script>/<link> tags."
        )
    m = re.match(r"\s*<h2[^>]*>(.*?)</h2>\s*", text, re.S | re.I)
    if m:
        return html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip(), text[m.end() :]
    return p.stem, text


def _table(frame: pd.DataFrame, digits: int = 4, caption: str | None = None) -> str:
    f = frame.copy()
    for c in f.columns:
        if pd.api.types.is_float_dtype(f[c]):
            f[c] = f[c].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}g}")
    out = f.to_html(index=False, border=0, classes="tab", escape=True)
    head = out.split(">", 1)[0] + ">"
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return '<table class="tab">' + cap + out[len(head) :]


def _figure(chart: Any, caption: str) -> str:
    return f"<figure>{chart_svg(chart)}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in (
        "causalmem",
        "numpy",
        "pandas",
        "scipy",
        "pyarrow",
        "altair",
        "vl-convert-python",
        "torch",
        "transformers",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table.tab{border-collapse:collapse;margin:1em 0;font-size:.85em}
table.tab td,table.tab th{border:1px solid #ccc;padding:3px 7px;text-align:right}
table.tab caption{caption-side:top;text-align:left;font-weight:600;padding:4px 0}
figure{margin:1.2em 0}figcaption{font-size:.85em;color:#555}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.8em}
.ok{color:#1a7f37}.bad{color:#b42318}
"""


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
        as given: keep it self-contained).
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

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    from causalmem import charts
    from causalmem.family import analyse_family, findings_markdown
    from causalmem.tables import etable

    fam = load_panels(panel_dir)
    recorded = None
    fj = Path(panel_dir) / "family.json"
    if fj.exists():
        recorded = json.loads(fj.read_text()).get("outcome")
    outs = fam.models[0].panel.schema.outcomes
    y = outcome or recorded or ("logprob" if "logprob" in outs else outs[0])
    an = analyse_family(
        fam,
        y,
        biters=biters,
        alp=alp,
        seed=seed,
        epoch_end=epoch_end,
        findings=len(fam.models) >= 2,
    )
    fit = an.fit
    body: list[str] = []
    toc: list[str] = []

    def section(title: str, content: str) -> None:
        anchor = f"s{len(toc) + 1}"
        toc.append(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>')
        body.append(f'<h2 id="{anchor}">{html.escape(title)}</h2>\n{content}')

    # summary --------------------------------------------------------------------------
    fam_tab = fam.tidy().drop(columns=["path"])
    summary = [
        f"<p>{len(fam.models)} model(s); outcome <code>{html.escape(y)}</code>, memorisation = "
        f"{'+' if fit.sign > 0 else '−'}ATT; Callaway &amp; Sant'Anna ATT(g, c) with never-trained "
        f"controls, varying base period, {biters} multiplier-bootstrap draws, uniform "
        f"{1 - alp:.0%} band; first-epoch end T = {an.epoch_end:g}.</p>",
        _table(fam_tab, caption="Models"),
    ]
    if an.findings is not None:
        verdicts = []
        for key, label in (
            ("finding_i", "(i) larger models memorise more and more persistently"),
            ("finding_ii", "(ii) instantaneous memorisation tracks the learning rate"),
            ("finding_iii", "(iii) profiles are highly correlated across sizes / predictable"),
        ):
            ok = bool(an.findings[key]["holds"])
            verdicts.append(
                f'<li>{html.escape(label)}: <b class="{"ok" if ok else "bad"}">'
                f"{'holds' if ok else 'does not hold'}</b></li>"
            )
        summary.append(
            "<p>The paper's findings on these models (criteria and numbers under "
            "<i>Findings</i>):</p><ul>" + "".join(verdicts) + "</ul>"
        )
    section("Summary", "\n".join(summary))

    # figures --------------------------------------------------------------------------
    cells = fit.cells()
    figs = [
        _figure(
            charts.family_heatmap(cells, epoch_end=an.epoch_end, mask="opacity"),
            "Figs 1-2: memorisation profiles (c ≥ g); faint = 95% band includes 0; dashed: T.",
        ),
        _figure(
            charts.family_heatmap(
                cells, epoch_end=an.epoch_end, mask="hide", title="Significant cells only"
            ),
            "Fig. 2 style: significant cells only.",
        ),
        _figure(charts.family_paths(fit.path()), "Memorisation path θ(e) (event-time average)."),
    ]
    lr = fam.lr_table()
    inst = fit.instantaneous()
    if len(lr) and set(inst["model"]) <= set(lr["model"]):
        figs.append(
            _figure(
                charts.family_instantaneous_lr(inst, lr),
                "Fig. 3: τ(g, g) and each model's own learning-rate schedule.",
            )
        )
    figs.append(
        _figure(
            charts.family_persistent(fit.persistent()),
            "Fig. 4: persistent memorisation by steps since training (sqrt axis).",
        )
    )
    figs.append(
        _figure(charts.family_residual(fit.residual()), "Fig. 5: residual memorisation τ(g, T).")
    )
    if an.comparisons:
        for key, comp in an.comparisons.items():
            label = (
                "all cells (the reference repository's Fig. 6)"
                if key == "all"
                else "post-treatment first-epoch cells"
            )
            figs.append(
                _figure(
                    charts.correlation_matrix(comp.tidy(), title=f"ρ: {label}"),
                    f"Fig. 6: profile correlations, {label}; joint-bootstrap 95% intervals.",
                )
            )
        if an.prediction is not None:
            figs.append(
                _figure(
                    charts.prediction_scatter(an.prediction.cells),
                    "Held-out cohorts of the largest model: predicted vs estimated.",
                )
            )
    section("Figures", "\n".join(figs))

    # tables ---------------------------------------------------------------------------
    tabs = []
    dyn = {n: fit.results[n].persistent() for n in fam.names}
    et = etable(
        list(dyn.values()),
        list(dyn),
        digits=3,
        caption=f"Event-time path θ(e) of {y} (ATT scale; * = band excludes 0)",
    )
    tabs.append(et.to_html())
    inst_cols = ["model", "group", "estimate", "std_error", "conf_low", "conf_high", "lr_mean"]
    tabs.append(_table(inst[inst_cols], caption="Instantaneous memorisation τ(g, g)"))
    res_cols = ["model", "at", "group", "estimate", "std_error", "conf_low", "conf_high"]
    tabs.append(_table(fit.residual()[res_cols], caption="Residual memorisation τ(g, T)"))
    if an.comparisons:
        tabs.append(_table(an.correlations(), caption="Profile correlations (both variants)"))
        if an.prediction is not None:
            tabs.append(
                _table(
                    an.prediction.tidy(),
                    caption=(
                        f"Prediction of {an.prediction.target} from "
                        f"{', '.join(an.prediction.predictors)}: out-of-sample errors"
                    ),
                )
            )
            tabs.append(_table(an.prediction.coefficients, caption="Prediction coefficients"))
    section("Tables", "\n".join(tabs))

    if an.findings is not None:
        section("Findings (i)-(iii)", f"<pre>{html.escape(findings_markdown(an.findings))}</pre>")

    # diagnostics ----------------------------------------------------------------------
    diag = [
        _table(fit.pretrends(), caption="Pre-trend (placebo) cells and joint Wald test per model"),
        _table(
            fit.glance().drop(columns=["control_group"], errors="ignore"),
            caption="Estimation settings and inference per model",
        ),
    ]
    dup = fam.duplicate_checkpoints()
    man_rows = []
    for m in fam.models:
        if m.manifest:
            cps = m.manifest.get("checkpoints", [])
            man_rows.append(
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
    if man_rows:
        diag.append(_table(pd.DataFrame(man_rows), caption="Scoring manifests"))
        diag.append(
            "<p>Duplicated checkpoint weights (same hash at two steps, pitfall 10): "
            + ("none." if dup.empty else "</p>" + _table(dup) + "<p>")
            + "</p>"
        )
    else:
        diag.append("<p>No scoring manifest found: checkpoint hashes were not checked.</p>")
    section("Diagnostics", "\n".join(diag))

    # provenance -----------------------------------------------------------------------
    prov: dict[str, Any] = {
        "command": command if command is not None else " ".join(sys.argv),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "panel_dir": str(panel_dir),
        "versions": _versions(),
        "panels": {m.name: {"path": m.path, "meta": _short_meta(m.panel.meta)} for m in fam.models},
    }
    section("Provenance", f"<pre>{html.escape(json.dumps(prov, indent=1, default=str))}</pre>")

    for title, content in sections:
        section(str(title), str(content))

    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>causalmem report: {html.escape(Path(panel_dir).name)}</title>"
        f"<style>{_CSS}</style></head><body>\n"
        f"<h1>Memorisation profiles: {html.escape(Path(panel_dir).name)}</h1>\n"
        f"<ol>{''.join(toc)}</ol>\n" + "\n".join(body) + "\n</body></html>\n"
    )
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, page)
    return target


def _short_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Panel metadata with long per-checkpoint lists summarised."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if k == "user" and isinstance(v, Mapping):
            user = {}
            for uk, uv in v.items():
                if isinstance(uv, list) and len(uv) > 3:
                    user[uk] = f"[{len(uv)} entries; first: {json.dumps(uv[0], default=str)[:300]}]"
                else:
                    user[uk] = uv
            out[k] = user
        else:
            out[k] = v
    return out
