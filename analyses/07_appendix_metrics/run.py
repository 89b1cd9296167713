"""Analysis 07: the appendix profiles for the other outcomes the scoring stage writes.

Usage: ``python analyses/07_appendix_metrics/run.py [--out DIR] [--config TOML] [--family DIR]``
(default output: ``out/07_appendix_metrics``). For each metric in ``metrics`` (``sup_seq`` mean
surprisal, ``acc_seq`` accuracy, ``entr_seq`` mean entropy, ``avg_rank`` mean rank): the faceted
profile heat-map and the paths, on the memorisation scale (-ATT for surprisal, entropy and rank,
+ATT for accuracy), plus a per-model summary table.
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

from analyses.wiring.family import analysis_cli
from causalmem.presentation import charts
from causalmem.workflows.family import AnalysisConfig, fit_family, load_family
from lmecon.atomic import atomic_write_parquet, atomic_write_text
from lmecon.charts import save_chart

HERE = Path(__file__).parent


def main() -> None:
    args = analysis_cli(__doc__, HERE)
    cfg = AnalysisConfig.from_toml(args.config)
    fam = load_family(args.family or cfg.family)
    rows = []
    for metric in cfg.metrics:
        fit = fit_family(fam, metric, biters=cfg.biters, alp=cfg.alp, seed=cfg.seed)
        t_end = cfg.epoch_end or min(m.epoch_end for m in fam.models)
        cells = fit.cells()
        vt = f"memorisation ({metric}, {'+' if fit.sign > 0 else '−'}ATT)"
        save_chart(
            charts.family_heatmap(
                cells, epoch_end=t_end, value_title=vt, title=f"Profiles of {metric} by model"
            ),
            args.out / f"profiles_{metric}",
        )
        save_chart(
            charts.family_paths(fit.path(), value_title=vt, title=f"Paths of {metric} by model"),
            args.out / f"paths_{metric}",
        )
        atomic_write_parquet(args.out / f"cells_{metric}.parquet", cells)
        inst, resid = fit.instantaneous(), fit.residual()
        for m in fam.names:
            i, r = inst[inst["model"] == m], resid[resid["model"] == m]
            rows.append(
                {
                    "metric": metric,
                    "model": m,
                    "instantaneous_mean": float(i["estimate"].mean()),
                    "instantaneous_share_significant": float(i["significant"].mean()),
                    "residual_mean": float(r["estimate"].mean()),
                    "residual_share_significant": float(r["significant"].mean()),
                    "pretest_p_value": float(fit.results[m].pretest()[1]),
                }
            )
    tab = pd.DataFrame(rows)
    atomic_write_text(args.out / "summary.md", tab.to_markdown(index=False, floatfmt=".4g") + "\n")
    atomic_write_parquet(args.out / "summary.parquet", tab)
    print(tab.to_string(index=False))
    print(f"wrote figures and tables to {args.out}")


if __name__ == "__main__":
    main()
