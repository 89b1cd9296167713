"""Analysis 03: memorisation profiles of the family (Figs 1 and 2) and the memorisation paths.

Usage: ``python analyses/03_profiles/run.py [--out DIR] [--config TOML] [--family DIR]``
(default output: ``out/03_profiles``; the family comes from ``analyses/02_family``).
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
    fit, t_end = an.fit, an.epoch_end
    cells = fit.cells()
    big = fit.family.names[-1]
    unit = "nats" if fit.outcome == "logprob" else fit.outcome
    vt = f"memorisation ({unit})"
    save_chart(
        charts.family_heatmap(
            cells[cells["model"] == big],
            epoch_end=t_end,
            columns=1,
            title=f"Fig. 1: memorisation profile of {big}",
            value_title=vt,
            width=480,
            height=380,
        ),
        out / "fig1_profile",
    )
    save_chart(
        charts.event_path(
            fit.profiles[big].path, title=f"Fig. 1 (bottom): path of {big}", value_title=vt
        ),
        out / "fig1_path",
    )
    save_chart(
        charts.family_heatmap(
            cells,
            epoch_end=t_end,
            mask="hide",
            value_title=vt,
            title="Fig. 2: profiles by model (significant cells, c ≥ g)",
        ),
        out / "fig2_profiles",
    )
    save_chart(
        charts.family_heatmap(
            cells,
            epoch_end=t_end,
            mask="opacity",
            post_only=False,
            value_title=vt,
            title="Profiles by model, all cells (faint: band includes 0)",
        ),
        out / "profiles_all_cells",
    )
    save_chart(charts.family_paths(fit.path(), value_title=vt), out / "paths")
    atomic_write_parquet(out / "cells.parquet", cells)
    atomic_write_parquet(out / "paths.parquet", fit.path())
    pre = fit.pretrends()
    atomic_write_text(out / "pretrends.md", pre.to_markdown(index=False, floatfmt=".4g") + "\n")
    print(pre.to_string(index=False))
    print(f"wrote figures and tables to {out}")


if __name__ == "__main__":
    main()
