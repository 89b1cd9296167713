"""Analysis 00 (``make demo``): the whole mission in one run, with one index.

1. Memorisation (``causalmem demo``): a mini-Pythia trained here, its checkpoints scored, the
   Callaway & Sant'Anna memorisation profile estimated
   (:func:`causalmem.workflows.lab_demo.run_lab_demo`) -> ``<out>/memorisation/``.
2. Sentiment steer (``steer demo``): a steer for SmolLM2-135M-Instruct trained offline and swept
   over its strength, scored with VADER (:func:`steer.workflows.demo.run_demo`, with the fast
   preset ``steer_fast.toml``) -> ``<out>/steer/``; its chart -> ``<out>/figures/``.
3. ``<out>/index.html`` and ``<out>/report.md``: both headlines, links to each part's report,
   tables and figures.

A rerun in the same folder reuses a finished part whose recorded config matches (``--force``
reruns both; the memorisation part then still reuses its trained checkpoints and scores).

Usage: ``python analyses/00_demo/run.py [--out DIR] [--config TOML] [--force]``
(default output: ``out/demo``).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import dataclasses
import html
import json
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from lmecon.atomic import atomic_write_text
from lmecon.provenance import utc_now

if TYPE_CHECKING:
    from causalmem.lab.config import LabConfig
    from steer.workflows.demo import SteerDemoConfig

HERE = Path(__file__).parent
Log = Callable[[str], None]
MISSION_KEYS = ("memorisation_dir", "steer_dir", "steer_preset")
TITLE = "The mission: memorisation profiles and a sentiment steer"
STEER_FIGURE = "figures/steer_vader_by_value"
MEMORISATION_FIGURES = (
    ("profile", "Memorisation profile τ(g, c)"),
    ("instantaneous_lr", "Instantaneous memorisation τ(g, g) and the learning rate"),
    ("event_path", "Memorisation path θ(e) by steps since training"),
)


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MissionConfig:
    """Settings of the mission run (``config.toml``).

    Attributes
    ----------
    lab
        The memorisation part's settings (the ``[lab_demo]`` table).
    steer
        The steer part's settings (the ``[demo]`` table of ``steer_preset``).
    memorisation_dir, steer_dir
        Sub-folders of the output folder for the two parts.
    steer_preset
        The preset file read for ``steer`` ("" = ``steer demo``'s defaults).
    """

    lab: LabConfig
    steer: SteerDemoConfig
    memorisation_dir: str = "memorisation"
    steer_dir: str = "steer"
    steer_preset: str = ""


def load_config(path: str | os.PathLike[str]) -> MissionConfig:
    """Read the mission's TOML config: ``[mission]`` and ``[lab_demo]`` tables.

    Parameters
    ----------
    path
        The TOML file; ``steer_preset`` is resolved relative to its folder.

    Returns
    -------
    MissionConfig
        The parsed settings; unknown tables or keys are an error.
    """
    from causalmem.lab.config import LabConfig
    from steer.workflows.demo import SteerDemoConfig

    path = Path(path)
    data = tomllib.loads(path.read_text())
    unknown = sorted(set(data) - {"mission", "lab_demo"})
    if unknown:
        raise ValueError(f"{path}: unknown tables {unknown}; known: ['lab_demo', 'mission'].")
    mission = data.get("mission", {})
    bad = sorted(set(mission) - set(MISSION_KEYS))
    if bad:
        raise ValueError(f"{path}: unknown [mission] keys {bad}; known: {sorted(MISSION_KEYS)}.")
    preset = str(mission.get("steer_preset", ""))
    steer = SteerDemoConfig.from_toml(path.parent / preset) if preset else SteerDemoConfig()
    return MissionConfig(
        lab=LabConfig.from_toml(path),
        steer=steer,
        memorisation_dir=str(mission.get("memorisation_dir", "memorisation")),
        steer_dir=str(mission.get("steer_dir", "steer")),
        steer_preset=preset,
    )


# ----------------------------------------------------------------------------- the two parts
def _normal(x: Any) -> Any:
    """``x`` as it reads back from JSON (tuples -> lists, paths -> strings)."""
    return json.loads(json.dumps(x, default=str))


def finished(marker: Path, report: Path, config: Any) -> bool:
    """Whether a part's folder holds a finished run of ``config``.

    Parameters
    ----------
    marker
        The JSON file the part writes at its end, with a ``config`` entry.
    report
        The part's report (must exist too).
    config
        The part's config dataclass.

    Returns
    -------
    bool
        True when both files exist and the recorded config equals ``config``.
    """
    if not (marker.is_file() and report.is_file()):
        return False
    try:
        stored = json.loads(marker.read_text()).get("config")
    except (OSError, ValueError):
        return False
    return bool(stored == _normal(dataclasses.asdict(config)))


def run_memorisation(out: Path, cfg: LabConfig, *, force: bool, log: Log) -> str:
    """Run the causalmem lab demo into ``out`` unless a finished run of ``cfg`` is there.

    Returns
    -------
    str
        ``"reused"`` or ``"ran"``.
    """
    if not force and finished(out / "run.json", out / "report.md", cfg):
        log(f"memorisation: reusing the finished run in {out}/")
        return "reused"
    from causalmem.workflows.lab_demo import run_lab_demo

    log(f"memorisation: the causalmem lab demo -> {out}/")
    run_lab_demo(out, cfg, log=log)
    return "ran"


def run_steer(out: Path, cfg: SteerDemoConfig, *, force: bool, log: Log) -> str:
    """Run the steer demo into ``out`` unless a finished run of ``cfg`` is there.

    Returns
    -------
    str
        ``"reused"`` or ``"ran"``.
    """
    if not force and finished(out / "summary.json", out / "report.md", cfg):
        log(f"steer: reusing the finished run in {out}/")
        return "reused"
    import torch

    from steer.workflows.demo import run_demo

    torch.set_num_threads(1)  # fastest on 2 shared cores (see steer.cli)
    log(f"steer: the LM-Steer sentiment demo -> {out}/")
    run_demo(out, cfg, log=log)
    return "ran"


def steer_figure(steer_dir: Path, stem: Path) -> list[Path]:
    """Chart the steer part's mean VADER score against the steer value (PNG and HTML).

    Parameters
    ----------
    steer_dir
        The steer part's folder (``generations.csv``, ``summary.json``).
    stem
        Output path without suffix.

    Returns
    -------
    list of Path
        The files written.
    """
    from lmecon.charts import save_chart
    from steer.charts import generation_chart

    gens = pd.read_csv(steer_dir / "generations.csv")
    model = json.loads((steer_dir / "summary.json").read_text()).get("model", "model")
    frame = gens.assign(model=str(model).split("/")[-1])[["model", "value", "vader"]]
    return save_chart(generation_chart(frame), stem, ("png", "html"))


# ----------------------------------------------------------------------------- the index
@dataclass(frozen=True)
class Section:
    """One part of the index, rendered to Markdown and HTML alike.

    Attributes
    ----------
    title
        Section heading.
    label
        Short name of the part (the headline list).
    bullets
        Headline sentences (plain text).
    table
        Header row then body rows (empty: no table).
    figures
        ``(caption, png, html)`` paths relative to the index ("" html: no interactive version).
    links
        ``(label, path)`` relative to the index.
    """

    title: str
    label: str
    bullets: tuple[str, ...]
    table: tuple[tuple[str, ...], ...] = ()
    figures: tuple[tuple[str, str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _figure(caption: str, stem: Path, root: Path) -> tuple[tuple[str, str, str], ...]:
    """``((caption, png, html),)`` relative to ``root`` if ``stem.png`` exists, else ``()``."""
    png, page = stem.with_suffix(".png"), stem.with_suffix(".html")
    if not png.exists():
        return ()
    return ((caption, _rel(png, root), _rel(page, root) if page.exists() else ""),)


def _existing_links(root: Path, items: list[tuple[str, Path]]) -> tuple[tuple[str, str], ...]:
    return tuple((label, _rel(p, root)) for label, p in items if p.exists())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def memorisation_section(out: Path, mem_dir: Path) -> Section:
    """Headline, figures and links of the memorisation part (from its ``run.json``).

    Parameters
    ----------
    out
        The index's folder (links are relative to it).
    mem_dir
        The memorisation part's folder.

    Returns
    -------
    Section
    """
    title = "1. Memorisation profile of a mini-Pythia trained here (causalmem)"
    label = "Memorisation"
    run = _read_json(mem_dir / "run.json")
    if run is None or "headline" not in run:
        return Section(title, label, (f"Not run yet: no {_rel(mem_dir / 'run.json', out)}.",))
    h = run["headline"]
    unit = h.get("unit", "nats")
    bullets = (
        memorisation_headline(h),
        f"Instantaneous memorisation significant in {h['instantaneous_significant']} of "
        f"{h['n_cohorts']} cohorts (t from {h['instantaneous_min_t']:.1f} to "
        f"{h['instantaneous_max_t']:.1f}); pre-trend Wald test p-value "
        f"{h['pretest_p_value']:.3g}.",
        f"{h['n_params'] / 1e6:.2f}M-parameter GPT-NeoX; {h['n_trained_instances']:,} trained and "
        f"{h['n_never']:,} never-trained instances; outcome {h['outcome']} ({unit}).",
    )
    figs = tuple(
        f for n, cap in MEMORISATION_FIGURES for f in _figure(cap, mem_dir / "figures" / n, out)
    )
    links = _existing_links(
        out,
        [
            ("report", mem_dir / "report.md"),
            ("instantaneous table", mem_dir / "tables" / "instantaneous.md"),
            ("residual table", mem_dir / "tables" / "residual.md"),
            ("event-path table", mem_dir / "tables" / "event_path.md"),
            ("run.json (config, timings, provenance)", mem_dir / "run.json"),
            ("panel", mem_dir / "panel.parquet"),
        ],
    )
    return Section(title, label, bullets, figures=figs, links=links)


def memorisation_headline(h: dict[str, Any]) -> str:
    """One sentence: instantaneous and residual memorisation and their correlation with the LR.

    Parameters
    ----------
    h
        The ``headline`` entry of the lab demo's ``run.json``.

    Returns
    -------
    str
    """
    unit = h.get("unit", "nats")
    return (
        f"Instantaneous memorisation τ(g, g): mean {h['instantaneous_mean']:.2f} {unit}; "
        f"residual at the last checkpoint (step {int(h['residual_at']):,}): mean "
        f"{h['residual_mean']:.2f} {unit}; correlation of τ(g, g) with the learning rate: "
        f"{h['corr_instantaneous_lr']:.2f}."
    )


def steer_headline(table: pd.DataFrame) -> str:
    """One sentence: the VADER positive share of the continuations at each steer value.

    Parameters
    ----------
    table
        The steer demo's ``vader_by_epsilon.csv`` (``value``, ``positive_share``).

    Returns
    -------
    str
    """
    vals = " / ".join(f"{v:+g}" for v in table["value"])
    shares = " / ".join(f"{p:.2f}" for p in table["positive_share"])
    return f"VADER positive share of the continuations at steer value s = {vals}: {shares}."


def _steer_table(table: pd.DataFrame) -> tuple[tuple[str, ...], ...]:
    cols = [
        ("value", "s", "{:+g}"),
        ("epsilon", "ε", "{:+.2g}"),
        ("n", "n", "{}"),
        ("positive_share", "VADER positive share", "{:.2f}"),
        ("vader_mean", "mean VADER", "{:+.3f}"),
        ("dist_2", "dist-2", "{:.2f}"),
        ("perplexity_median", "perplexity (median)", "{:.1f}"),
    ]
    have = [c for c in cols if c[0] in table.columns]
    columns = [[fmt.format(v) for v in table[c].tolist()] for c, _, fmt in have]
    return (tuple(h for _, h, _ in have), *zip(*columns, strict=True))


def steer_section(out: Path, steer_dir: Path) -> Section:
    """Headline, table, figure and links of the steer part (``vader_by_epsilon.csv``).

    Parameters
    ----------
    out
        The index's folder (links are relative to it; the chart is ``out/figures/...``).
    steer_dir
        The steer part's folder.

    Returns
    -------
    Section
    """
    label = "Sentiment steer"
    csv, summary = steer_dir / "vader_by_epsilon.csv", _read_json(steer_dir / "summary.json")
    if not csv.is_file() or summary is None:
        return Section(f"2. {label} (LM-Steer)", label, (f"Not run yet: no {_rel(csv, out)}.",))
    title = f"2. {label} of {str(summary['model']).split('/')[-1]} (LM-Steer)"
    table = pd.read_csv(csv)
    cfg = summary.get("config", {})
    bullets = (
        steer_headline(table),
        f"Mean VADER compound rises strictly with s: {summary['vader_rises_with_epsilon']} "
        f"(Spearman {summary['spearman_value_vader']:.2f}); the model without any steer: mean "
        f"VADER {summary['unsteered']['vader_mean']:+.3f}.",
        f"{summary['n_train_texts']} VADER-rated {cfg.get('source', '')} snippets, "
        f"{cfg.get('steps', '?')} training steps; {int(table['n'].iloc[0])} prompts x "
        f"{cfg.get('max_new_tokens', '?')} greedy tokens per value (model {summary['model']}).",
    )
    figs = _figure("Mean VADER compound by steer value (±1.96 s.e.)", out / STEER_FIGURE, out)
    links = _existing_links(
        out,
        [
            ("report (with example generations)", steer_dir / "report.md"),
            ("VADER by epsilon", steer_dir / "vader_by_epsilon.md"),
            ("generations", steer_dir / "generations.csv"),
            ("loss history", steer_dir / "loss_history.csv"),
            ("summary.json (config, timings)", steer_dir / "summary.json"),
            ("the trained steer (folder)", steer_dir / "steer"),
        ],
    )
    return Section(title, label, bullets, _steer_table(table), figs, links)


def index_markdown(sections: list[Section], stamp: str) -> str:
    """Render the index as Markdown.

    Parameters
    ----------
    sections
        The two parts.
    stamp
        When the index was written (shown in the header).

    Returns
    -------
    str
    """
    lines = [
        f"# {TITLE}",
        "",
        f"Written {stamp} by `analyses/00_demo/run.py` (`make demo`).",
        "",
        "## Headlines",
        "",
        *[f"- **{s.label}**: {s.bullets[0]}" for s in sections],
        "",
    ]
    for s in sections:
        lines += [f"## {s.title}", "", *[f"- {b}" for b in s.bullets], ""]
        if s.table:
            head, *rows = s.table
            lines += ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
            lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
        for cap, png, page in s.figures:
            img = f"![{cap}]({png})"
            lines += [f"[{img}]({page})" if page else img, ""]
        if s.links:
            lines += ["Files: " + ", ".join(f"[{lab}]({p})" for lab, p in s.links), ""]
    return "\n".join(lines)


def index_html(sections: list[Section], stamp: str) -> str:
    """Render the index as a self-contained HTML page (figures linked, not inlined).

    Parameters
    ----------
    sections
        The two parts.
    stamp
        When the index was written (shown in the header).

    Returns
    -------
    str
    """
    e = html.escape
    body = [
        f"<h1>{e(TITLE)}</h1>",
        f"<p>Written {e(stamp)} by <code>analyses/00_demo/run.py</code> (<code>make demo</code>)"
        ".</p>",
        "<h2>Headlines</h2>",
        "<ul>"
        + "".join(f"<li><b>{e(s.label)}</b>: {e(s.bullets[0])}</li>" for s in sections)
        + "</ul>",
    ]
    for s in sections:
        items = "".join(f"<li>{e(b)}</li>" for b in s.bullets)
        body += [f"<h2>{e(s.title)}</h2>", f"<ul>{items}</ul>"]
        if s.table:
            head, *rows = s.table
            cells = ["".join(f"<th>{e(h)}</th>" for h in head)]
            cells += ["".join(f"<td>{e(c)}</td>" for c in r) for r in rows]
            body.append("<table>" + "".join(f"<tr>{c}</tr>" for c in cells) + "</table>")
        for cap, png, page in s.figures:
            img = f'<img src="{e(png)}" alt="{e(cap)}">'
            link = f'<a href="{e(page)}">{img}</a>' if page else img
            body.append(f"<figure>{link}<figcaption>{e(cap)}</figcaption></figure>")
        if s.links:
            body.append(
                "<p>Files: "
                + ", ".join(f'<a href="{e(p)}">{e(lab)}</a>' for lab, p in s.links)
                + "</p>"
            )
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
        "text-align:right}img{max-width:100%}figure{margin:1em 0}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>make demo: the mission</title><style>{style}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_index(out: Path, mem_dir: Path, steer_dir: Path) -> list[Path]:
    """Write ``out/index.html`` and ``out/report.md`` from the two parts' outputs (atomically).

    Parameters
    ----------
    out
        The mission's output folder.
    mem_dir, steer_dir
        The parts' folders (a missing part is shown as "not run yet").

    Returns
    -------
    list of Path
        The two files written.
    """
    sections = [memorisation_section(out, mem_dir), steer_section(out, steer_dir)]
    stamp = utc_now()
    return [
        atomic_write_text(out / "index.html", index_html(sections, stamp)),
        atomic_write_text(out / "report.md", index_markdown(sections, stamp)),
    ]


# ----------------------------------------------------------------------------- main
def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    ap.add_argument("--config", type=Path, default=HERE / "config.toml", help="TOML config")
    ap.add_argument("--force", action="store_true", help="rerun finished parts")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run both parts (or reuse them) and write the index."""
    args = _parse(argv)
    cfg = load_config(args.config)
    out: Path = args.out
    mem_dir, steer_dir = out / cfg.memorisation_dir, out / cfg.steer_dir

    def log(msg: str) -> None:
        print(f"- {msg}", flush=True)

    t0 = time.perf_counter()
    mem = run_memorisation(mem_dir, cfg.lab, force=args.force, log=log)
    t1 = time.perf_counter()
    st = run_steer(steer_dir, cfg.steer, force=args.force, log=log)
    t2 = time.perf_counter()
    steer_figure(steer_dir, out / STEER_FIGURE)
    files = write_index(out, mem_dir, steer_dir)
    log(
        f"memorisation {mem} in {t1 - t0:.0f} s, steer {st} in {t2 - t1:.0f} s; "
        f"total {time.perf_counter() - t0:.0f} s"
    )
    for s in (memorisation_section(out, mem_dir), steer_section(out, steer_dir)):
        print(f"{s.title}\n  {s.bullets[0]}")
    print(f"wrote {files[0]} and {files[1]}")


if __name__ == "__main__":
    main()
