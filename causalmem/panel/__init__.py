"""Long (unit × step) panels: schema, validation, the Panel value, parquet I/O, simulation.

``pythia`` (Pythia's sequence → batch → step → cohort mapping) is a submodule:
``from causalmem.panel import pythia``.
"""

from __future__ import annotations

from causalmem.panel.checks import CheckedPanel, validate_long
from causalmem.panel.io import read_panel, write_panel
from causalmem.panel.panel import Panel
from causalmem.panel.schema import SCHEMA_VERSION, PanelSchema, normalise_cohort
from causalmem.panel.simulate import SimulatedPanel, simulate_panel

__all__ = [
    "SCHEMA_VERSION",
    "CheckedPanel",
    "Panel",
    "PanelSchema",
    "SimulatedPanel",
    "normalise_cohort",
    "read_panel",
    "simulate_panel",
    "validate_long",
    "write_panel",
]
