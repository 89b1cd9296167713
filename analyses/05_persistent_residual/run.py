"""Analysis 05: persistent (Fig. 4) and residual (Fig. 5) memorisation of the family.

Usage: ``python analyses/05_persistent_residual/run.py [--out DIR] [--config TOML]
[--family DIR]`` (default output: ``out/05_persistent_residual``). Persistent memorisation is the
event-time aggregation theta(e) (its inference type is recorded in the ``se_method`` and ``band``
columns; pitfall 4), residual memorisation tau(g, T) at the end of the first epoch.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import os
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

from analyses.wiring.family import analysis_from_cli
from causalmem.presentation import charts
from lmecon.atomic import atomic_write_parquet, atomic_write_text
from lmecon.charts import save_chart

HERE = Path(__file__).parent


def main() -> None:
    out, an = analysis_from_cli(__doc__, HERE)
    fit = an.fit
    unit = "nats" if fit.outcome == "logprob" else fit.outcome
    pers, resid = fit.persistent(), fit.residual()
    save_chart(
        charts.family_persistent(
            pers, value_title=f"θ(e) ({unit})", title="Fig. 4: persistent memorisation by model"
        ),
        out / "fig4_persistent",
    )
    save_chart(
        charts.family_residual(
            resid,
            value_title=f"τ(g, T) ({unit})",
            title=f"Fig. 5: residual memorisation at T = {an.epoch_end:g}",
        ),
        out / "fig5_residual",
    )
    atomic_write_parquet(out / "persistent.parquet", pers)
    atomic_write_parquet(out / "residual.parquet", resid)
    cols = [
        "model",
        "event_time",
        "estimate",
        "std_error",
        "conf_low",
        "conf_high",
        "se_method",
        "band",
    ]
    keep = [c for c in cols if c in pers.columns]
    atomic_write_text(out / "persistent.md", pers[keep].to_markdown(index=False, floatfmt=".4g"))
    summary = resid.groupby("model", sort=False).agg(
        at=("at", "first"),
        residual_mean=("estimate", "mean"),
        share_significant=("significant", "mean"),
    )
    atomic_write_text(
        out / "residual.md", summary.reset_index().to_markdown(index=False, floatfmt=".4g")
    )
    print(summary.to_string())
    print(f"wrote figures and tables to {out}")


if __name__ == "__main__":
    main()
