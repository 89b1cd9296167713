"""Analysis 08, robustness: do the HonestDiD sets at the breakdown M cover the lab's true τ?

Issue 14, item 5. Reuses the scored runs of ``run.py`` (``<gt_dir>/runs/seed_*/scores_A``: run A
of each replicate, the panel an analyst would have) and their truth (``<gt_dir>/truth.csv``:
τ(g, c) by counterfactual retraining). For each replicate it fits the CS event study
(``att_gt(base_period="universal")``, never-trained controls, ``aggte(type="dynamic",
event_time="periods")``) and, for three memorisation targets — instantaneous (e = 0),
persistent (``--persistent-e``, default e = 5 checkpoints) and residual (last checkpoint) — it
runs ``honest_did`` under Δ^SD (FLCI) and Δ^RM (C-LF), finds the breakdown value (smallest M at
which the robust set includes 0) and checks whether the set at that M still covers the true
θ(e) (the n-weighted mean of τ(g, g + e) over cohorts, :func:`event_path_truth`: the same
weights as the dynamic aggregation, 50 instances in every cohort). It also reports the
smallest M at which the set covers the truth (``null`` = the true θ(e)).

Usage: ``python analyses/08_ground_truth/robustness.py [--gt-dir DIR] [--out DIR]``
(default ``--gt-dir out/08_ground_truth``). Writes ``robustness.csv`` and ``robustness.md``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import pandas as pd

import causalmem as cm
from causalmem.lab.ground_truth import event_path_truth
from lmecon.atomic import atomic_write_text

HERE = Path(__file__).parent


def _panel(scores: Path) -> pd.DataFrame:
    shards = sorted((scores / "shards").glob("*.parquet"))
    if not shards:
        raise FileNotFoundError(f"no score shards under {scores}; run run.py first")
    return pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True)


def _row(
    agg: object, restriction: str, target: str, e: int | None, truth: float, seed: int
) -> dict[str, object]:
    kw: dict[str, object] = {"restriction": restriction, "target": target}
    if e is not None:
        kw["e"] = float(e)
    t0 = time.perf_counter()
    r = cm.honest_did(agg, **kw)  # type: ignore[arg-type]
    bd = r.breakdown
    lo_bd = hi_bd = math.nan
    if math.isfinite(bd):
        at = cm.honest_did(agg, m_grid=[bd], breakdown="none", **kw)  # type: ignore[arg-type]
        lo_bd, hi_bd = float(at.lower[0]), float(at.upper[0])
    m_truth = cm.honest_did(agg, null=truth, **kw).breakdown  # type: ignore[arg-type]
    est, se, olo, ohi = r.original
    return {
        "replicate": seed,
        "target": r.spec.target,
        "restriction": restriction,
        "method": r.spec.method,
        "truth": truth,
        "estimate": est,
        "se": se,
        "orig_lower": olo,
        "orig_upper": ohi,
        "orig_covers_truth": bool(olo <= truth <= ohi),
        "breakdown_m": bd,
        "lower_at_breakdown": lo_bd,
        "upper_at_breakdown": hi_bd,
        "covers_truth_at_breakdown": bool(lo_bd <= truth <= hi_bd),
        "m_to_cover_truth": m_truth,
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    """Run the check for every replicate and write the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gt-dir", type=Path, default=HERE.parents[1] / "out" / "08_ground_truth")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--persistent-e", type=int, default=5)
    args = ap.parse_args()
    out = args.out or args.gt_dir
    truth_all = pd.read_csv(args.gt_dir / "truth.csv")
    truth_all = truth_all[truth_all["outcome"] == "logprob"]
    rows = []
    for seed_dir in sorted((args.gt_dir / "runs").glob("seed_*")):
        seed = int(seed_dir.name.split("_")[1])
        frame = _panel(seed_dir / "scores_A")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = cm.att_gt(
                frame, "logprob", "step", "unit", "cohort", base_period="universal", bstrap=False
            )
            agg = cm.aggte(res, "dynamic", event_time="periods")
        path = event_path_truth(truth_all[truth_all["replicate"] == seed])
        theta = dict(zip(path["event_period"], path["estimate"], strict=True))
        last = int(path["event_period"].max())
        for target, e, ev in (
            ("instantaneous", None, 0),
            ("persistent", args.persistent_e, args.persistent_e),
            ("residual", None, last),
        ):
            for restriction in ("SD", "RM"):
                row = _row(agg, restriction, target, e, float(theta[ev]), seed)
                rows.append(row)
                print(
                    f"seed {seed} {row['target']} {restriction}: truth {row['truth']:.3f} "
                    f"est {row['estimate']:.3f} breakdown {row['breakdown_m']:.4g} set "
                    f"[{row['lower_at_breakdown']:.3f}, {row['upper_at_breakdown']:.3f}] covers "
                    f"{row['covers_truth_at_breakdown']} M->truth {row['m_to_cover_truth']:.4g} "
                    f"({row['seconds']:.1f} s)",
                    flush=True,
                )
    tab = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "robustness.csv", tab.to_csv(index=False))
    atomic_write_text(out / "robustness.md", tab.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(f"wrote {out / 'robustness.csv'}")


if __name__ == "__main__":
    main()
