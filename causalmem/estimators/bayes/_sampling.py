"""The sampler: PyMC/ArviZ import, sampler choice, NUTS runs and the recorded versions."""

from __future__ import annotations

import importlib.util
import time
import warnings
from typing import Any

from lmecon.provenance import versions

INSTALL_HINT = (
    "bayes_did needs PyMC and ArviZ, which are optional: pip install causalmem[bayes] "
    "(nutpie is used as the sampler when it is installed too)."
)


def _import_pymc() -> tuple[Any, Any]:
    try:
        import arviz as az
        import pymc as pm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(INSTALL_HINT) from exc
    return pm, az


def _choose_sampler(sampler: str) -> str:
    """Return the sampler to use: ``"auto"`` is nutpie when installed, else PyMC."""
    if sampler == "auto":
        return "nutpie" if importlib.util.find_spec("nutpie") is not None else "pymc"
    if sampler == "nutpie" and importlib.util.find_spec("nutpie") is None:
        raise ImportError("sampler='nutpie' needs nutpie: pip install nutpie.")
    return sampler


def _bayes_versions(sampler_used: str) -> dict[str, str]:
    out = versions(("pymc", "pytensor", "arviz", "nutpie"))
    out["sampler"] = sampler_used
    return out


def _sample(
    pm: Any,
    model: Any,
    sampler: str,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    seed: int,
    progressbar: bool,
) -> tuple[Any, float]:
    """Run NUTS; returns ArviZ's container and the compile time (nutpie; NaN for PyMC).

    The container is an xarray ``DataTree`` with PyMC >= 6 / ArviZ >= 1 (and nutpie with
    ArviZ >= 1), an ArviZ ``InferenceData`` with the 5.x / 0.2x stack (Python 3.11).
    """
    with warnings.catch_warnings():
        # PyTensor's BLAS notice and ArviZ's refactor notice; convergence is checked by us.
        warnings.filterwarnings("ignore", message=".*BLAS.*")
        warnings.filterwarnings("ignore", message=".*ArviZ is undergoing.*")
        warnings.filterwarnings("ignore", category=FutureWarning)
        if sampler == "nutpie":
            return _sample_nutpie(
                model, draws, tune, chains, cores, target_accept, seed, progressbar
            )
        with model:
            idata = pm.sample(
                draws=draws,
                tune=tune,
                chains=chains,
                cores=cores,
                target_accept=target_accept,
                random_seed=seed,
                progressbar=progressbar,
                compute_convergence_checks=False,
                return_inferencedata=True,
            )
        return idata, float("nan")


def _sample_nutpie(
    model: Any,
    draws: int,
    tune: int,
    chains: int,
    cores: int,
    target_accept: float,
    seed: int,
    progressbar: bool,
) -> tuple[Any, float]:
    """Compile the model with nutpie (numba) and sample; returns the compile time too."""
    import nutpie

    t0 = time.perf_counter()
    compiled = nutpie.compile_pymc_model(model)
    t_compile = time.perf_counter() - t0
    idata = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        cores=cores,
        seed=seed,
        target_accept=target_accept,
        progress_bar=progressbar,
    )
    return idata, t_compile
