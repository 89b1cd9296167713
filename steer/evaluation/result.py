"""The result of :func:`steer.evaluation.harness.evaluate` and how it is written to disk."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lmecon.provenance import jsonable
from lmecon.result import render_table
from steer._types import Level, check_literal
from steer.errors import SteerInputError

__all__ = ["EvaluateSpec", "Evaluation", "Level", "save_evaluations"]


@dataclass(frozen=True)
class EvaluateSpec:
    """The call that made an :class:`Evaluation` (everything but the model and the prompts)."""

    settings: tuple[tuple[float, ...], ...] | None
    slot_names: tuple[str, ...]
    labelled_slots: tuple[int, ...]
    epsilon: float | None
    base_model: str | None
    prompt_set: str
    n_prompts: int
    samples: int
    new_tokens: int
    top_p: float
    temperature: float
    seed: int
    scorers: tuple[str, ...]
    scorer_sources: tuple[str, ...]
    perplexity_model: str
    batch_size: int


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Scored samples of a steer evaluation (immutable: frames are returned as copies).

    Attributes
    ----------
    spec
        The call (settings, protocol, scorers).
    created_at
        UTC time of the call.
    seconds
        Wall-clock time of generation + scoring.
    provenance
        Library versions and scorer sources.
    """

    spec: EvaluateSpec
    _samples: pd.DataFrame = field(repr=False)
    _prompts: pd.DataFrame = field(repr=False)
    _values: pd.DataFrame = field(repr=False)
    created_at: str = ""
    seconds: float = math.nan
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def tidy(self, level: Level = "value") -> pd.DataFrame:
        """Return the results as a tidy frame.

        Parameters
        ----------
        level
            ``"sample"``: one row per continuation (``prompt_set, setting, value, epsilon,
            value_<slot>..., values, prompt_id, prompt, sample, seed, continuation, n_tokens,
            token_ids``, one column per scorer, ``perplexity``). ``"prompt"``: one row per
            (setting, prompt) with the per-prompt metrics. ``"value"``: one row per (setting,
            metric): ``estimate`` (mean over prompts), ``std_error`` (over prompts),
            ``conf_low``/``conf_high`` (+-1.96 SE), ``n_prompts``; sample-level statistics
            (``ppl_median``, ``ppl_over_1e4``, ``ppl_mean_below_1e4``) have no SE.

        Returns
        -------
        pandas.DataFrame
            A copy.
        """
        check_literal("level", level, Level)
        frame = {"sample": self._samples, "prompt": self._prompts, "value": self._values}[level]
        return frame.copy()

    def glance(self) -> pd.DataFrame:
        """One row: the protocol (model, prompts, settings, samples, tokens, scorers), timing."""
        sp = self.spec
        return pd.DataFrame(
            [
                {
                    "prompt_set": sp.prompt_set,
                    "base_model": sp.base_model,
                    "n_settings": len(sp.settings) if sp.settings is not None else 1,
                    "n_prompts": sp.n_prompts,
                    "samples": sp.samples,
                    "new_tokens": sp.new_tokens,
                    "top_p": sp.top_p,
                    "temperature": sp.temperature,
                    "seed": sp.seed,
                    "scorers": ",".join(sp.scorers),
                    "perplexity_model": sp.perplexity_model,
                    "created_at": self.created_at,
                    "seconds": self.seconds,
                }
            ]
        )

    def summary(self) -> str:
        """Return the protocol in one line and the Markdown table of :meth:`summary_frame`."""
        g = self.glance().iloc[0]
        who = g["base_model"] or "the unsteered model"
        head = (
            f"Evaluation of {who} on {g['n_prompts']} prompts ({g['prompt_set']}) x "
            f"{g['n_settings']} settings x {g['samples']} samples x {g['new_tokens']} tokens "
            f"(top-p {g['top_p']:g}, T {g['temperature']:g}, seed {g['seed']}; scorers "
            f"{g['scorers']}; perplexity under {g['perplexity_model']})"
        )
        return head + "\n\n" + self.to_markdown()

    def summary_frame(self) -> pd.DataFrame:
        """One row per (prompt set, setting): each metric's estimate and ``<metric>_se``."""
        v = self._values
        ids = [c for c in v.columns if c not in {"metric", "estimate", "std_error", "conf_low",
                                                   "conf_high", "n_prompts"}]  # fmt: skip
        order = list(dict.fromkeys(v["metric"]))
        keys = ["prompt_set", "setting"]
        est = v.pivot(index=keys, columns="metric", values="estimate")[order]
        with_se = [m for m in order if v.loc[v["metric"] == m, "std_error"].notna().any()]
        se = v.pivot(index=keys, columns="metric", values="std_error")[with_se]
        se.columns = [f"{m}_se" for m in with_se]
        wide = est.join(se).reset_index()
        wide.columns.name = None
        n = v.drop_duplicates(keys)[[*ids, "n_prompts"]]
        return n.merge(wide, on=keys, how="left").reset_index(drop=True)

    def to_markdown(self, metrics: Sequence[str] | None = None, floatfmt: str = ".3f") -> str:
        """Markdown table of :meth:`summary_frame` (``estimate ± se`` cells)."""
        v = self._values
        metrics = list(metrics) if metrics is not None else list(dict.fromkeys(v["metric"]))
        s = self.summary_frame()
        slot_cols = [c for c in s.columns if c.startswith("value_")]
        ids = ["prompt_set", *(slot_cols or ["value"])]
        head = ids + metrics
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        for _, r in s.iterrows():
            cells = [str(r["prompt_set"])] + [f"{r[c]:+g}" for c in ids[1:]]
            for m in metrics:
                se = r.get(f"{m}_se", math.nan)
                est = r[m]
                fmt = ".0f" if m == "ppl_over_1e4" else floatfmt
                cell = format(est, fmt) if np.isfinite(est) else "nan"
                if np.isfinite(se):
                    cell += f" ± {format(se, floatfmt)}"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_latex(self, digits: int = 4) -> str:
        """Return :meth:`summary_frame` as a LaTeX (booktabs) table."""
        return render_table(self.summary_frame(), "latex", digits)

    def _repr_html_(self) -> str:
        return render_table(self.summary_frame(), "html", 4)

    def plot(
        self, metrics: Sequence[str] | None = None, *, x: str = "value", **options: Any
    ) -> Any:
        """Epsilon curves: each metric against the steer value with 95% bands (Altair).

        The paper's Fig. 4a, built by :func:`steer.charts.evaluation.epsilon_curves` from
        ``tidy("value")``: one panel per metric, one colour per prompt set. For a grid of two
        steers use :func:`steer.charts.evaluation.composition_grid`.

        Parameters
        ----------
        metrics
            Metrics to show, in panel order (default: those of the paper's figure that were
            scored, else the first four scored).
        x
            Setting column on the x axis (``value``, ``epsilon`` or ``value_<slot>``).
        **options
            Passed to the chart function (titles, ``columns``, panel size).

        Returns
        -------
        altair.FacetChart
        """
        from steer.core.charts import epsilon_curves

        frame = self.tidy("value")
        if metrics is None:
            have = list(dict.fromkeys(frame["metric"]))
            paper = ("vader_positive", "vader_mean", "ppl_median", "dist_2")
            metrics = [m for m in paper if m in have] or have[:4]
        return epsilon_curves(frame, metrics, x=x, **options)


def save_evaluations(
    evaluations: Evaluation | Sequence[Evaluation],
    folder: str | os.PathLike[str],
    *,
    markdown_metrics: Sequence[str] | None = None,
) -> list[Path]:
    """Write one or several evaluations (e.g. one per prompt set) to a folder, atomically.

    Files: ``samples.parquet``, ``prompts.parquet``, ``values.parquet`` (the three
    :meth:`Evaluation.tidy` levels, concatenated; each holds the specs in its pandas ``attrs``
    metadata), ``summary.csv`` and ``summary.md`` (:meth:`Evaluation.summary_frame` /
    :meth:`Evaluation.to_markdown`) and ``evaluation.json`` (specs, provenance, timings).

    Parameters
    ----------
    evaluations
        Results of :func:`evaluate`.
    folder
        Output folder (created).
    markdown_metrics
        Columns of the markdown table (default: every metric).

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    from lmecon.atomic import atomic_write_parquet, atomic_write_text

    evs = [evaluations] if isinstance(evaluations, Evaluation) else list(evaluations)
    if not evs:
        raise SteerInputError("save_evaluations needs at least one evaluation.")
    out = Path(folder)
    meta = {
        "evaluations": [
            {"spec": dataclasses.asdict(e.spec), "created_at": e.created_at,
             "seconds": e.seconds, "provenance": dict(e.provenance)}
            for e in evs
        ]
    }  # fmt: skip
    meta = jsonable(meta)
    files = []
    for level in ("sample", "prompt", "value"):
        frame = pd.concat([e.tidy(level) for e in evs], ignore_index=True)  # type: ignore[arg-type]
        frame.attrs = {"steer_evaluation": json.dumps(meta)}
        name = {"sample": "samples", "prompt": "prompts", "value": "values"}[level]
        files.append(atomic_write_parquet(out / f"{name}.parquet", frame))
    summary = pd.concat([e.summary_frame() for e in evs], ignore_index=True)
    files.append(atomic_write_text(out / "summary.csv", summary.to_csv(index=False)))
    md = "\n\n".join(f"### {e.spec.prompt_set}\n\n" + e.to_markdown(markdown_metrics)
                     for e in evs)  # fmt: skip
    files.append(atomic_write_text(out / "summary.md", md + "\n"))
    files.append(atomic_write_text(out / "evaluation.json", json.dumps(meta, indent=2) + "\n"))
    return files
