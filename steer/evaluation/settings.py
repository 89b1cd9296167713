"""Steer settings of an evaluation and the seeds of its samples (common random numbers)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from steer.core.transform import SteerTransform, as_values
from steer.errors import SteerInputError, SteerValuesError

__all__ = ["sample_seeds", "value_grid"]


def sample_seeds(prompts: Sequence[str], samples: int, seed: int = 0) -> np.ndarray:
    """One sampling seed per (prompt, sample): distinct across prompts, reproducible.

    The reference code seeds sample ``i`` with ``i`` for every prompt (pitfall 3), so all
    prompts share the same 25 random streams. Here the seed of sample ``s`` of a prompt is drawn
    from ``numpy.random.SeedSequence((seed, sha256(prompt text), occurrence, s))``, where
    ``occurrence`` counts earlier copies of the same text in ``prompts``. A prompt's seeds thus
    depend only on its text (not on its position or on the other prompts), and steer settings
    evaluated on the same prompt share them (common random numbers across values).

    Parameters
    ----------
    prompts
        Prompt texts.
    samples
        Samples per prompt.
    seed
        Base seed.

    Returns
    -------
    numpy.ndarray
        ``[len(prompts), samples]`` int64 seeds in ``[0, 2**63)``.
    """
    if samples < 1:
        raise SteerInputError(f"samples must be >= 1; got {samples}.")
    if seed < 0:
        raise SteerInputError(f"seed must be >= 0; got {seed}.")
    out = np.empty((len(prompts), samples), dtype=np.int64)
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts):
        occ = seen.get(p, 0)
        seen[p] = occ + 1
        digest = np.frombuffer(hashlib.sha256(p.encode("utf-8")).digest()[:16], dtype=np.uint32)
        for s in range(samples):
            hi, lo = np.random.SeedSequence([seed, *digest.tolist(), occ, s]).generate_state(2)
            out[i, s] = (int(hi) << 31) | (int(lo) >> 1)
    return out


def value_grid(
    transform: SteerTransform, axes: Mapping[str, Sequence[float]]
) -> list[tuple[float, ...]]:
    """Full slot values for every combination of labelled-slot values (a composition grid).

    Parameters
    ----------
    transform
        Usually :func:`steer.compose` of several steers.
    axes
        Slot name -> values of that slot (each labelled slot exactly once; dummy slots are 1).

    Returns
    -------
    list of tuple
        ``k`` values per setting, the first axis varying slowest.

    Examples
    --------
    >>> value_grid(both, {"sentiment": [-5, 5], "formality": [0, 5]})  # doctest: +SKIP
    [(-5.0, 1.0, 0.0, 1.0), (-5.0, 1.0, 5.0, 1.0), (5.0, 1.0, 0.0, 1.0), (5.0, 1.0, 5.0, 1.0)]
    """
    labelled = [transform.slot_names[i] for i in transform.labelled_slots]
    if sorted(axes) != sorted(labelled):
        raise SteerValuesError(
            f"axes must name each labelled slot once: {labelled}; got {sorted(axes)}."
        )
    names = list(axes)
    grid: list[tuple[float, ...]] = [()]
    for name in names:
        vals = [float(v) for v in axes[name]]
        if not vals:
            raise SteerValuesError(f"axis {name!r} has no values.")
        grid = [(*g, v) for g in grid for v in vals]
    out = []
    for combo in grid:
        full = [1.0] * transform.num_steers
        for name, v in zip(names, combo, strict=True):
            full[transform.slot_names.index(name)] = v
        out.append(tuple(full))
    return out


def _setting_frame(
    transform: SteerTransform | None, settings: Sequence[tuple[float, ...]] | None
) -> pd.DataFrame:
    if transform is None or settings is None:
        return pd.DataFrame({"setting": [0], "value": [math.nan], "epsilon": [math.nan],
                             "values": ["unsteered"]})  # fmt: skip
    lab = transform.labelled_slots or tuple(range(transform.num_steers))
    data: dict[str, list[Any]] = {"setting": list(range(len(settings)))}
    data["value"] = [float(v[lab[0]]) for v in settings]
    data["epsilon"] = [float(v[lab[0]]) * transform.epsilon for v in settings]
    if len(lab) > 1:
        for i in lab:
            data[f"value_{transform.slot_names[i]}"] = [float(v[i]) for v in settings]
    data["values"] = [",".join(f"{x:g}" for x in v) for v in settings]
    return pd.DataFrame(data)


def _settings(
    transform: SteerTransform | None, values: Any
) -> tuple[tuple[float, ...], ...] | None:
    if transform is None:
        if values is not None:
            raise SteerInputError("values were given without a transform; pass the steer.")
        return None
    if values is None:
        raise SteerInputError(
            "pass values with a transform: steer strengths s (eps = s * eps_0) such as "
            "[-5, 0, 5], or full k-tuples such as [(5, 1)]."
        )
    if isinstance(values, int | float) or (isinstance(values, torch.Tensor) and values.dim() == 0):
        values = [float(values)]
    out = []
    for v in values:
        if isinstance(v, int | float):
            out.append(transform.values(float(v)))
        else:
            row = as_values(v, transform.num_steers)
            if row.dim() != 1:
                raise SteerValuesError(f"each setting must be one row of k values; got {v!r}.")
            out.append(tuple(float(x) for x in row.tolist()))
    if not out:
        raise SteerInputError("values is empty; pass at least one steer setting.")
    if len(set(out)) != len(out):
        raise SteerValuesError(f"values contain duplicate settings: {out}.")
    return tuple(out)
