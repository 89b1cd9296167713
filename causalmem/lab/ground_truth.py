"""The true memorisation profile of a lab run, by counterfactual retraining.

No study of Pythia can check its estimates against the truth: Pythia is a single run. The lab
can. Run A is the lab run as is. Run B has the same initialisation seed, the same data order and
the same schedule, except that the sampled (treated) instances of the chosen cohorts are replaced,
position for position, by reserve chunks that neither run otherwise sees. In run B a treated
instance ``x`` is therefore never trained on, so its score there is the counterfactual
``Y_c(x; ∞)`` of Definition 2 of Lesci et al. (2024), and

    τ(g, c) = mean over x in cohort g of (Y^A_c(x) − Y^B_c(x))

is the true expected counterfactual memorisation (Definition 3) of the sampled instances: the
*sample* average treatment effect on the treated, which an estimator computed from run A alone
should recover. Its standard error is the spread over instances.

Because training is deterministic on the CPU (fixed order, no dropout), A and B are
bit-identical up to the first swapped batch; :func:`ground_truth` checks the weights of every
checkpoint before it and the loss history, and raises :class:`~causalmem.errors.GroundTruthError`
when they differ (the truth would then mix the swap with another difference). After the first
swap the two trajectories diverge everywhere, so the truth of a cohort also carries the (small)
effect of the other cohorts' swaps on its instances; ``control_shift`` measures that effect on
never-trained instances.

Layout of ``out_dir`` (every stage resumable: rerunning reuses finished training and scoring)::

    tokenizer/        BPE (shared by both runs)
    A/, B/            lab runs (data/, checkpoints/, run.json)
    scores_A/, scores_B/   per-checkpoint shards of the same instances (balanced: every
                           instance at every analysed checkpoint)
    ground_truth.json provenance: configs, fingerprints, seeds, swapped positions, checks
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import norm

from causalmem.errors import GroundTruthError
from causalmem.lab import _pipeline
from causalmem.results.base import provenance
from lmecon.atomic import atomic_write_text
from lmecon.result import ResultMixin, frozen_mapping

if TYPE_CHECKING:
    from causalmem.instances import Instances
    from causalmem.lab.config import LabConfig
    from causalmem.lab.train import LabData, TrainConfig, TrainedRun
    from causalmem.panel.panel import Panel

__all__ = [
    "GroundTruth",
    "ReexposureTruth",
    "event_path_truth",
    "ground_truth",
    "reexposure_ground_truth",
    "reexposure_sample",
    "replicate_config",
    "swap_instances",
    "truth_from_scores",
]

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True, eq=False)
class GroundTruth(ResultMixin):
    """The true memorisation profile τ(g, c) of a lab run and the runs behind it (immutable).

    Attributes
    ----------
    truth
        One row per (outcome, cohort, checkpoint): the true τ(g, c) on the memorisation scale
        (see :meth:`tidy`).
    control_shift
        Per (outcome, checkpoint): mean over never-trained instances of ``Y^A − Y^B`` on the
        memorisation scale (zero before the first swap; afterwards the effect of the swaps on
        instances that neither run trained on: a spill-over plus trajectory noise).
    panel
        Run A's scored panel (balanced, estimator-ready: never-trained cohort ``<NA>``).
    counterfactual
        Run B's scored panel, same instances and checkpoints.
    swapped
        The replaced training positions: ``seq_idx``, ``batch``, ``step``, ``cohort``, ``base``
        and ``reserve_row`` (row of the reserve chunk trained there in run B).
    checks
        One row per training checkpoint: ``step``, ``hash_a``, ``hash_b``, ``identical`` and
        ``expected_identical`` (steps before the first swapped batch).
    first_swap_step
        Optimizer step of the first swapped batch (None when nothing was swapped).
    analysis_steps
        The checkpoints scored and analysed (cohorts are the macro-batches between them).
    outcome
        The headline outcome; ``sign`` turns its differences into memorisation.
    provenance
        Configs, data and run fingerprints, seeds, timings and library versions.
    """

    truth: pd.DataFrame = field(repr=False)
    control_shift: pd.DataFrame = field(repr=False)
    panel: Panel = field(repr=False)
    counterfactual: Panel = field(repr=False)
    swapped: pd.DataFrame = field(repr=False)
    checks: pd.DataFrame = field(repr=False)
    first_swap_step: int | None
    analysis_steps: tuple[int, ...]
    outcome: str
    sign: int
    provenance: dict[str, Any] = field(repr=False, default_factory=dict)

    def tidy(self, outcome: str | None = None) -> pd.DataFrame:
        """Return the true τ(g, c) per cell of one outcome (default: the headline one), a new frame.

        Columns: ``term, estimate, std_error, statistic, p_value, conf_low, conf_high, group,
        time, event_time`` (steps), ``event_period`` (checkpoints on the analysed grid),
        ``post``, ``n``, ``swapped`` (whether the cohort's instances were replaced), ``outcome``,
        and the run-level correction: ``control_shift`` (mean ``Y^A − Y^B`` of never-trained
        instances at ``time``), ``estimate_adjusted = estimate − control_shift`` and its
        ``std_error_adjusted``. ``estimate`` is the truth as defined (mean ``Y^A − Y^B``);
        the adjusted value removes the common shift of run B's trajectory, which the swaps of
        *all* sampled cohorts cause and which a single-instance counterfactual would not have.
        Intervals are pointwise 95% normal intervals over instances.
        """
        name = outcome or self.outcome
        t = self.truth[self.truth["outcome"] == name]
        if t.empty:
            raise ValueError(f"no truth for outcome {name!r}; have {sorted(self.truth.outcome)}.")
        return t.reset_index(drop=True).copy()

    def event_path(
        self, outcome: str | None = None, *, swapped_only: bool = True, adjusted: bool = False
    ) -> pd.DataFrame:
        """Return the true path θ(e): the n-weighted mean of τ(g, g + e) over cohorts, per period.

        Parameters
        ----------
        outcome
            Outcome (default: the headline outcome).
        swapped_only
            Average only cohorts whose instances were replaced (the others have τ = 0 by
            construction up to spill-over).
        adjusted
            Aggregate the truth net of the control shift (see :meth:`tidy`).

        Returns
        -------
        pandas.DataFrame
            ``event_period``, ``estimate``, ``std_error``, ``n_cohorts``, ``n``.
        """
        return event_path_truth(self.tidy(outcome), swapped_only=swapped_only, adjusted=adjusted)

    @property
    def spec(self) -> Mapping[str, Any]:
        """The design of the counterfactual pair (frozen): outcome, sign, grid, first swap."""
        return frozen_mapping(
            {
                "outcome": self.outcome,
                "sign": self.sign,
                "analysis_steps": self.analysis_steps,
                "first_swap_step": self.first_swap_step,
                "swap_cohorts": tuple(
                    sorted(set(self.swapped.get("cohort", pd.Series()).tolist()))
                ),
            }
        )

    def summary(self) -> str:
        """Return a printable summary: the design checks and the true event path."""
        g = self.glance().iloc[0]
        head = (
            f"Ground truth by counterfactual retraining ({self.outcome}, memorisation sign "
            f"{self.sign:+d}): {g['n_cohorts']} cohorts, {g['n_swapped']} swapped instances, "
            f"first swapped step {g['first_swap_step']}; identical checkpoints before it: "
            f"{g['n_identical_checkpoints']} (checks passed: {g['checks_passed']}); mean "
            f"instantaneous τ(g, g) = {g['instantaneous_mean']:.4g}."
        )
        path = self.event_path()
        return head + "\n\n" + path.to_string(index=False)

    def _caption(self) -> str | None:
        return f"True memorisation τ(g, c) of {self.outcome} (counterfactual retraining)"

    def glance(self) -> pd.DataFrame:
        """One-row summary: sizes, first swapped step, checks passed, mean instantaneous τ."""
        t = self.tidy()
        inst = t[(t["time"] == t["group"]) & t["swapped"]]
        return pd.DataFrame(
            [
                {
                    "outcome": self.outcome,
                    "n_cohorts": int(t["group"].nunique()),
                    "n_swapped": len(self.swapped),
                    "first_swap_step": self.first_swap_step,
                    "n_identical_checkpoints": int(self.checks["identical"].sum()),
                    "checks_passed": bool(
                        (self.checks["identical"] == self.checks["expected_identical"]).all()
                    ),
                    "instantaneous_mean": float(inst["estimate"].mean()),
                }
            ]
        )


def event_path_truth(
    truth: pd.DataFrame, *, swapped_only: bool = True, adjusted: bool = False
) -> pd.DataFrame:
    """Aggregate a truth table (:meth:`GroundTruth.tidy`) to event periods, weights ``n``.

    ``adjusted=True`` aggregates ``estimate_adjusted`` (and its SE) instead of ``estimate``.
    """
    t = truth[truth["swapped"]] if swapped_only and "swapped" in truth else truth
    est, sec = (
        ("estimate_adjusted", "std_error_adjusted") if adjusted else ("estimate", "std_error")
    )
    rows = []
    for e, d in t.groupby("event_period", sort=True):
        w = d["n"].to_numpy(np.float64) / d["n"].sum()
        rows.append(
            {
                "event_period": int(cast("int", e)),
                "estimate": float(w @ d[est].to_numpy()),
                "std_error": float(np.sqrt(w**2 @ d[sec].to_numpy() ** 2)),
                "n_cohorts": len(d),
                "n": int(d["n"].sum()),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- pure parts
def swap_instances(
    data: LabData, positions: npt.ArrayLike
) -> tuple[LabData, npt.NDArray[np.int64]]:
    """Replace training positions by reserve chunks (run B's data; ``data`` is not modified).

    Parameters
    ----------
    data
        Run A's split.
    positions
        Positions in the training order (``seq_idx``) to replace, distinct.

    Returns
    -------
    (LabData, numpy.ndarray)
        Run B's split (same validation chunks, the reserve without the chunks used) and, for
        each position in the given order, the reserve row trained there instead.

    Raises
    ------
    ValueError
        Positions are repeated or out of range, or the reserve is too small.
    """
    from causalmem.lab.train import LabData

    pos = np.asarray(positions, dtype=np.int64).reshape(-1)
    if np.unique(pos).size != pos.size:
        raise ValueError("swap positions must be distinct.")
    if pos.size and (pos.min() < 0 or pos.max() >= data.train.shape[0]):
        raise ValueError(f"swap positions must lie in [0, {data.train.shape[0]}).")
    if pos.size > data.reserve.shape[0]:
        raise ValueError(
            f"{pos.size} positions to swap but only {data.reserve.shape[0]} reserve chunks; use "
            "fewer swapped cohorts, fewer instances per cohort (k, m) or a larger corpus."
        )
    rows = np.arange(pos.size, dtype=np.int64)
    train = np.array(data.train, copy=True)
    train[pos] = data.reserve[rows]
    reserve = np.array(data.reserve[pos.size :], copy=True)
    for a in (train, reserve):
        a.setflags(write=False)
    prov = {
        **data.provenance,
        "n_reserve": int(reserve.shape[0]),
        "swapped_positions": int(pos.size),
        "swapped_from": "reserve rows 0 .. n_swapped - 1 (the reserve is a seeded permutation)",
    }
    seq_id = None
    if data.sequence_id is not None:  # multi-epoch order: fillers get id -1
        seq_id = np.array(data.sequence_id, copy=True)
        seq_id[pos] = -1
        seq_id.setflags(write=False)
    return LabData(data.validation, train, reserve, prov, sequence_id=seq_id), rows


def truth_from_scores(
    a: pd.DataFrame,
    b: pd.DataFrame,
    outcomes: Sequence[str],
    signs: Sequence[int],
    analysis_steps: npt.ArrayLike,
    swapped_cohorts: Sequence[int],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the true τ(g, c) from the scores of runs A and B (pure; see :func:`ground_truth`).

    Parameters
    ----------
    a, b
        Long frames with ``unit, step, cohort`` and the outcome columns, the same
        (unit, step) keys in both (run A and run B scores of the same instances).
    outcomes, signs
        Outcome columns and the sign turning each into memorisation (+1 log-probability,
        −1 surprisal, …).
    analysis_steps
        The analysed checkpoint grid (for ``event_period``).
    swapped_cohorts
        Cohorts whose instances were replaced in run B.

    Returns
    -------
    (truth, control_shift)
        See :class:`GroundTruth`.
    """
    m = _merge_runs(a, b, outcomes)
    grid = np.unique(np.asarray(analysis_steps, dtype=np.int64))
    pos = {int(s): i for i, s in enumerate(grid)}
    sw = {int(g) for g in swapped_cohorts}
    never = m["cohort"].isna().to_numpy()
    truth_parts, ctrl_parts = [], []
    for name, sign in zip(outcomes, signs, strict=True):
        diff = sign * (m[f"{name}_a"].to_numpy(np.float64) - m[f"{name}_b"].to_numpy(np.float64))
        d = pd.DataFrame({"group": m["cohort"].astype("float64"), "time": m["step"], "diff": diff})
        part = _cell_truth(d[~never], name, pos, sw)
        ctrl = _control_shift(d[never], name)
        truth_parts.append(_adjust(part, ctrl))
        ctrl_parts.append(ctrl)
    return (
        pd.concat(truth_parts, ignore_index=True),
        pd.concat(ctrl_parts, ignore_index=True),
    )


def _merge_runs(a: pd.DataFrame, b: pd.DataFrame, outcomes: Sequence[str]) -> pd.DataFrame:
    """Join the scores of runs A and B on (unit, step); suffixes ``_a`` and ``_b``."""
    keys = ["unit", "step"]
    if len(a) != len(b):
        raise ValueError(f"runs A and B have {len(a)} and {len(b)} scored rows; score both alike.")
    m = a[[*keys, "cohort", *outcomes]].merge(
        b[[*keys, *outcomes]], on=keys, suffixes=("_a", "_b"), validate="one_to_one"
    )
    if len(m) != len(a):
        raise ValueError("runs A and B were scored on different (unit, step) pairs.")
    return m


def _cell_truth(d: pd.DataFrame, name: str, pos: dict[int, int], sw: set[int]) -> pd.DataFrame:
    """Return τ(g, t) of one outcome: mean and SE over instances of the differences ``d``.

    ``d`` holds the trained instances' ``group``, ``time`` and ``diff``; ``pos`` maps a
    checkpoint to its position on the analysed grid, ``sw`` holds the swapped cohorts.
    """
    g = d.groupby(["group", "time"], sort=True)["diff"]
    cell = g.agg(["mean", "std", "count"]).reset_index()
    se = cell["std"].fillna(0.0).to_numpy() / np.sqrt(cell["count"].to_numpy())
    est = cell["mean"].to_numpy()
    z = norm.ppf(0.975)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(se > 0, est / se, np.nan)
    gi = cell["group"].astype(np.int64).to_numpy()
    ti = cell["time"].astype(np.int64).to_numpy()
    return pd.DataFrame(
        {
            "term": [f"tau({x},{y})" for x, y in zip(gi, ti, strict=True)],
            "estimate": est,
            "std_error": se,
            "statistic": stat,
            "p_value": 2 * norm.sf(np.abs(stat)),
            "conf_low": est - z * se,
            "conf_high": est + z * se,
            "group": gi,
            "time": ti,
            "event_time": ti - gi,
            "event_period": [
                pos.get(int(y), -1) - pos.get(int(x), -1) for x, y in zip(gi, ti, strict=True)
            ],
            "post": ti >= gi,
            "n": cell["count"].to_numpy(np.int64),
            "swapped": [int(x) in sw for x in gi],
            "outcome": name,
        }
    )


def _control_shift(d: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return the mean difference of never-trained instances per checkpoint (one outcome)."""
    c = d.groupby("time", sort=True)["diff"].agg(["mean", "std", "count"]).reset_index()
    return pd.DataFrame(
        {
            "time": c["time"].astype(np.int64),
            "estimate": c["mean"].astype(np.float64),
            "std_error": c["std"].fillna(0.0) / np.sqrt(c["count"]),
            "n": c["count"].astype(np.int64),
            "outcome": name,
        }
    )


def _adjust(part: pd.DataFrame, ctrl: pd.DataFrame) -> pd.DataFrame:
    """Add ``control_shift``, ``estimate_adjusted`` and ``std_error_adjusted`` to ``part``."""
    shift = part["time"].map(ctrl.set_index("time")["estimate"]).fillna(0.0)
    shift_se = part["time"].map(ctrl.set_index("time")["std_error"]).fillna(0.0)
    part["control_shift"] = shift.to_numpy()
    part["estimate_adjusted"] = part["estimate"].to_numpy() - shift.to_numpy()
    part["std_error_adjusted"] = np.sqrt((part["std_error"] ** 2 + shift_se**2).to_numpy())
    return part


# ----------------------------------------------------------------------------- the lab parts
def _lab_inputs(
    cfg: LabConfig, out: Path, log: Log | None
) -> tuple[LabData, TrainConfig, int, dict[str, Any]]:
    """Corpus → tokenizer (reused when present) → packed, shuffled split (as the lab demo)."""
    corpus, sha = _pipeline.load_documents(cfg, log)
    tokenizer, _ = _pipeline.fit_tokenizer(corpus, sha, cfg.vocab_size, out / "tokenizer")
    tcfg = cfg.train_config()
    data = _pipeline.split_data(tokenizer, corpus, cfg, tcfg)
    return data, tcfg, int(tokenizer.get_vocab_size()), _pipeline.corpus_provenance(corpus, sha)


def _hashes(run: TrainedRun) -> dict[int, str]:
    from causalmem.scoring.checkpoints import load_causal_lm, weights_hash

    return {int(c.step or 0): weights_hash(load_causal_lm(c)) for c in run.checkpoints}


def _check_identical(run_a: TrainedRun, run_b: TrainedRun, first_swap: int | None) -> pd.DataFrame:
    """Compare checkpoint weights and losses; raise unless identical exactly before the swap."""
    ha, hb = _hashes(run_a), _hashes(run_b)
    steps = sorted(ha)
    limit = np.inf if first_swap is None else first_swap
    checks = pd.DataFrame(
        {
            "step": steps,
            "hash_a": [ha[s] for s in steps],
            "hash_b": [hb.get(s, "") for s in steps],
        }
    )
    checks["identical"] = checks["hash_a"] == checks["hash_b"]
    checks["expected_identical"] = checks["step"] < limit
    bad_pre = checks[checks["expected_identical"] & ~checks["identical"]]
    if len(bad_pre):
        raise GroundTruthError(
            f"runs A and B differ at checkpoints {bad_pre['step'].tolist()} although the first "
            f"swapped batch is at step {first_swap}; training is not deterministic here (set "
            "num_threads=1, keep the CPU, no dropout) or the two runs do not share config/order."
        )
    la = run_a.history.set_index("step")["loss"]
    lb = run_b.history.set_index("step")["loss"]
    pre = la.index[la.index < limit]
    if not np.array_equal(la.loc[pre].to_numpy(), lb.loc[pre].to_numpy()):
        raise GroundTruthError(
            f"the loss histories of runs A and B differ before step {first_swap}; the runs are "
            "not bit-identical before the first swapped batch."
        )
    if first_swap is not None:
        post = checks[checks["step"] >= first_swap]
        if len(post) and bool(post["identical"].iloc[0]):
            raise GroundTruthError(
                f"run B equals run A at checkpoint {int(post['step'].iloc[0])}, after the swap at "
                f"step {first_swap}: the swapped chunks were not trained (check the reserve)."
            )
        if la.loc[first_swap] == lb.loc[first_swap]:
            raise GroundTruthError(
                f"the loss at the first swapped step {first_swap} is the same in both runs."
            )
    return checks


def ground_truth(
    out_dir: str | os.PathLike[str],
    cfg: LabConfig | None = None,
    *,
    swap_cohorts: Sequence[int] | None = None,
    outcomes: Sequence[str] | None = None,
    log: Log | None = None,
    progress: bool = False,
) -> GroundTruth:
    """Train paired lab runs A and B, score both, and return the true τ(g, c).

    Run A is the lab demo's run for ``cfg`` (corpus, tokenizer, recorded order, Pythia-style
    sample of ``k × m`` instances per macro-batch on the analysed grid, ``n_validation``
    never-trained chunks). Run B repeats it with the sampled instances of ``swap_cohorts``
    replaced by reserve chunks. Both runs score every instance at every analysed checkpoint
    (a balanced panel, whatever ``cfg.pre_periods`` says: the event-study estimators and the
    placebo truth need it).

    Parameters
    ----------
    out_dir
        Folder for both runs (created; a rerun reuses finished training and scoring).
    cfg
        Lab settings (default :class:`~causalmem.lab.config.LabConfig`); ``seed`` is the
        data-order and sampling seed, ``model_seed`` the initialisation seed of both runs.
    swap_cohorts
        Cohorts whose sampled instances are replaced in run B (default: every sampled
        cohort; ``()`` swaps nothing, so B = A and τ = 0 exactly).
    outcomes
        Outcomes to compute the truth for (default: every scored metric). The headline outcome
        is ``cfg.outcome``.
    log
        Progress messages.
    progress
        Rich progress bars for training and scoring.

    Returns
    -------
    GroundTruth

    Raises
    ------
    GroundTruthError
        The runs are not bit-identical before the first swapped batch (checkpoint weights or
        losses), or identical after it.
    ValueError
        Unknown swap cohorts, too few reserve chunks, or a multi-epoch ``cfg``.

    Examples
    --------
    >>> from causalmem.lab.config import LabConfig
    >>> gt = ground_truth("out/gt", LabConfig(steps=300))  # doctest: +SKIP
    >>> gt.tidy()[["group", "time", "estimate", "std_error"]]  # doctest: +SKIP
    """
    from causalmem.lab.config import LabConfig
    from causalmem.scoring.metrics import MEMORISATION_SIGN

    cfg = cfg or LabConfig()
    if cfg.epochs != 1:
        raise ValueError(
            f"ground_truth is the first-exposure truth of a one-epoch run (cfg.epochs = "
            f"{cfg.epochs}); for a multi-epoch run use reexposure_ground_truth."
        )
    outs = _outcomes(cfg, outcomes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    say = log or (lambda _m: None)
    pair = _train_pair(cfg, out, swap_cohorts, timings, log=log, progress=progress)

    t0 = time.perf_counter()
    checks = _check_identical(pair.run_a, pair.run_b, pair.first_swap)
    timings["checks"] = time.perf_counter() - t0
    n_same = int(checks["identical"].sum())
    say(
        f"checks: {n_same} of {len(checks)} checkpoints identical, all before step "
        f"{pair.first_swap}"
    )

    t0 = time.perf_counter()
    _, _, instances = _pipeline.lab_instances(pair.run_a, pair.sample, cfg)
    panel_a, panel_b = [
        _pipeline.score_run(
            run, pair.steps, instances, out / f"scores_{name}", cfg, progress=progress
        )
        for run, name in ((pair.run_a, "A"), (pair.run_b, "B"))
    ]
    timings["scoring"] = time.perf_counter() - t0
    signs = [int(MEMORISATION_SIGN[o]) for o in outs]
    truth, ctrl = truth_from_scores(
        panel_a.frame, panel_b.frame, outs, signs, pair.steps, pair.chosen
    )
    prov = _provenance(cfg, out, pair, instances, checks, timings)
    body = {**prov, "swapped": pair.swapped.to_dict("list"), "checks": checks.to_dict("list")}
    atomic_write_text(out / "ground_truth.json", json.dumps(body, indent=1, default=str))
    return GroundTruth(
        truth=truth,
        control_shift=ctrl,
        panel=panel_a,
        counterfactual=panel_b,
        swapped=pair.swapped,
        checks=checks,
        first_swap_step=pair.first_swap,
        analysis_steps=tuple(int(s) for s in pair.steps),
        outcome=cfg.outcome,
        sign=int(MEMORISATION_SIGN[cfg.outcome]),
        provenance=prov,
    )


def _outcomes(cfg: LabConfig, outcomes: Sequence[str] | None) -> tuple[str, ...]:
    """Validate the headline and requested outcomes; return them, the headline one included."""
    from causalmem.scoring.metrics import MEMORISATION_SIGN, METRICS

    if cfg.outcome not in MEMORISATION_SIGN:
        raise ValueError(f"outcome={cfg.outcome!r}; use one of {sorted(MEMORISATION_SIGN)}.")
    outs = tuple(outcomes) if outcomes is not None else METRICS
    unknown = sorted(set(outs) - set(METRICS))
    if unknown:
        raise ValueError(f"outcomes {unknown} are not scored; use some of {list(METRICS)}.")
    if cfg.outcome not in outs:
        outs = (cfg.outcome, *outs)
    return outs


@dataclass(frozen=True, eq=False)
class _Pair:
    """The paired runs A and B, their inputs, the analysed grid and the swapped sample."""

    tcfg: TrainConfig
    vocab: int
    corpus: dict[str, Any]
    data_a: LabData
    data_b: LabData
    run_a: TrainedRun
    run_b: TrainedRun
    steps: npt.NDArray[np.int64]
    sample: pd.DataFrame
    chosen: list[int]
    swapped: pd.DataFrame
    first_swap: int | None


def _choose_swaps(
    sample: pd.DataFrame, swap_cohorts: Sequence[int] | None
) -> tuple[list[int], pd.DataFrame]:
    """Return the cohorts to swap (checked against the sample) and their sampled instances."""
    cohorts = sorted(int(g) for g in sample["cohort"].unique())
    chosen = cohorts if swap_cohorts is None else sorted(int(g) for g in swap_cohorts)
    bad = sorted(set(chosen) - set(cohorts))
    if bad:
        raise ValueError(f"swap_cohorts {bad} are not sampled cohorts; choose from {cohorts}.")
    return chosen, sample[sample["cohort"].isin(chosen)].reset_index(drop=True)


def _train_pair(
    cfg: LabConfig,
    out: Path,
    swap_cohorts: Sequence[int] | None,
    timings: dict[str, float],
    *,
    log: Log | None,
    progress: bool,
) -> _Pair:
    """Prepare the data, train run A, swap the chosen cohorts' instances and train run B."""
    from causalmem.lab.train import train

    t0 = time.perf_counter()
    data_a, tcfg, vocab, corpus_prov = _lab_inputs(cfg, out, log)
    timings["data"] = time.perf_counter() - t0

    # Run A fixes the grid and the sample (they depend on the config only).
    t0 = time.perf_counter()
    run_a = train(data_a, tcfg, out / "A", vocab_size=vocab, progress=progress, log=log)
    steps = _pipeline.analysis_steps(run_a, cfg)
    sample = _pipeline.sample_instances(steps, cfg)
    chosen, swapped = _choose_swaps(sample, swap_cohorts)
    data_b, rows = swap_instances(data_a, swapped["seq_idx"].to_numpy())
    swapped["reserve_row"] = rows
    first_swap = int(swapped["step"].min()) if len(swapped) else None
    if log:
        log(
            f"ground truth: swapping {len(swapped):,} instances of {len(chosen)} cohorts "
            f"(first swapped batch at step {first_swap})"
        )
    run_b = train(data_b, tcfg, out / "B", vocab_size=vocab, progress=progress, log=log)
    timings["training"] = time.perf_counter() - t0
    return _Pair(
        tcfg,
        vocab,
        corpus_prov,
        data_a,
        data_b,
        run_a,
        run_b,
        steps,
        sample,
        chosen,
        swapped,
        first_swap,
    )


def _provenance(
    cfg: LabConfig,
    out: Path,
    pair: _Pair,
    instances: Instances,
    checks: pd.DataFrame,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Return the provenance of a ground truth (configs, fingerprints, seeds, swaps, checks)."""
    return dict(
        provenance(
            method="counterfactual retraining (paired lab runs, treated instances swapped)",
            out_dir=str(out),
            run_dir_a=str(out / "A"),
            run_dir_b=str(out / "B"),
            lab_config=asdict(cfg),
            train_config=asdict(pair.tcfg),
            vocab_size=pair.vocab,
            corpus=pair.corpus,
            data_fingerprint_a=pair.data_a.fingerprint(),
            data_fingerprint_b=pair.data_b.fingerprint(),
            run_fingerprint_a=json.loads((out / "A" / "run.json").read_text())["fingerprint"],
            run_fingerprint_b=json.loads((out / "B" / "run.json").read_text())["fingerprint"],
            instances_fingerprint=instances.fingerprint(),
            data_seed=cfg.seed,
            sampling_seed=cfg.seed,
            model_seed=cfg.model_seed,
            swap_cohorts=pair.chosen,
            n_swapped=len(pair.swapped),
            first_swap_step=pair.first_swap,
            identical_checkpoints=checks.loc[checks["identical"], "step"].tolist(),
            analysis_steps=[int(s) for s in pair.steps],
            timings_s=timings,
        )
    )


def replicate_config(cfg: LabConfig, seed: int) -> LabConfig:
    """Return the lab config of replicate ``seed``: its own data order, sample and init seed."""
    return replace(cfg, seed=int(seed), model_seed=int(seed))


# ----------------------------------------------------------------------------- re-exposure
_REMOVE = ("second", "both")


@dataclass(frozen=True, eq=False)
class ReexposureTruth(ResultMixin):
    """The true re-exposure effects of a multi-epoch lab run, by counterfactual retraining.

    Run A trains ``cfg.epochs`` epochs on the recorded order. Run B is the same run with the
    **second-epoch occurrence** of the sampled re-exposed instances replaced, position for
    position, by reserve chunks neither run otherwise sees (``remove="second"``), or with
    both occurrences replaced (``remove="both"``). For an instance of group (g1, g2),
    ``Y^A_c − Y^B_c`` is then the effect of its second exposure (``Y(g1, g2) − Y(g1, ∞)``) or of
    both (``Y(g1, g2) − Y(∞)``), and its mean over the group's sampled instances is the true
    (sample) ATT the estimator :func:`causalmem.estimators.reexposure.reexposure_att` targets.

    Attributes
    ----------
    truth
        One row per (outcome, g1, g2, time): ``estimate`` (mean ``sign × (Y^A − Y^B)``),
        ``std_error`` (over instances), ``n``, ``event_period`` (checkpoints since ``g2``),
        ``phase`` (``pre`` before the base period ``b2``, ``base`` at it, ``post`` from ``g2``;
        ``between`` for the once-trained groups of ``remove="both"`` between ``g1`` and ``g2``),
        ``control_shift`` (the same mean over never-trained instances) and
        ``estimate_adjusted`` / ``std_error_adjusted`` (net of it).
    control_shift
        Per (outcome, time): mean difference of never-trained instances.
    frame, counterfactual
        Long balanced scores of runs A and B (``unit, step, cohort, cohort2`` + outcomes);
        ``frame`` is the estimator's input.
    sample
        The sampled instances: ``seq_idx`` (= unit: first-epoch position), ``cohort`` (g1),
        ``pos2``, ``step2``, ``cohort2`` (g2; NaN when trained once) and ``sequence_id``.
    checks
        Checkpoint-weight checks (identical exactly before the first swapped batch).
    """

    truth: pd.DataFrame = field(repr=False)
    control_shift: pd.DataFrame = field(repr=False)
    frame: pd.DataFrame = field(repr=False)
    counterfactual: pd.DataFrame = field(repr=False)
    sample: pd.DataFrame = field(repr=False)
    checks: pd.DataFrame = field(repr=False)
    first_swap_step: int | None
    analysis_steps: tuple[int, ...]
    remove: str
    outcome: str
    sign: int
    provenance: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def spec(self) -> Mapping[str, Any]:
        """The design (frozen): outcome, sign, removed exposure, grid, first swapped step."""
        return frozen_mapping(
            {
                "outcome": self.outcome,
                "sign": self.sign,
                "remove": self.remove,
                "analysis_steps": self.analysis_steps,
                "first_swap_step": self.first_swap_step,
            }
        )

    def tidy(self, outcome: str | None = None) -> pd.DataFrame:
        """Return the truth of one outcome (default: the headline one), a new frame."""
        name = outcome or self.outcome
        t = self.truth[self.truth["outcome"] == name]
        if t.empty:
            raise ValueError(
                f"no truth for outcome {name!r}; have {sorted(set(self.truth.outcome))}."
            )
        return t.reset_index(drop=True).copy()

    def event_path(self, outcome: str | None = None, *, adjusted: bool = False) -> pd.DataFrame:
        """Return the true path by checkpoints since ``g2`` (weights: group sizes ``n``)."""
        t = self.tidy(outcome)
        t = t[np.isfinite(t["g2"].to_numpy(np.float64))]
        col = "estimate_adjusted" if adjusted else "estimate"
        w = t["n"].astype(np.float64)
        g = t.assign(_w=w, _x=w * t[col]).groupby("event_period", sort=True)
        out = g[["_x", "_w"]].sum()
        return pd.DataFrame(
            {
                "event_period": out.index.astype(np.int64),
                "estimate": (out["_x"] / out["_w"]).to_numpy(),
                "n": out["_w"].astype(np.int64).to_numpy(),
            }
        )

    def glance(self) -> pd.DataFrame:
        """One-row summary: groups, re-exposed instances, checks, mean instantaneous truth."""
        t = self.tidy()
        inst = t[t["event_period"] == 0]
        return pd.DataFrame(
            [
                {
                    "outcome": self.outcome,
                    "remove": self.remove,
                    "n_groups": int(t[["g1", "g2"]].drop_duplicates().shape[0]),
                    "n_sampled": len(self.sample),
                    "n_reexposed": int(np.isfinite(self.sample["cohort2"]).sum()),
                    "first_swap_step": self.first_swap_step,
                    "checks_passed": bool(
                        (self.checks["identical"] == self.checks["expected_identical"]).all()
                    ),
                    "instantaneous_mean": float(inst["estimate"].mean()),
                }
            ]
        )

    def summary(self) -> str:
        """Return a printable summary: the design and the true event path."""
        g = self.glance().iloc[0]
        what = "second exposure" if self.remove == "second" else "both exposures"
        head = (
            f"Re-exposure ground truth ({what} removed in run B; {self.outcome}): "
            f"{g['n_groups']} (g1, g2) groups, {g['n_reexposed']} re-exposed of "
            f"{g['n_sampled']} sampled instances, first swapped step {g['first_swap_step']} "
            f"(checks passed: {g['checks_passed']}); mean instantaneous truth "
            f"{g['instantaneous_mean']:.4g}."
        )
        return head + "\n\n" + self.event_path().to_string(index=False)

    def _table(self) -> pd.DataFrame:
        return self.tidy()[["g1", "g2", "time", "estimate", "std_error", "n"]]

    def _caption(self) -> str | None:
        return f"True re-exposure effects of {self.outcome} (counterfactual retraining)"

    def plot(self, **options: Any) -> Any:
        """Chart the true path by checkpoints since the second exposure (Altair)."""
        from causalmem.results._charts import event_path

        p = self.event_path()
        p["conf_low"] = p["estimate"]
        p["conf_high"] = p["estimate"]
        options.setdefault("title", self._caption())
        options.setdefault("x_title", "checkpoints since the second exposure")
        return event_path(p, x="event_period", **options)


def reexposure_sample(
    sequence_id: npt.ArrayLike, steps: npt.ArrayLike, cfg: LabConfig
) -> pd.DataFrame:
    """Sample instances by first exposure and attach their second exposure.

    ``k × m`` instances per first-epoch macro-batch (cohorts whose batches all lie in the first
    epoch), as :func:`causalmem.instances.sample_macro_batches`; each instance's second
    exposure is looked up in the recorded order.

    Returns
    -------
    pandas.DataFrame
        ``seq_idx, batch, step, cohort, base`` (first exposure), ``sequence_id``, ``pos2``,
        ``step2`` (−1 when trained once) and ``cohort2`` (checkpoint closing ``step2``'s
        macro-batch; NaN when trained once).
    """
    from causalmem.instances import macro_batches, sample_macro_batches
    from causalmem.lab.train import exposures

    ids = np.asarray(sequence_id, dtype=np.int64)
    exp = exposures(ids, cfg.batch_size).set_index("sequence_id")
    n_unique = int(exp.shape[0])
    grid = np.unique(np.append(np.asarray(steps, dtype=np.int64), 0))
    mb = macro_batches(grid)
    first = mb.loc[mb["cohort"] * cfg.batch_size <= n_unique, "cohort"].to_numpy()
    if first.size == 0:
        raise ValueError("no macro-batch lies entirely in the first epoch; use more steps.")
    sample = sample_macro_batches(
        grid, cfg.batch_size, k=cfg.k, m=cfg.m, seed=cfg.seed, cohorts=first
    )
    sid = ids[sample["seq_idx"].to_numpy()]
    e = exp.loc[sid]
    sample["sequence_id"] = sid
    sample["pos2"] = e["pos2"].to_numpy()
    sample["step2"] = e["step2"].to_numpy()
    s2 = sample["step2"].to_numpy()
    at = np.searchsorted(grid, np.maximum(s2, 1), side="left")
    ok = (s2 > 0) & (at < grid.size)
    sample["cohort2"] = np.where(ok, grid[np.minimum(at, grid.size - 1)], np.nan)
    return sample


def reexposure_ground_truth(
    out_dir: str | os.PathLike[str],
    cfg: LabConfig,
    *,
    remove: str = "second",
    outcomes: Sequence[str] | None = None,
    log: Log | None = None,
    progress: bool = False,
) -> ReexposureTruth:
    """Train a multi-epoch lab run A and its counterfactual B; return the true re-exposure effects.

    Parameters
    ----------
    out_dir
        Folder of both runs (resumable, layout as :func:`ground_truth`).
    cfg
        Lab settings with ``epochs > 1``.
    remove
        ``"second"``: run B replaces the second-epoch occurrence of each sampled re-exposed
        instance (truth of the second exposure); ``"both"``: also every sampled first
        occurrence (truth of the combined path vs never trained).
    outcomes, log, progress
        As :func:`ground_truth`.

    Returns
    -------
    ReexposureTruth

    Raises
    ------
    ValueError
        ``cfg.epochs`` is 1, ``remove`` unknown, or nothing to swap.
    GroundTruthError
        The runs are not bit-identical before the first swapped batch.
    """
    from causalmem.instances import Instances, training_instances, validation_instances
    from causalmem.lab.train import train
    from causalmem.scoring.metrics import MEMORISATION_SIGN

    if cfg.epochs <= 1:
        raise ValueError("the re-exposure ground truth needs a multi-epoch run (cfg.epochs > 1).")
    if remove not in _REMOVE:
        raise ValueError(f"remove={remove!r}; use 'second' or 'both'.")
    outs = _outcomes(cfg, outcomes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    data_a, tcfg, vocab, corpus_prov = _lab_inputs(cfg, out, log)
    run_a = train(data_a, tcfg, out / "A", vocab_size=vocab, progress=progress, log=log)
    steps = _pipeline.analysis_steps(run_a, cfg)
    assert data_a.sequence_id is not None
    sample = reexposure_sample(data_a.sequence_id, steps, cfg)
    re = sample[np.isfinite(sample["cohort2"].to_numpy())]
    if re.empty:
        raise ValueError("no sampled instance is re-exposed; raise epochs or steps.")
    pos = re["pos2"].to_numpy(np.int64)
    if remove == "both":
        pos = np.concatenate([sample["seq_idx"].to_numpy(np.int64), pos])
    data_b, rows = swap_instances(data_a, pos)
    first_swap = int(pos.min() // cfg.batch_size + 1)
    say = log or (lambda _m: None)
    say(f"re-exposure truth: swapping {pos.size:,} positions (first at step {first_swap})")
    run_b = train(data_b, tcfg, out / "B", vocab_size=vocab, progress=progress, log=log)
    timings["training"] = time.perf_counter() - t0
    checks = _check_identical(run_a, run_b, first_swap)

    t0 = time.perf_counter()
    cols = ["seq_idx", "batch", "step", "cohort", "base"]
    tr = training_instances(run_a.order(), sample[cols])
    va = validation_instances(np.load(run_a.validation_path), cfg.n_validation, seed=cfg.seed)
    instances = Instances.concat([tr, va])
    frames = []
    for run, name in ((run_a, "A"), (run_b, "B")):
        p = _pipeline.score_run(
            run, steps, instances, out / f"scores_{name}", cfg, progress=progress
        )
        f = p.frame.copy()
        f["cohort"] = pd.to_numeric(f["cohort"], errors="coerce").astype(np.float64)
        f["cohort2"] = f["unit"].map(sample.set_index("seq_idx")["cohort2"]).astype(np.float64)
        frames.append(f)
    timings["scoring"] = time.perf_counter() - t0
    signs = [int(MEMORISATION_SIGN[o]) for o in outs]
    truth, ctrl = reexposure_truth_from_scores(frames[0], frames[1], outs, signs, steps, remove)
    prov = dict(
        provenance(
            method=f"counterfactual retraining, {remove} exposure(s) of sampled instances swapped",
            out_dir=str(out),
            lab_config=asdict(cfg),
            train_config=asdict(tcfg),
            vocab_size=vocab,
            corpus=corpus_prov,
            data_fingerprint_a=data_a.fingerprint(),
            data_fingerprint_b=data_b.fingerprint(),
            epochs=cfg.epochs,
            n_sampled=len(sample),
            n_reexposed=len(re),
            n_swapped_positions=int(pos.size),
            reserve_rows=[int(r) for r in rows[:5]],
            first_swap_step=first_swap,
            identical_checkpoints=checks.loc[checks["identical"], "step"].tolist(),
            analysis_steps=[int(s) for s in steps],
            timings_s=timings,
        )
    )
    atomic_write_text(out / "reexposure_truth.json", json.dumps(prov, indent=1, default=str))
    return ReexposureTruth(
        truth=truth,
        control_shift=ctrl,
        frame=frames[0],
        counterfactual=frames[1],
        sample=sample,
        checks=checks,
        first_swap_step=first_swap,
        analysis_steps=tuple(int(s) for s in steps),
        remove=remove,
        outcome=cfg.outcome,
        sign=int(MEMORISATION_SIGN[cfg.outcome]),
        provenance=prov,
    )


def reexposure_truth_from_scores(
    a: pd.DataFrame,
    b: pd.DataFrame,
    outcomes: Sequence[str],
    signs: Sequence[int],
    analysis_steps: npt.ArrayLike,
    remove: str = "second",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return the true re-exposure effects per (g1, g2, time) from runs A and B (pure).

    ``a`` and ``b`` hold ``unit, step, cohort, cohort2`` and the outcomes on the same keys.
    ``remove="second"``: groups of re-exposed instances; ``"both"``: also the once-trained
    groups (``g2`` NaN).
    """
    keys = ["unit", "step"]
    m = a[[*keys, "cohort", "cohort2", *outcomes]].merge(
        b[[*keys, *outcomes]], on=keys, suffixes=("_a", "_b"), validate="one_to_one"
    )
    if len(m) != len(a) or len(a) != len(b):
        raise ValueError("runs A and B were scored on different (unit, step) pairs.")
    grid = np.unique(np.asarray(analysis_steps, dtype=np.int64))
    never = m["cohort"].isna().to_numpy()
    g2 = m["cohort2"].to_numpy(np.float64)
    keep = ~never & (np.isfinite(g2) | (remove == "both"))
    parts, ctrls = [], []
    for name, sign in zip(outcomes, signs, strict=True):
        diff = sign * (m[f"{name}_a"].to_numpy(np.float64) - m[f"{name}_b"].to_numpy(np.float64))
        d = pd.DataFrame({"g1": m["cohort"], "g2": m["cohort2"], "time": m["step"], "diff": diff})
        ctrl = _control_shift(d[never].rename(columns={"time": "time"}), name)
        c = (
            d[keep]
            .groupby(["g1", "g2", "time"], dropna=False, sort=True)["diff"]
            .agg(["mean", "std", "count"])
            .reset_index()
        )
        se = c["std"].fillna(0.0) / np.sqrt(c["count"])
        gref = np.where(np.isfinite(c["g2"]), c["g2"], c["g1"]).astype(np.float64)
        pos_ref = np.searchsorted(grid, gref)
        pos_t = np.searchsorted(grid, c["time"].to_numpy(np.float64))
        # base period: before g2 (second exposure) or before g1 (both exposures removed)
        g_base = c["g1"].to_numpy(np.float64) if remove == "both" else gref
        base = grid[np.maximum(np.searchsorted(grid, g_base) - 1, 0)]
        part = pd.DataFrame(
            {
                "g1": c["g1"].astype(np.float64),
                "g2": c["g2"].astype(np.float64),
                "time": c["time"].astype(np.float64),
                "event_period": pos_t - pos_ref,
                "phase": np.select(
                    [c["time"] < base, c["time"] == base, c["time"] >= gref],
                    ["pre", "base", "post"],
                    "between",
                ),
                "estimate": c["mean"].to_numpy(np.float64),
                "std_error": se.to_numpy(np.float64),
                "n": c["count"].astype(np.int64),
                "outcome": name,
            }
        )
        shift = part["time"].map(ctrl.set_index("time")["estimate"]).fillna(0.0)
        shift_se = part["time"].map(ctrl.set_index("time")["std_error"]).fillna(0.0)
        part["control_shift"] = shift.to_numpy()
        part["estimate_adjusted"] = part["estimate"] - shift
        part["std_error_adjusted"] = np.sqrt(part["std_error"] ** 2 + shift_se**2)
        parts.append(part)
        ctrls.append(ctrl)
    return pd.concat(parts, ignore_index=True), pd.concat(ctrls, ignore_index=True)
