"""Memorisation during fine-tuning of a pretrained LM: fine-tune, sample, score, att_gt, profile.

The pipeline of the pre-training lab applied to a real pretrained model (SmolLM2-135M-Instruct
by default, :func:`lmecon.smollm.smollm2_dir`), fine-tuned in full and with LoRA on the same
recorded order of a real corpus (the VADER snippets by default):

1. corpus → the base model's tokenizer → packed, deduplicated, shuffled chunks
   (:func:`causalmem.lab.train.prepare_data`): held-out chunks never trained on, then the
   training order shared by every method;
2. fine-tuning with checkpoints (:func:`causalmem.lab.finetune.finetune`);
3. Pythia-style instances: ``k`` batches × ``m`` sequences of every macro-batch between two
   checkpoints (:func:`causalmem.instances.sample_macro_batches`) plus ``n_validation``
   never-trained chunks;
4. scoring of every instance at every checkpoint, a balanced panel
   (:func:`causalmem.scoring.runner.score`, resumable shards);
5. Callaway & Sant'Anna ATT(g, t) (:func:`causalmem.estimators.att_gt.att_gt`) and the
   memorisation profile (:class:`causalmem.analysis.profile.MemorisationProfile`):
   instantaneous τ(g, g) with the learning rate of its macro-batch, persistent θ(e) and
   residual τ(g, T).

Per method, ``out_dir/<method>/`` holds ``run/`` (recorded order, checkpoints, adapters),
``scores/``, ``panel.parquet`` and ``att_gt.csv``, ``instantaneous.csv``, ``persistent.csv``,
``residual.csv``, ``lr_schedule.csv``; ``out_dir/comparison.csv`` compares the methods. Reruns
reuse finished fine-tuning and scoring.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from causalmem.lab import _pipeline
from causalmem.lab.finetune import FinetuneConfig
from causalmem.results.base import provenance as _provenance
from lmecon.atomic import atomic_write_text
from lmecon.result import ResultMixin, frozen_mapping

if TYPE_CHECKING:
    from causalmem.analysis.profile import MemorisationProfile
    from causalmem.instances import Instances
    from causalmem.lab.finetune import FinetunedRun
    from causalmem.lab.train import LabData
    from causalmem.panel.panel import Panel
    from causalmem.results.attgt import AttGtResult

__all__ = [
    "FinetuneGroundTruth",
    "FinetuneMemorisation",
    "FinetuneMemorisationConfig",
    "MethodProfile",
    "comparison_chart",
    "finetune_ground_truth",
    "finetune_memorisation",
    "prepare_finetune_data",
    "run_finetune_memorisation",
]

Log = Callable[[str], None]
TruthKind = Literal["adjusted", "raw"]


def _quiet(_msg: str) -> None:
    return None


@dataclass(frozen=True)
class FinetuneMemorisationConfig:
    """Everything a fine-tuning memorisation run needs (one ``[profiles.<name>]`` TOML table).

    Attributes
    ----------
    model
        Base model: ``"smollm2-135m-instruct"`` (embedded, offline) or a transformers folder.
    corpus
        ``"vader"``, ``"hf:<name>"`` or a text file (:func:`causalmem.lab.corpus.load_corpus`).
    methods
        Fine-tuning config per method name (e.g. ``"full"``, ``"lora"``); they must share
        ``seq_len``, ``batch_size`` and ``steps`` (one recorded order for all).
    n_heldout
        Chunks held out of training in the split (the never-trained pool).
    n_validation
        Never-trained instances scored (drawn from the held-out chunks).
    k, m
        Batches per macro-batch and sequences per batch sampled as trained instances.
    outcome
        Scored metric analysed (``"logprob"``: sequence log-probability, nats).
    biters, alp
        Multiplier-bootstrap draws and significance level of ``att_gt``.
    seed
        Seed of the split, the sample and the bootstrap.
    scoring_batch_size
        Sequences per forward pass when scoring (None: automatic).
    num_threads
        torch threads for scoring (None: leave torch's setting).
    cache_dir
        Cache root of the corpus (None: the default).
    """

    model: str = "smollm2-135m-instruct"
    corpus: str = "vader"
    methods: Mapping[str, FinetuneConfig] = field(
        default_factory=lambda: {
            "full": FinetuneConfig(method="full"),
            "lora": FinetuneConfig(method="lora", lr=1e-3),
        }
    )
    n_heldout: int = 500
    n_validation: int = 100
    k: int = 4
    m: int = 4
    outcome: str = "logprob"
    biters: int = 1000
    alp: float = 0.05
    seed: int = 0
    scoring_batch_size: int | None = None
    num_threads: int | None = 1
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.methods:
            raise ValueError("methods is empty; configure at least one fine-tuning method.")
        shapes = {(c.seq_len, c.batch_size, c.steps) for c in self.methods.values()}
        if len(shapes) > 1:
            raise ValueError(
                f"the methods must share seq_len, batch_size and steps (one recorded order); "
                f"got {sorted(shapes)}."
            )
        if self.n_validation > self.n_heldout:
            raise ValueError(
                f"n_validation={self.n_validation} exceeds the held-out chunks n_heldout="
                f"{self.n_heldout}."
            )
        for name in ("n_validation", "k", "m", "biters"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer.")

    @property
    def shared(self) -> FinetuneConfig:
        """The config of the first method (its ``seq_len``, ``batch_size``, ``steps``)."""
        return next(iter(self.methods.values()))

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any]) -> FinetuneMemorisationConfig:
        """Build from a TOML table: scalars, ``[finetune]`` (shared) and one sub-table per method.

        ``finetune.<method>`` overrides the shared keys for that method; its ``method`` key
        defaults to the sub-table's name when that is ``full`` or ``lora``.
        """
        t = dict(table)
        ft = dict(t.pop("finetune", {}))
        per = {k: dict(v) for k, v in ft.items() if isinstance(v, Mapping)}
        shared = {k: v for k, v in ft.items() if not isinstance(v, Mapping)}
        if not per:
            raise ValueError("[finetune] needs one sub-table per method, e.g. [finetune.full].")
        methods = {}
        for name, over in per.items():
            values = {**shared, **over}
            values.setdefault("method", name)
            methods[name] = FinetuneConfig.from_mapping(values)
        known = {f for f in cls.__dataclass_fields__ if f != "methods"}
        unknown = sorted(set(t) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown}; known keys: {sorted(known)}.")
        return cls(methods=methods, **t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (methods as dicts)."""
        d = {k: v for k, v in asdict(self).items() if k != "methods"}
        d["methods"] = {k: asdict(v) for k, v in self.methods.items()}
        return d


@dataclass(frozen=True, eq=False)
class MethodProfile(ResultMixin):
    """One fine-tuning method's run, panel, ATT(g, t) and memorisation profile (immutable).

    ``instantaneous`` has τ(g, g) per cohort with ``lr_mean`` (mean learning rate of the
    macro-batch ``(base, g]``), ``persistent`` θ(e) for ``e >= 0`` (steps since training),
    ``residual`` τ(g, T) at the last checkpoint; all on the memorisation scale (positive =
    training raised the log-probability of its instances). ``provenance`` (filled in when not
    given) records the base model, run folder, timings and library versions; ``spec`` is the
    method's fine-tuning config (read-only).
    """

    method: str
    run: FinetunedRun
    panel: Panel
    att_gt: AttGtResult
    profile: MemorisationProfile
    instantaneous: pd.DataFrame
    persistent: pd.DataFrame
    residual: pd.DataFrame
    lr_schedule: pd.DataFrame
    timings: Mapping[str, float]
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        prov = dict(self.provenance) or _provenance(
            method=self.method,
            base_model=str(self.run.base_model),
            run_dir=str(self.run.run_dir),
            n_trainable=int(self.run.n_trainable),
            resumed_from=self.run.resumed_from,
            timings=dict(self.timings),
        )
        object.__setattr__(self, "provenance", frozen_mapping(prov))

    @property
    def spec(self) -> Mapping[str, Any]:
        """The method's name and fine-tuning config (read-only)."""
        return frozen_mapping({"method": self.method, **asdict(self.run.config)})

    def tidy(self) -> pd.DataFrame:
        """Return the profile in one long frame (new): instantaneous, persistent and residual.

        Columns: ``quantity`` (``"instantaneous"`` τ(g, g), ``"persistent"`` θ(e),
        ``"residual"`` τ(g, T)), ``method``, then the columns of those frames (``estimate``,
        ``std_error``, ``conf_low``, ``conf_high``, ``group`` / ``time`` or ``event_time``,
        ``lr_mean`` and ``lr_end`` for the instantaneous rows).
        """
        parts = {
            "instantaneous": self.instantaneous,
            "persistent": self.persistent,
            "residual": self.residual,
        }
        out = pd.concat(
            [f.assign(quantity=q, method=self.method) for q, f in parts.items()],
            ignore_index=True,
        )
        first = ["quantity", "method"]
        return out[first + [c for c in out.columns if c not in first]]

    def glance(self) -> pd.DataFrame:
        """One row: :meth:`summary_row` (sizes, losses, headline estimates, timings)."""
        return pd.DataFrame([self.summary_row()])

    def summary(self) -> str:
        """Return a printable summary of the run and its memorisation profile."""
        g = self.summary_row()
        return (
            f"{self.method} fine-tuning: {g['trainable_params']:,} trainable parameters, peak "
            f"LR {g['peak_lr']:.3g}, loss {g['loss_first']:.4g} -> {g['loss_last']:.4g}.\n"
            f"Instantaneous memorisation τ(g, g): mean {g['instantaneous_mean']:.4g} nats over "
            f"{g['n_cohorts']} cohorts ({g['instantaneous_significant']} significant), "
            f"correlation with the learning rate {g['corr_instantaneous_lr']:.3g}.\n"
            f"Persistent θ(e): {g['persistent_e0']:.4g} at e = 0, {g['persistent_last']:.4g} "
            f"[{g['persistent_last_low']:.4g}, {g['persistent_last_high']:.4g}] at e = "
            f"{g['persistent_last_e']:.0f}; mean residual τ(g, T) {g['residual_mean']:.4g}."
        )

    def _caption(self) -> str | None:
        return f"Memorisation profile of {self.method} fine-tuning (nats)"

    def plot(self, **options: Any) -> Any:
        """Chart this method's profile (:func:`comparison_chart`; ``options`` go to it)."""
        return comparison_chart([self], **options)

    def scoring_seconds(self) -> float:
        """Seconds spent loading and scoring checkpoints (from the scoring manifest)."""
        from causalmem.scoring.runner import read_manifest

        try:
            entries = read_manifest(self.run.run_dir.parent / "scores")["checkpoints"]
        except (OSError, KeyError, ValueError):
            return float("nan")
        return float(sum(e["seconds_load"] + e["seconds_score"] for e in entries))

    def summary_row(self) -> dict[str, Any]:
        """Headline numbers: mean instantaneous, persistent at the largest lag, mean residual."""
        inst, pers, res = self.instantaneous, self.persistent, self.residual
        last = pers.sort_values("event_time").iloc[-1] if len(pers) else None
        lr = inst["lr_mean"].to_numpy(float)
        est = inst["estimate"].to_numpy(float)
        corr = float(np.corrcoef(est, lr)[0, 1]) if len(inst) > 2 and np.std(lr) > 0 else np.nan
        hist = self.run.history
        return {
            "method": self.method,
            "trainable_params": int(self.run.n_trainable),
            "peak_lr": float(self.run.config.lr),
            "loss_first": float(hist["loss"].iloc[0]),
            "loss_last": float(hist["loss"].iloc[-1]),
            "instantaneous_mean": float(est.mean()),
            "instantaneous_significant": int(
                ((inst["conf_low"] > 0) | (inst["conf_high"] < 0)).sum()
            ),
            "n_cohorts": len(inst),
            "corr_instantaneous_lr": corr,
            "persistent_e0": float(pers.loc[pers["event_time"] == 0, "estimate"].iloc[0])
            if (pers["event_time"] == 0).any()
            else np.nan,
            "persistent_last_e": float(last["event_time"]) if last is not None else np.nan,
            "persistent_last": float(last["estimate"]) if last is not None else np.nan,
            "persistent_last_low": float(last["conf_low"]) if last is not None else np.nan,
            "persistent_last_high": float(last["conf_high"]) if last is not None else np.nan,
            "residual_mean": float(res["estimate"].mean()) if len(res) else np.nan,
            "seconds_finetune": float(self.run.seconds),
            "seconds_score": self.scoring_seconds(),
        }


@dataclass(frozen=True, eq=False)
class FinetuneMemorisation(ResultMixin):
    """The profiles of every method and where they were written (immutable).

    ``spec`` is the run's configuration (read-only, :meth:`FinetuneMemorisationConfig.to_dict`);
    ``provenance`` (filled in when not given) the output folder, the data split's provenance
    and library versions. The main table (:meth:`to_markdown`, ...) is :meth:`comparison`.
    """

    out_dir: Path
    config: FinetuneMemorisationConfig
    data_provenance: Mapping[str, Any]
    methods: Mapping[str, MethodProfile]
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", frozen_mapping(dict(self.methods)))
        prov = dict(self.provenance) or _provenance(
            out_dir=str(self.out_dir),
            model=self.config.model,
            methods=tuple(self.methods),
            data=dict(self.data_provenance),
        )
        object.__setattr__(self, "provenance", frozen_mapping(prov))

    @property
    def spec(self) -> Mapping[str, Any]:
        """The run's configuration (read-only)."""
        return frozen_mapping(self.config.to_dict())

    def tidy(self) -> pd.DataFrame:
        """Return every method's :meth:`MethodProfile.tidy` stacked (a new frame)."""
        return pd.concat([m.tidy() for m in self.methods.values()], ignore_index=True)

    def glance(self) -> pd.DataFrame:
        """One row: model, corpus, methods, split sizes and the shared fine-tuning shape."""
        d, sh = self.data_provenance, self.config.shared
        return pd.DataFrame(
            [
                {
                    "model": self.config.model,
                    "corpus": self.config.corpus,
                    "methods": ", ".join(self.methods),
                    "n_methods": len(self.methods),
                    "n_train": d.get("n_train"),
                    "n_heldout": d.get("n_validation"),
                    "seq_len": sh.seq_len,
                    "batch_size": sh.batch_size,
                    "steps": sh.steps,
                    "outcome": self.config.outcome,
                    "out_dir": str(self.out_dir),
                }
            ]
        )

    def summary(self) -> str:
        """Return the setting and the comparison of the methods."""
        g = self.glance().iloc[0]
        head = (
            f"Memorisation during fine-tuning of {g['model']} on {g['corpus']}: "
            f"{g['n_train']} training chunks of {g['seq_len']} tokens, {g['steps']} steps of "
            f"{g['batch_size']}; methods {g['methods']}; outcome {g['outcome']}."
        )
        return head + "\n\n" + self.comparison().to_string(index=False)

    def _table(self) -> pd.DataFrame:
        return self.comparison()

    def _caption(self) -> str | None:
        return "Memorisation during fine-tuning, per method"

    def plot(self, **options: Any) -> Any:
        """Chart the methods side by side (:func:`comparison_chart`; ``options`` go to it)."""
        return comparison_chart(self.methods, **options)

    def comparison(self) -> pd.DataFrame:
        """One row per method (:meth:`MethodProfile.summary_row`)."""
        return pd.DataFrame([m.summary_row() for m in self.methods.values()])


# ----------------------------------------------------------------------------- stages
def prepare_finetune_data(
    cfg: FinetuneMemorisationConfig, base: Path, *, log: Log = _quiet
) -> LabData:
    """Load the corpus, tokenise it with the base model's tokenizer and split it.

    Documents are deduplicated, encoded without special tokens, packed into ``seq_len``
    chunks (no separator), duplicate chunks removed and shuffled with ``cfg.seed``; the first
    ``n_heldout`` chunks are never trained on.
    """
    from transformers import AutoTokenizer

    from causalmem.lab.corpus import load_corpus
    from causalmem.lab.train import prepare_data

    corpus = load_corpus(cfg.corpus, cache=cfg.cache_dir, log=log).deduplicated()
    tok = AutoTokenizer.from_pretrained(base)
    ids = tok(list(corpus.documents), add_special_tokens=False)["input_ids"]
    docs = [np.asarray(x, dtype=np.int64) for x in ids]
    data = prepare_data(docs, cfg.shared.train_config(), n_validation=cfg.n_heldout, seed=cfg.seed)
    data.provenance.update(
        corpus=dict(corpus.provenance),
        n_documents=len(docs),
        tokenizer=str(base),
        tokenizer_vocab=int(len(tok)),
    )
    log(
        f"data: {len(docs):,} documents → {data.provenance['unique_chunks']:,} unique "
        f"{cfg.shared.seq_len}-token chunks; {data.provenance['n_train']:,} trained in a recorded "
        f"order, {data.provenance['n_validation']:,} held out"
    )
    return data


def _cohort_lr(ft: FinetuneConfig, steps: npt.ArrayLike) -> pd.DataFrame:
    """Mean and last LR of each cohort's steps (:func:`~causalmem.lab.train.cohort_lr`)."""
    from causalmem.lab.train import cohort_lr

    out = cohort_lr(ft.train_config(), steps)[["group", "lr_mean", "lr_end"]]
    return out.astype({"group": float})


def _profile_method(
    name: str,
    ft: FinetuneConfig,
    data: LabData,
    base: Path,
    out: Path,
    cfg: FinetuneMemorisationConfig,
    *,
    progress: bool,
    log: Log,
) -> MethodProfile:
    from causalmem.analysis.profile import MemorisationProfile
    from causalmem.lab.finetune import finetune
    from causalmem.panel.io import write_panel
    from causalmem.scoring.runner import score

    timings: dict[str, float] = {}
    d = out / name
    t0 = time.perf_counter()
    run = finetune(data, ft, d / "run", base_model=base, progress=progress, log=log)
    timings["finetune"] = time.perf_counter() - t0
    log(
        f"{name}: {run.n_trainable:,} trainable parameters, loss {run.history['loss'].iloc[0]:.3f}"
        f" → {run.history['loss'].iloc[-1]:.3f} in {timings['finetune']:.0f} s"
    )
    steps, tr, va, instances = _instances_of(run, cfg)
    # Balanced panel: every instance at every checkpoint (all placebo cells are estimable, and
    # the profile's dynamic aggregation needs no NaN cells).
    n_pairs = instances.n * steps.size
    log(
        f"{name}: {tr.n} trained instances ({steps.size - 1} cohorts) + {va.n} never trained; "
        f"{n_pairs} (instance, checkpoint) pairs to score"
    )
    t0 = time.perf_counter()
    panel: Any = score(
        run.checkpoints,
        instances,
        d / "scores",
        batch_size=cfg.scoring_batch_size or "auto",
        num_threads=cfg.num_threads,
        progress=progress,
        log=log,
    )
    timings["score"] = time.perf_counter() - t0
    write_panel(panel, d / "panel.parquet")
    t0 = time.perf_counter()
    res = _pipeline.fit_att_gt(panel, cfg)
    with _pipeline.expected_empty_cells():
        prof = MemorisationProfile.from_result(res)
    timings["estimate"] = time.perf_counter() - t0
    inst = prof.instantaneous().merge(_cohort_lr(ft, steps), on="group", how="left")
    pers = prof.persistent()
    resid = prof.residual()
    sched = run.lr_schedule()
    for fname, frame in {
        "att_gt.csv": prof.tidy(),
        "instantaneous.csv": inst,
        "persistent.csv": pers,
        "residual.csv": resid,
        "lr_schedule.csv": sched,
        "history.csv": run.history,
    }.items():
        atomic_write_text(d / fname, frame.to_csv(index=False))
    return MethodProfile(name, run, panel, res, prof, inst, pers, resid, sched, timings)


def finetune_memorisation(
    data: LabData,
    base_model: str | Path,
    out_dir: str | Path,
    cfg: FinetuneMemorisationConfig,
    *,
    methods: Sequence[str] | None = None,
    progress: bool = True,
    log: Log = _quiet,
) -> FinetuneMemorisation:
    """Fine-tune, sample, score and estimate the memorisation profile of each method.

    Parameters
    ----------
    data
        The split (:func:`prepare_finetune_data`, or
        :func:`~causalmem.lab.train.prepare_data` with ``cfg.shared.train_config()``).
    base_model
        The pretrained transformers folder (or ``"smollm2-135m-instruct"``).
    out_dir
        Output folder (one sub-folder per method; reruns resume).
    cfg
        The run's configuration.
    methods
        Subset of ``cfg.methods`` to run (default: all, in order).
    progress
        Show progress bars.
    log
        One-line messages.

    Returns
    -------
    FinetuneMemorisation
    """
    from causalmem.lab.finetune import resolve_base_model

    base = resolve_base_model(base_model, log=log)
    names = list(cfg.methods) if methods is None else list(methods)
    unknown = sorted(set(names) - set(cfg.methods))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; configured: {sorted(cfg.methods)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        n: _profile_method(n, cfg.methods[n], data, base, out, cfg, progress=progress, log=log)
        for n in names
    }
    res = FinetuneMemorisation(out, cfg, dict(data.provenance), results)
    atomic_write_text(out / "comparison.csv", res.comparison().to_csv(index=False))
    return res


def run_finetune_memorisation(
    out_dir: str | Path,
    cfg: FinetuneMemorisationConfig,
    *,
    methods: Sequence[str] | None = None,
    progress: bool = True,
    log: Log = _quiet,
) -> FinetuneMemorisation:
    """Run the whole pipeline from the corpus.

    :func:`prepare_finetune_data` then :func:`finetune_memorisation`; also writes
    ``out_dir/run.json`` (config, data provenance, timings). Parameters as in
    :func:`finetune_memorisation` (the base model is ``cfg.model``).
    """
    from causalmem.lab.finetune import resolve_base_model

    t0 = time.perf_counter()
    base = resolve_base_model(cfg.model, cache_dir=None, log=log)
    data = prepare_finetune_data(cfg, base, log=log)
    res = finetune_memorisation(
        data, base, out_dir, cfg, methods=methods, progress=progress, log=log
    )
    body = {
        "config": cfg.to_dict(),
        "base_model": str(base),
        "data": data.provenance,
        "methods": {k: dict(m.timings) for k, m in res.methods.items()},
        "seconds": time.perf_counter() - t0,
    }
    atomic_write_text(Path(out_dir) / "run.json", json.dumps(body, indent=1, default=str))
    return res


# ----------------------------------------------------------------------------- chart
def comparison_chart(
    parts: Mapping[str, MethodProfile] | Sequence[MethodProfile], *, title: str = ""
) -> Any:
    """Chart the methods side by side in four panels (Altair).

    Learning-rate schedule, instantaneous τ(g, g), persistent θ(e) and residual τ(g, T) at the
    last checkpoint, each with its confidence interval.
    """
    from lmecon.charts import alt

    a = alt()
    items = list(parts.values()) if isinstance(parts, Mapping) else list(parts)

    def cat(attr: str) -> pd.DataFrame:
        return pd.concat(
            [getattr(p, attr).assign(method=p.method) for p in items], ignore_index=True
        )

    color = a.Color("method:N", title="method")
    sched = cat("lr_schedule")
    lr = (
        a.Chart(sched, title="learning rate per step")
        .mark_line(point=True)
        .encode(
            x=a.X("step:Q", title="optimizer step"),
            y=a.Y("lr:Q", title="learning rate", scale=a.Scale(type="log")),
            color=color,
        )
        .properties(width=260, height=180)
    )

    def band(frame: pd.DataFrame, x: str, x_title: str, panel_title: str) -> Any:
        base = a.Chart(frame, title=panel_title).encode(x=a.X(f"{x}:Q", title=x_title), color=color)
        rule = a.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="gray").encode(y="y:Q")
        return (
            rule
            + base.mark_errorbar().encode(
                y=a.Y("conf_low:Q", title="memorisation (nats)"), y2="conf_high:Q"
            )
            + base.mark_line(point=True).encode(y="estimate:Q")
        ).properties(width=260, height=180)

    inst = band(cat("instantaneous"), "group", "cohort g (step trained)", "instantaneous τ(g, g)")
    pers = band(cat("persistent"), "event_time", "steps since training e", "persistent θ(e)")
    resid = band(cat("residual"), "group", "cohort g", "residual τ(g, T) at the last step")
    chart = a.vconcat(a.hconcat(lr, inst), a.hconcat(pers, resid))
    return chart.properties(title=title) if title else chart


# ----------------------------------------------------------------------------- ground truth
@dataclass(frozen=True, eq=False)
class FinetuneGroundTruth(ResultMixin):
    """True τ(g, c) of one method from counterfactual fine-tuning, and the estimates beside it.

    Run B repeats run A (same base model, config and positions) with every sampled training
    instance replaced by a reserve chunk, so B never trains on them; both runs score the same
    token sequences. ``truth`` has per cell ``truth_raw`` = mean over the cohort of
    ``Y^A(c) - Y^B(c)`` and ``truth_adjusted`` = that minus the same mean over the never-trained
    instances (the shift of run B's trajectory), on the memorisation scale, joined with the
    ``att_gt`` estimate of run A (``estimate``, ``conf_low``, ``conf_high``). Immutable;
    ``spec`` is the method and its fine-tuning config, ``provenance`` (filled in when not given)
    run B's folder, base model and library versions; the main table is :meth:`metrics`.
    """

    method: str
    run_b: FinetunedRun
    truth: pd.DataFrame
    provenance: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        prov = dict(self.provenance) or _provenance(
            method=self.method,
            run_dir_b=str(self.run_b.run_dir),
            base_model=str(self.run_b.base_model),
            n_cells=len(self.truth),
        )
        object.__setattr__(self, "provenance", frozen_mapping(prov))

    @property
    def spec(self) -> Mapping[str, Any]:
        """The method's name and the fine-tuning config of both runs (read-only)."""
        return frozen_mapping({"method": self.method, **asdict(self.run_b.config)})

    def tidy(self) -> pd.DataFrame:
        """Return the true τ(g, c) beside the estimates, one row per cell (a new frame)."""
        return self.truth.reset_index(drop=True).copy()

    def glance(self) -> pd.DataFrame:
        """One row: cells and the post-treatment bias, RMSE and coverage of both truths."""
        m = self.metrics()
        row: dict[str, Any] = {
            "method": self.method,
            "n_cells": len(self.truth),
            "n_post": int(self.truth["post"].sum()),
        }
        for _, r in m[m["period"] == "post"].iterrows():
            for k in ("bias", "rmse", "coverage", "corr"):
                row[f"{k}_{r['truth']}"] = r[k]
        return pd.DataFrame([row])

    def summary(self) -> str:
        """Return the setting and the estimates' bias, RMSE and coverage against the truth."""
        head = (
            f"Ground truth of {self.method} fine-tuning by counterfactual fine-tuning: "
            f"{len(self.truth)} cells ({int(self.truth['post'].sum())} post-treatment)."
        )
        return head + "\n\n" + self.metrics().to_string(index=False)

    def _table(self) -> pd.DataFrame:
        return self.metrics()

    def _caption(self) -> str | None:
        return f"ATT(g, t) of {self.method} fine-tuning against the counterfactual truth"

    def plot(self, *, truth: TruthKind = "adjusted", title: str = "") -> Any:
        """Chart the estimates (with intervals) against the truth, post-treatment cells (Altair).

        Parameters
        ----------
        truth
            ``"adjusted"`` (net of the never-trained shift) or ``"raw"``.
        title
            Chart title.
        """
        from lmecon.charts import alt
        from lmecon.options import check_literal

        check_literal("truth", truth, TruthKind)
        a = alt()
        col = f"truth_{truth}"
        t = self.truth[self.truth["post"]].assign(event_time=lambda f: f["time"] - f["group"])
        lo = float(np.nanmin(t[[col, "conf_low"]].to_numpy()))
        hi = float(np.nanmax(t[[col, "conf_high"]].to_numpy()))
        diag = (
            a.Chart(pd.DataFrame({"x": [lo, hi]}))
            .mark_line(color="gray", strokeDash=[4, 4])
            .encode(x="x:Q", y="x:Q")
        )
        base = a.Chart(t).encode(
            x=a.X(f"{col}:Q", title=f"true τ(g, c) ({truth}, nats)"),
            color=a.Color("event_time:O", title="steps since training"),
            tooltip=["group", "time", col, "estimate", "conf_low", "conf_high"],
        )
        bars = base.mark_errorbar().encode(
            y=a.Y("conf_low:Q", title="estimate (nats)"), y2="conf_high:Q"
        )
        pts = base.mark_point(filled=True).encode(y="estimate:Q")
        chart = (diag + bars + pts).properties(
            width=320, height=280, title=title or f"{self.method}: estimate vs truth"
        )
        return chart

    def metrics(self) -> pd.DataFrame:
        """Bias, RMSE, coverage and correlation of the estimates, post- and pre-treatment."""
        rows = []
        t = self.truth
        for period, part in (("post", t[t["post"]]), ("pre", t[~t["post"]])):
            for kind in ("truth_raw", "truth_adjusted"):
                err = part["estimate"] - part[kind]
                cover = (part["conf_low"] <= part[kind]) & (part[kind] <= part["conf_high"])
                corr = (
                    float(np.corrcoef(part["estimate"], part[kind])[0, 1])
                    if len(part) > 2 and part[kind].std() > 0
                    else np.nan
                )
                rows.append(
                    {
                        "method": self.method,
                        "period": period,
                        "truth": kind.removeprefix("truth_"),
                        "n_cells": len(part),
                        "mean_truth": float(part[kind].mean()),
                        "mean_estimate": float(part["estimate"].mean()),
                        "bias": float(err.mean()),
                        "rmse": float(np.sqrt((err**2).mean())),
                        "coverage": float(cover.mean()),
                        "corr": corr,
                    }
                )
        return pd.DataFrame(rows)


def finetune_ground_truth(
    result: MethodProfile,
    data: LabData,
    out_dir: str | Path,
    cfg: FinetuneMemorisationConfig,
    *,
    progress: bool = True,
    log: Log = _quiet,
) -> FinetuneGroundTruth:
    """Counterfactual fine-tuning (run B) for one method and the true memorisation profile.

    Parameters
    ----------
    result
        The method's run A (:attr:`FinetuneMemorisation.methods`).
    data
        The split run A was trained on (its reserve supplies the replacement chunks).
    out_dir
        The run's output folder; run B goes to ``out_dir/<method>_counterfactual/``.
    cfg
        The run's configuration.
    progress, log
        Progress bars and messages.

    Returns
    -------
    FinetuneGroundTruth

    Raises
    ------
    ValueError
        Too few reserve chunks to replace the sampled instances.
    """
    from causalmem.lab.finetune import finetune
    from causalmem.lab.train import LabData
    from causalmem.scoring.metrics import MEMORISATION_SIGN
    from causalmem.scoring.runner import score

    name, run_a = result.method, result.run
    d = Path(out_dir) / f"{name}_counterfactual"
    frame_a = result.panel.frame
    # trained instances: unit = position in the recorded order (never-trained: cohort NA)
    pos = np.sort(np.asarray(frame_a.loc[frame_a["cohort"].notna(), "unit"].unique(), np.int64))
    reserve = np.asarray(data.reserve)
    if reserve.shape[0] < pos.size:
        raise ValueError(
            f"{pos.size} sampled instances need as many reserve chunks; the split has "
            f"{reserve.shape[0]}. Hold out fewer chunks or sample fewer instances."
        )
    train_b = np.array(data.train, copy=True)
    train_b[pos] = reserve[: pos.size]
    data_b = LabData(
        validation=data.validation,
        train=train_b,
        reserve=reserve[pos.size :],
        provenance={**dict(data.provenance), "counterfactual_swapped_positions": pos.tolist()},
    )
    t0 = time.perf_counter()
    run_b = finetune(
        data_b, run_a.config, d / "run", base_model=run_a.base_model, progress=progress, log=log
    )
    log(f"{name} counterfactual: fine-tuned in {time.perf_counter() - t0:.0f} s")
    instances: Instances = _instances_of(run_a, cfg)[3]
    panel_b: Any = score(
        run_b.checkpoints,
        instances,
        d / "scores",
        batch_size=cfg.scoring_batch_size or "auto",
        num_threads=cfg.num_threads,
        progress=progress,
        log=log,
    )
    y = cfg.outcome
    sign = int(MEMORISATION_SIGN[y])
    a = frame_a[["unit", "step", "cohort", y]].rename(columns={y: "ya", "step": "time"})
    b = panel_b.frame[["unit", "step", y]].rename(columns={y: "yb", "step": "time"})
    both = a.merge(b, on=["unit", "time"], how="inner", validate="one_to_one")
    both["diff"] = sign * (both["ya"] - both["yb"])
    never = both[both["cohort"].isna()].groupby("time")["diff"].mean().rename("control_shift")
    cells = (
        both[both["cohort"].notna()]
        .groupby(["cohort", "time"])["diff"]
        .agg(["mean", "size"])
        .reset_index()
        .rename(columns={"cohort": "group", "mean": "truth_raw", "size": "n"})
    )
    cells = cells.merge(never.reset_index(), on="time", how="left")
    cells["truth_adjusted"] = cells["truth_raw"] - cells["control_shift"]
    cells["group"] = cells["group"].astype(float)
    cells["time"] = cells["time"].astype(float)
    est = result.profile.tidy()[["group", "time", "estimate", "conf_low", "conf_high", "post"]]
    truth = cells.merge(est, on=["group", "time"], how="inner")
    atomic_write_text(d / "truth.csv", truth.to_csv(index=False))
    return FinetuneGroundTruth(name, run_b, truth)


def _instances_of(
    run: FinetunedRun, cfg: FinetuneMemorisationConfig
) -> tuple[npt.NDArray[np.int64], Instances, Instances, Instances]:
    """Sample the scored instances of ``run``: k × m per macro-batch and the never-trained.

    Returns the checkpoint steps, the trained instances, the never-trained ones and both.
    """
    from causalmem.instances import sample_macro_batches

    steps = np.asarray(run.checkpoint_steps, dtype=np.int64)
    sample = sample_macro_batches(steps, run.config.batch_size, k=cfg.k, m=cfg.m, seed=cfg.seed)
    return (steps, *_pipeline.lab_instances(run, sample, cfg))
