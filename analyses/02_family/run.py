"""Analysis 02: train and score a mini-Pythia family (or read real panels) on shared instances.

Usage: ``python analyses/02_family/run.py [--out DIR] [--config TOML]`` (default output:
``out/02_family``). Rerunning resumes: finished training and scoring are reused per model.
Writes ``models/<name>/`` (a lab-demo folder per size), ``family.json`` and ``family.parquet``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: analyses.wiring

import os
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

from analyses.wiring.family import analysis_cli
from causalmem.workflows.family import FamilyConfig, build_family

HERE = Path(__file__).parent


def main() -> None:
    args = analysis_cli(__doc__, HERE, family=False)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # file members only
        pass
    fam = build_family(FamilyConfig.from_toml(args.config), args.out)
    print(fam.tidy().drop(columns=["path"]).to_string(index=False))
    print(f"family of {len(fam.models)} models in {args.out}")


if __name__ == "__main__":
    main()
