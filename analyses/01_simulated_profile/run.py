"""Analysis 01: estimate and report the memorisation profile of a simulated Pythia-shaped panel.

Usage: ``python analyses/01_simulated_profile/run.py [--out DIR] [--config TOML]``
(default output: ``out/01_simulated_profile``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from causalmem.workflows.simulated_demo import SimulatedDemoConfig, run_demo

HERE = Path(__file__).parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("out") / HERE.name)
    ap.add_argument("--config", type=Path, default=HERE / "config.toml")
    args = ap.parse_args()
    res = run_demo(args.out, SimulatedDemoConfig.from_toml(args.config))
    print(f"wrote {len(res.files)} files to {res.out_dir}")


if __name__ == "__main__":
    main()
