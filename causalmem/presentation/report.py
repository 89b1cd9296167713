"""Render one self-contained HTML report of fitted memorisation profiles (renders only).

:func:`render_report` turns what :func:`causalmem.workflows.report.build_report` fitted (the
family analysis, each model's event-time path, manifests, provenance) into one HTML page:

* figures, embedded as inline SVG rendered by vl-convert (no scripts, stylesheets or fonts are
  fetched: the file opens offline);
* tables (per-model summaries, ``etable`` of the event-time paths, correlations, prediction);
* diagnostics (pre-trend joint test per model, bootstrap and band settings, scoring manifests
  and duplicated checkpoint weights);
* provenance (panel parquet metadata, package versions, the command).

Extra sections (``(title, html)`` pairs, e.g. from :func:`read_section`) are appended. Nothing
here fits a model, reads a panel or writes a file.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmecon.charts import chart_svg

__all__ = ["ReportContent", "read_section", "render_report", "short_meta"]

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


@dataclass(frozen=True)
class ReportContent:
    """Everything a report shows, fitted beforehand (see ``causalmem.workflows.report``).

    Attributes
    ----------
    name
        Title of the report (the panel folder's name).
    outcome
        Outcome column the profiles are estimated on.
    analysis
        The family analysis (``analyse_family``): ``fit``, ``epoch_end``, ``findings``,
        ``comparisons``, ``prediction`` and ``correlations()``.
    models
        One row per model (``Family.tidy()`` without paths).
    dynamic
        Model name -> its ``aggte(type="dynamic", min_e=0)`` result (the etable's columns).
    lr
        Every model's learning-rate schedule (``model, step, lr``; may be empty).
    biters, alp
        Bootstrap draws and significance level used for the bands.
    findings_markdown
        The findings (i)-(iii) as Markdown, or ``None`` for a single model.
    manifests
        One row per model with a scoring manifest (may be empty).
    duplicates
        Checkpoints whose weights hash equal another step's (pitfall 10).
    provenance
        JSON-serialisable provenance (command, time, versions, panel metadata).
    sections
        Extra ``(title, html)`` sections appended at the end.
    sensitivity
        Model name -> its :class:`~causalmem.results.sensitivity.SensitivityResult` (HonestDiD
        robust sets for the instantaneous effect), or the reason it could not be computed
        (``str``); the section is left out when empty.
    """

    name: str
    outcome: str
    analysis: Any
    models: pd.DataFrame
    dynamic: Mapping[str, Any]
    lr: pd.DataFrame
    biters: int
    alp: float
    findings_markdown: str | None
    manifests: pd.DataFrame
    duplicates: pd.DataFrame
    provenance: Mapping[str, Any]
    sections: Sequence[tuple[str, str]] = field(default_factory=tuple)
    sensitivity: Mapping[str, Any] = field(default_factory=dict)


def read_section(path: str | os.PathLike[str]) -> tuple[str, str]:
    """Read a pre-rendered HTML section file as a ``(title, html)`` pair for a report.

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


def short_meta(meta: Mapping[str, Any]) -> dict[str, Any]:
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


_FINDING_LABELS = (
    ("finding_i", "(i) larger models memorise more and more persistently"),
    ("finding_ii", "(ii) instantaneous memorisation tracks the learning rate"),
    ("finding_iii", "(iii) profiles are highly correlated across sizes / predictable"),
)


def _summary(c: ReportContent) -> str:
    an = c.analysis
    fit = an.fit
    out = [
        f"<p>{len(c.models)} model(s); outcome <code>{html.escape(c.outcome)}</code>, "
        f"memorisation = {'+' if fit.sign > 0 else '−'}ATT; Callaway &amp; Sant'Anna ATT(g, c) "
        f"with never-trained controls, varying base period, {c.biters} multiplier-bootstrap "
        f"draws, uniform {1 - c.alp:.0%} band; first-epoch end T = {an.epoch_end:g}.</p>",
        _table(c.models, caption="Models"),
    ]
    if an.findings is not None:
        verdicts = []
        for key, label in _FINDING_LABELS:
            ok = bool(an.findings[key]["holds"])
            verdicts.append(
                f'<li>{html.escape(label)}: <b class="{"ok" if ok else "bad"}">'
                f"{'holds' if ok else 'does not hold'}</b></li>"
            )
        out.append(
            "<p>The paper's findings on these models (criteria and numbers under "
            "<i>Findings</i>):</p><ul>" + "".join(verdicts) + "</ul>"
        )
    return "\n".join(out)


def _figures(c: ReportContent) -> str:
    from causalmem.presentation import charts

    an = c.analysis
    fit = an.fit
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
    inst = fit.instantaneous()
    if len(c.lr) and set(inst["model"]) <= set(c.lr["model"]):
        figs.append(
            _figure(
                charts.family_instantaneous_lr(inst, c.lr),
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
    for key, comp in (an.comparisons or {}).items():
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
    if an.comparisons and an.prediction is not None:
        figs.append(
            _figure(
                charts.prediction_scatter(an.prediction.cells),
                "Held-out cohorts of the largest model: predicted vs estimated.",
            )
        )
    return "\n".join(figs)


def _tables(c: ReportContent) -> str:
    from causalmem.presentation.tables import etable

    an = c.analysis
    fit = an.fit
    et = etable(
        list(c.dynamic.values()),
        list(c.dynamic),
        digits=3,
        caption=f"Event-time path θ(e) of {c.outcome} (ATT scale; * = band excludes 0)",
    )
    inst = fit.instantaneous()
    inst_cols = ["model", "group", "estimate", "std_error", "conf_low", "conf_high", "lr_mean"]
    res_cols = ["model", "at", "group", "estimate", "std_error", "conf_low", "conf_high"]
    bh = "; p_value_adj: Benjamini–Hochberg across the model's cohorts"
    tabs = [
        et.to_html(),
        _table(_with_bh(inst, inst_cols), caption="Instantaneous memorisation τ(g, g)" + bh),
        _table(_with_bh(fit.residual(), res_cols), caption="Residual memorisation τ(g, T)" + bh),
    ]
    if an.comparisons:
        tabs.append(_table(an.correlations(), caption="Profile correlations (both variants)"))
        if an.prediction is not None:
            pred = an.prediction
            caption = (
                f"Prediction of {pred.target} from {', '.join(pred.predictors)}: "
                "out-of-sample errors"
            )
            tabs.append(_table(pred.tidy(), caption=caption))
            tabs.append(_table(pred.coefficients, caption="Prediction coefficients"))
    return "\n".join(tabs)


def _with_bh(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """``frame[cols]`` plus ``p_value_adj``: BH-adjusted ``p_value`` within each model's rows."""
    from causalmem.results.base import adjust_pvalues

    out = frame[cols].copy()
    if "p_value" not in frame:
        return out
    out["p_value_adj"] = float("nan")
    key = frame["model"] if "model" in frame else pd.Series("", index=frame.index)
    for _, rows in frame.groupby(key, sort=False):
        out.loc[rows.index, "p_value_adj"] = adjust_pvalues(rows["p_value"].to_numpy(), "BH")
    return out


def _diagnostics(c: ReportContent) -> str:
    fit = c.analysis.fit
    diag = [
        _table(fit.pretrends(), caption="Pre-trend (placebo) cells and joint Wald test per model"),
        _table(
            fit.glance().drop(columns=["control_group"], errors="ignore"),
            caption="Estimation settings and inference per model",
        ),
    ]
    if len(c.manifests):
        dup = c.duplicates
        diag.append(_table(c.manifests, caption="Scoring manifests"))
        diag.append(
            "<p>Duplicated checkpoint weights (same hash at two steps, pitfall 10): "
            + ("none." if dup.empty else "</p>" + _table(dup) + "<p>")
            + "</p>"
        )
    else:
        diag.append("<p>No scoring manifest found: checkpoint hashes were not checked.</p>")
    return "\n".join(diag)


def _sensitivity(c: ReportContent) -> str:
    """Robust confidence sets (Rambachan & Roth 2023) per model, with the breakdown value."""
    parts = [
        "<p>How much may trained and never-trained instances drift apart between checkpoints "
        "before the instantaneous memorisation effect (e = 0) loses its sign? Under "
        "&Delta;<sup>SD</sup>(M) the slope of that drift may change by at most M per "
        "checkpoint; M = 0 allows only a linear drift extrapolated from the pre-training "
        "checkpoints. The robust 95% sets are fixed-length confidence intervals (FLCI, R "
        "HonestDiD's default); the breakdown value is the smallest M at which the set includes "
        "0. Event study: att_gt with a universal base period, event times -20..20 in "
        "checkpoint positions.</p>"
    ]
    rows = []
    for name, res in c.sensitivity.items():
        if isinstance(res, str):
            parts.append(f"<p>{html.escape(str(name))}: not computed ({html.escape(res)}).</p>")
            continue
        g = res.glance().iloc[0]
        rows.append(
            {
                "model": name,
                "estimate": g["original_estimate"],
                "conf_low": g["original_low"],
                "conf_high": g["original_high"],
                "m_max": g["m_max"],
                "breakdown_m": g["breakdown"],
            }
        )
    if rows:
        parts.append(
            _table(pd.DataFrame(rows), caption="Instantaneous effect: original CI and breakdown M")
        )
    for name, res in c.sensitivity.items():
        if isinstance(res, str):
            continue
        t = res.tidy()[["term", "m", "lower", "upper", "method", "restriction"]]
        parts.append(_table(t, caption=f"{name}: robust sets by M"))
        try:
            parts.append(
                _figure(
                    res.plot(title=f"{name}: sensitivity of the e = 0 effect"),
                    f"{name}: original CI (left) and FLCI by M",
                )
            )
        except ImportError:  # pragma: no cover - charts are optional
            pass
    return "\n".join(parts)


def render_report(content: ReportContent) -> str:
    """Return the report's HTML page (self-contained: inline SVG figures, inline CSS)."""
    body: list[str] = []
    toc: list[str] = []

    def section(title: str, text: str) -> None:
        anchor = f"s{len(toc) + 1}"
        toc.append(f'<li><a href="#{anchor}">{html.escape(title)}</a></li>')
        body.append(f'<h2 id="{anchor}">{html.escape(title)}</h2>\n{text}')

    section("Summary", _summary(content))
    section("Figures", _figures(content))
    section("Tables", _tables(content))
    if content.findings_markdown is not None:
        section("Findings (i)-(iii)", f"<pre>{html.escape(content.findings_markdown)}</pre>")
    section("Diagnostics", _diagnostics(content))
    if content.sensitivity:
        section("Sensitivity to parallel-trends violations (HonestDiD)", _sensitivity(content))
    prov = json.dumps(dict(content.provenance), indent=1, default=str)
    section("Provenance", f"<pre>{html.escape(prov)}</pre>")
    for title, text in content.sections:
        section(str(title), str(text))
    name = html.escape(content.name)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>causalmem report: {name}</title>"
        f"<style>{_CSS}</style></head><body>\n"
        f"<h1>Memorisation profiles: {name}</h1>\n"
        f"<ol>{''.join(toc)}</ol>\n" + "\n".join(body) + "\n</body></html>\n"
    )
