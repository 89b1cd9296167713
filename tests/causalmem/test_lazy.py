"""Lazy subpackage exports resolve to the defining module's objects without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import causalmem.lab as lab
import causalmem.scoring as scoring


def test_lazy_names_resolve_and_unknown_names_raise() -> None:
    from causalmem.lab.train import TrainConfig
    from causalmem.scoring.runner import scoring_plan

    assert lab.TrainConfig is TrainConfig and scoring.scoring_plan is scoring_plan
    assert dir(scoring) == sorted(scoring.__all__) and "score_ray" in dir(scoring)
    with pytest.raises(AttributeError, match="'causalmem.scoring' has no attribute 'nope'"):
        scoring.nope  # noqa: B018


def test_importing_the_packages_does_not_import_torch() -> None:
    code = "import sys, causalmem.lab, causalmem.scoring; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
