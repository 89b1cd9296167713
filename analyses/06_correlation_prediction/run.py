"""Analysis 06: cross-size correlations (Fig. 6, both variants), prediction, findings (i)-(iii).

Usage: ``python analyses/06_correlation_prediction/run.py [--out DIR] [--config TOML]
[--family DIR]`` (default output: ``out/06_correlation_prediction``).

Correlations use a joint multiplier bootstrap over the instances every model scored. The
``all`` variant pivots every cell (placebo cells included), as the reference repository's
``compute_correlations`` does for the paper's Fig. 6 (pitfall 8); ``post_first_epoch`` keeps
c >= g with g, c <= T. The largest model's profile is predicted from the smaller ones on held-out
cohorts. ``findings.md`` / ``findings.json`` state whether findings (i)-(iii) hold, with numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import json
import os
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

from analyses.wiring.family import analysis_from_cli
from causalmem.presentation import charts
from causalmem.workflows.family import findings_markdown
from lmecon.atomic import atomic_write_parquet, atomic_write_text
from lmecon.charts import save_chart

HERE = Path(__file__).parent


def main() -> None:
    out, an = analysis_from_cli(__doc__, HERE)
    comp_all, comp_post = an.comparisons["all"], an.comparisons["post_first_epoch"]
    save_chart(
        charts.correlation_matrix(
            comp_all.tidy(), title="Fig. 6: profile correlations, all cells (reproduces the paper)"
        ),
        out / "fig6_correlation_all",
    )
    save_chart(
        charts.correlation_matrix(
            comp_post.tidy(), title=f"Profile correlations, c ≥ g and g, c ≤ {an.epoch_end:g}"
        ),
        out / "fig6_correlation_post_first_epoch",
    )
    pred = an.prediction
    save_chart(
        charts.prediction_scatter(
            pred.cells,
            title=f"{pred.target} predicted from {', '.join(pred.predictors)} (held-out cohorts)",
        ),
        out / "prediction",
    )
    corr = an.correlations()
    atomic_write_parquet(out / "correlations.parquet", corr)
    atomic_write_text(out / "correlations.md", corr.to_markdown(index=False, floatfmt=".4g"))
    atomic_write_parquet(out / "prediction_metrics.parquet", pred.tidy())
    atomic_write_parquet(out / "prediction_cells.parquet", pred.cells)
    atomic_write_text(
        out / "prediction.md",
        pred.tidy().to_markdown(index=False, floatfmt=".4g")
        + "\n\n"
        + pred.coefficients.to_markdown(index=False, floatfmt=".4g")
        + "\n",
    )
    assert an.findings is not None
    atomic_write_text(out / "findings.json", json.dumps(an.findings, indent=1, default=float))
    md = findings_markdown(an.findings)
    atomic_write_text(out / "findings.md", md)
    print(md)
    print(f"wrote figures and tables to {out}")


if __name__ == "__main__":
    main()
