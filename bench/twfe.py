"""TWFE and event-study speed against pyfixest and linearmodels on a paper-shaped panel.

Run by hand: ``.venv/bin/python bench/twfe.py [--scales 0.25 1] [--peer-timeout 600]``.

Each measurement runs in a fresh subprocess (so its peak RSS is its own) on the same simulated
panel: Pythia's 154 checkpoints, 143 cohorts x ``100 * scale`` units + ``2000 * scale`` never
treated. Tools: ours (``causalmem.twfe`` and ``causalmem.event_study(..., estimator="twfe")``),
pyfixest ``feols`` (TWFE and the event study with explicit relative-period indicators), and
linearmodels ``PanelOLS`` (entity + time effects). Prints wall time, peak memory, the ratio of
each peer's time to ours and the largest coefficient / SE difference.
Goals (issue 3, full scale): TWFE <= 3 s; event study with all relative-period indicators
<= 10 s and <= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def panel(scale: float, seed: int = 0) -> pd.DataFrame:
    from causalmem.panel import pythia

    steps = np.asarray(pythia.pythia_checkpoint_steps(), dtype=np.int64)
    per = max(int(round(100 * scale)), 2)
    coh = np.repeat(np.arange(1000, 143001, 1000, dtype=float), per)
    coh = np.concatenate([coh, np.full(max(int(round(2000 * scale)), 10), np.nan)])
    rng = np.random.default_rng(seed)
    n, t = coh.size, steps.size
    g = np.nan_to_num(coh, nan=np.inf)
    e = steps[None, :] - g[:, None]
    eff = np.where(e >= 0, -(0.35 * np.exp(-e / 20000.0) + 0.05), 0.0)
    y = 5 + rng.normal(size=(n, 1)) - np.log1p(steps / 1000.0)[None, :] + eff
    y = y + 0.3 * rng.normal(size=(n, t))
    gpos = np.where(np.isfinite(g), np.searchsorted(steps, np.nan_to_num(g, posinf=0)), -(10**6))
    rel = np.arange(t)[None, :] - gpos[:, None]
    return pd.DataFrame(
        {
            "unit": np.repeat(np.arange(n), t),
            "step": np.tile(steps, n),
            "cohort": pd.array(np.repeat(coh, t)).astype("Float64"),
            "y": y.ravel(),
            "treated": (e >= 0).ravel().astype(float),
            "rel": np.where(np.isfinite(g)[:, None], rel, -1000).ravel(),
        }
    )


def worker(tool: str, scale: float) -> dict:
    df = panel(scale)
    t0 = time.perf_counter()
    if tool == "ours_twfe":
        import causalmem as cm

        r = cm.twfe("y ~ treated | unit + step", df)
        coef, se = r.coef.tolist(), r.se.tolist()
    elif tool == "ours_es":
        import causalmem as cm

        r = cm.event_study(df, "y", "step", "unit", "cohort", estimator="twfe").path
        coef, se = r.coef.tolist(), r.se.tolist()
    elif tool == "pyfixest_twfe":
        import pyfixest as pf

        f = pf.feols("y ~ treated | unit + step", data=df, vcov={"CRV1": "unit"})
        coef, se = f.coef().tolist(), f.se().tolist()
    elif tool == "pyfixest_es":
        import pyfixest as pf

        # Explicit indicators for every relative period except -1 (never treated: none).
        ks = sorted(k for k in np.unique(df["rel"]) if k not in (-1, -1000))
        cols = {f"d{i}": (df["rel"] == k).astype(float) for i, k in enumerate(ks)}
        d = pd.concat([df, pd.DataFrame(cols)], axis=1)
        t0 = time.perf_counter()
        f = pf.feols("y ~ " + " + ".join(cols) + " | unit + step", data=d, vcov={"CRV1": "unit"})
        coef, se = f.coef().tolist(), f.se().tolist()
    elif tool == "linearmodels_twfe":
        from linearmodels import PanelOLS

        p = df.assign(step=df["step"]).set_index(["unit", "step"])
        t0 = time.perf_counter()
        fit = PanelOLS(p["y"], p[["treated"]], entity_effects=True, time_effects=True).fit(
            cov_type="clustered", cluster_entity=True
        )
        coef, se = fit.params.tolist(), fit.std_errors.tolist()
    else:
        raise ValueError(tool)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tool": tool, "wall": wall, "peak_mb": peak, "coef": coef, "se": se}


def run(tool: str, scale: float, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, "--scale", str(scale)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return {"tool": tool, "error": f"timeout {timeout:.0f} s"}
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or ["failed"]
        return {"tool": tool, "error": tail[0][:80]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--scales", type=float, nargs="*", default=[0.25, 1.0])
    ap.add_argument("--peer-timeout", type=float, default=600)
    ap.add_argument(
        "--skip-pyfixest-es-above",
        type=float,
        default=0.5,
        help="pyfixest's event study needs > 20 GB at full scale",
    )
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.scale)))
        return
    print(
        f"{'scale':>6} {'rows':>11} {'tool':<20} {'wall s':>8} {'peak MB':>9} "
        f"{'x ours':>7} {'max|dcoef|':>11} {'max|dse|':>10}"
    )
    for scale in args.scales:
        rows = len(panel(scale))
        res = {}
        for tool in ("ours_twfe", "pyfixest_twfe", "linearmodels_twfe", "ours_es", "pyfixest_es"):
            if tool == "pyfixest_es" and scale > args.skip_pyfixest_es_above:
                res[tool] = {"tool": tool, "error": "skipped (memory)"}
                continue
            res[tool] = run(tool, scale, args.peer_timeout)
        for tool, r in res.items():
            ref = res["ours_es" if tool.endswith("_es") else "ours_twfe"]
            if "error" in r:
                print(f"{scale:>6} {rows:>11,} {tool:<20} {r['error']}")
                continue
            ratio = r["wall"] / ref["wall"] if "wall" in ref else float("nan")
            dc = ds = float("nan")
            if "coef" in ref and len(ref["coef"]) == len(r["coef"]):
                dc = float(np.max(np.abs(np.subtract(ref["coef"], r["coef"]))))
                ds = float(np.max(np.abs(np.subtract(ref["se"], r["se"]))))
            print(
                f"{scale:>6} {rows:>11,} {tool:<20} {r['wall']:>8.2f} {r['peak_mb']:>9.0f} "
                f"{ratio:>7.1f} {dc:>11.2e} {ds:>10.2e}"
            )
    print("goals at scale 1: ours_twfe <= 3 s; ours_es <= 10 s and <= 4096 MB")
    print("note: linearmodels' clustered SE uses its own small-sample correction, so dse is not 0")


if __name__ == "__main__":
    main()
