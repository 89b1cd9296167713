"""Bayesian hierarchical model of a memorisation profile: partial pooling of ATT(g, c).

:func:`bayes_did` takes an :class:`~causalmem.AttGtResult` and fits, with PyMC's NUTS (nutpie
when installed), either a measurement model on the cell estimates (``model="cells"``) or a
unit-level model on the panel (``model="units"``, small panels); :func:`bayes_sensitivity`
refits the cells model with an explicit parallel-trends violation path over a grid of prior
scales (the Bayesian twin of HonestDiD's Delta^SD). PyMC, ArviZ (and optionally
nutpie) are imported only when the function runs: ``pip install causalmem[bayes]``.

Modules: :mod:`.api` (:func:`bayes_did`: checks, pipeline, result), ``_cells`` (the modelled
cells and their sampling-covariance factors), ``_priors`` (the pooled path ``mu`` and shared
prior pieces), ``_whitening`` (the cells model's Gaussian block and preconditioner),
``_model_cells`` / ``_model_units`` (the two PyMC models), ``_ops`` (the block mat-vec Op),
``_sampling`` (PyMC import, sampler choice, NUTS), ``_draws`` (conditional draws of ``alpha``
and ``theta``), ``_decay`` (the per-cohort decay loadings and their exact marginalisation),
``sensitivity`` / ``_sensitivity`` (:func:`bayes_sensitivity`, the violation path) and
``_diagnostics`` (R-hat, ESS, divergences).
"""

from __future__ import annotations

from typing import Any

# The public API and constants; the private helpers that the tests use (``as`` aliases).
from causalmem.estimators.bayes._cells import MAX_DENSE_CELLS, VARIANCE_DF
from causalmem.estimators.bayes._cells import _cell_set as _cell_set
from causalmem.estimators.bayes._cells import _data_scale as _data_scale
from causalmem.estimators.bayes._cells import _factors as _factors
from causalmem.estimators.bayes._cells import _reorder as _reorder
from causalmem.estimators.bayes._decay import DECAY_BASIS
from causalmem.estimators.bayes._diagnostics import ESS_MIN, REPORTED, RHAT_MAX
from causalmem.estimators.bayes._draws import _add_theta as _add_theta
from causalmem.estimators.bayes._linalg import _psd_sqrt as _psd_sqrt
from causalmem.estimators.bayes._model_cells import _build_cells_model as _build_cells_model
from causalmem.estimators.bayes._model_units import MAX_UNIT_OBS
from causalmem.estimators.bayes._model_units import _build_units_model as _build_units_model
from causalmem.estimators.bayes._ops import _block_op as _block_op
from causalmem.estimators.bayes._priors import GP_BASIS_MAX, GP_C, LEVEL_SD
from causalmem.estimators.bayes._sampling import INSTALL_HINT
from causalmem.estimators.bayes._whitening import PRECOND_ITERS
from causalmem.estimators.bayes.api import BayesModel, Pooling, Sampler, bayes_did
from causalmem.estimators.bayes.sensitivity import bayes_sensitivity

__all__ = [
    "DECAY_BASIS",
    "ESS_MIN",
    "GP_BASIS_MAX",
    "GP_C",
    "INSTALL_HINT",
    "LEVEL_SD",
    "MAX_DENSE_CELLS",
    "MAX_UNIT_OBS",
    "PRECOND_ITERS",
    "REPORTED",
    "RHAT_MAX",
    "VARIANCE_DF",
    "BayesModel",
    "Pooling",
    "Sampler",
    "bayes_did",
    "bayes_sensitivity",
]


def __getattr__(name: str) -> Any:
    # Pickles of the lazily built Op made before the split name it here.
    if name == "_BlockMatVec":
        return _block_op()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
