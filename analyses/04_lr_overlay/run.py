"""Analysis 04: instantaneous memorisation against each model's own LR schedule (Fig. 3).

Usage: ``python analyses/04_lr_overlay/run.py [--out DIR] [--config TOML] [--family DIR]``
(default output: ``out/04_lr_overlay``). Each model is drawn over its real schedule (its own
peak LR; pitfall 13), not one illustrative schedule for all.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import os
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import pandas as pd

from analyses.wiring.family import analysis_from_cli
from causalmem.presentation import charts
from lmecon.atomic import atomic_write_parquet, atomic_write_text
from lmecon.charts import save_chart

HERE = Path(__file__).parent


def main() -> None:
    out, an = analysis_from_cli(__doc__, HERE)
    fit = an.fit
    inst = fit.instantaneous()
    lr = fit.family.lr_table()
    unit = "nats" if fit.outcome == "logprob" else fit.outcome
    save_chart(
        charts.family_instantaneous_lr(inst, lr, value_title=f"τ(g, g) ({unit})"),
        out / "fig3_instantaneous_lr",
    )
    save_chart(
        charts.family_instantaneous_lr(
            inst,
            lr,
            significant_only=True,
            sqrt_y=True,
            value_title=f"τ(g, g) ({unit}, sqrt)",
            title="Fig. 3 (paper style): significant cells, sqrt axis",
        ),
        out / "fig3_instantaneous_lr_sqrt",
    )
    atomic_write_parquet(out / "instantaneous.parquet", inst)
    atomic_write_parquet(out / "lr_schedules.parquet", lr)
    rows = []
    for m, d in inst.groupby("model", sort=False):
        rows.append(
            {
                "model": m,
                "peak_lr": float(lr[lr["model"] == m]["lr"].max()),
                "corr_instantaneous_lr": float(d["estimate"].corr(d["lr_mean"])),
                "instantaneous_mean": float(d["estimate"].mean()),
            }
        )
    tab = pd.DataFrame(rows)
    atomic_write_text(
        out / "lr_correlation.md", tab.to_markdown(index=False, floatfmt=".4g") + "\n"
    )
    print(tab.to_string(index=False))
    print(f"wrote figures and tables to {out}")


if __name__ == "__main__":
    main()
