"""TWFE diagnostics on a long panel: Goodman-Bacon decomposition and dCDH weights (issue 14).

Both take the panel the way :func:`~causalmem.att_gt` does: ``data`` (a frame or a
:class:`~causalmem.Panel`) and the role columns ``yname, tname, idname, gname`` positionally
(cohort = first treated step; NA/inf = never treated); the static treatment is
``D_it = 1{t >= cohort_i}``. Everything is computed on cohort-by-period cells (group means by
``np.bincount``), so a 16,300 x 154 panel takes well under a second.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from causalmem._numerics.bacon import (
    TYPE_ALWAYS,
    TYPE_LATE,
    bacon_cells,
    twfe_coefficient_cells,
)
from causalmem._numerics.within import demean
from causalmem.errors import IdentificationError, UnbalancedPanelError
from causalmem.panel.checks import CheckedPanel, validate_long
from causalmem.panel.panel import Panel
from causalmem.results.base import provenance
from causalmem.results.diagnostics import (
    BaconDecomposition,
    BaconSpec,
    TwfeWeights,
    TwfeWeightsSpec,
)

__all__ = ["bacon_decomposition", "twfe_weights"]


def _roles(
    data: pd.DataFrame | Panel,
    yname: str | None,
    tname: str | None,
    idname: str | None,
    gname: str | None,
    fn: str,
    need_y: bool = True,
) -> tuple[pd.DataFrame, str | None, str, str, str]:
    if isinstance(data, Panel):
        sch = data.schema
        yname = yname or sch.outcomes[0]
        tname, idname, gname = tname or sch.step, idname or sch.unit, gname or sch.cohort
        data = data.frame
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame or a Panel, got {type(data).__name__}.")
    named = {"tname": tname, "idname": idname, "gname": gname}
    if need_y:
        named = {"yname": yname, **named}
    missing = [k for k, v in named.items() if v is None]
    if missing:
        raise TypeError(f"{fn}() needs {', '.join(missing)} (column names) when data is a frame.")
    assert tname is not None and idname is not None and gname is not None
    return data, yname, tname, idname, gname


class _Cells:
    """Row -> unit / period / cohort codes of a checked panel (vectorised)."""

    def __init__(self, checked: CheckedPanel) -> None:
        f = checked.frame
        self.uid, units = pd.factorize(f[checked.idname], sort=False)
        self.n_units = int(units.size)
        self.steps = checked.steps
        self.n_t = int(self.steps.size)
        self.tpos = np.searchsorted(self.steps, f[checked.tname].to_numpy(np.int64))
        g_row = f[checked.gname].to_numpy(dtype=np.float64, na_value=np.inf)
        # grid index of the first treated period (n_t: not treated within the panel)
        start_row = np.searchsorted(self.steps.astype(np.float64), g_row, side="left")
        self.cohorts, self.kid = np.unique(start_row, return_inverse=True)
        self.kid = self.kid.astype(np.int64)
        self.n_k = int(self.cohorts.size)
        # label of each cohort: its step (inf when never treated within the panel)
        grid = np.append(self.steps.astype(np.float64), np.inf)
        self.label = grid[self.cohorts]
        self.cell = self.kid * self.n_t + self.tpos
        self.treated = self.tpos >= self.cohorts[self.kid]


def bacon_decomposition(
    data: pd.DataFrame | Panel,
    yname: str | None = None,
    tname: str | None = None,
    idname: str | None = None,
    gname: str | None = None,
    *,
    drop_always_treated: bool = False,
) -> BaconDecomposition:
    """Goodman-Bacon decomposition of the static TWFE coefficient (R ``bacondecomp::bacon``).

    Parameters
    ----------
    data
        Long panel (frame, never modified) or :class:`~causalmem.Panel`.
    yname, tname, idname, gname
        Outcome, step, unit and cohort columns (defaults from a ``Panel``'s schema).
    drop_always_treated
        Drop units treated at or before the first step (otherwise an error, as in
        :func:`~causalmem.att_gt`).

    Returns
    -------
    BaconDecomposition
        One row per 2x2 comparison — ``"Treated vs Untreated"``, ``"Earlier vs Later
        Treated"``, ``"Later vs Earlier Treated"`` (forbidden: already-treated controls) —
        with weights summing to one and ``sum(weight * estimate)`` equal to the TWFE
        coefficient of ``y ~ D | unit + step`` (to rounding).

    Raises
    ------
    UnbalancedPanelError
        On an unbalanced panel. Theorem 1 of Goodman-Bacon (2021) needs every unit in every
        period (R ``bacondecomp`` refuses too, its issue #85): with gaps the unit effects no
        longer difference out cell by cell and the 2x2 weights are not defined. Use
        :func:`twfe_weights`, which is exact on unbalanced panels, or balance the panel.
    IdentificationError
        When there is no variation in treatment timing to decompose.
    """
    data, yname, tname, idname, gname = _roles(
        data, yname, tname, idname, gname, "bacon_decomposition"
    )
    assert yname is not None
    checked = validate_long(
        data,
        idname=idname,
        tname=tname,
        gname=gname,
        ynames=(yname,),
        allow_unbalanced_panel=True,
        drop_always_treated=drop_always_treated,
    )
    if not checked.balanced:
        raise UnbalancedPanelError(
            "bacon_decomposition() needs a balanced panel: the Goodman-Bacon weights (Theorem "
            "1) are defined only when every unit is observed at every step (R bacondecomp "
            "refuses unbalanced panels too, issue #85). Use causalmem.twfe_weights(), whose "
            "de Chaisemartin-D'Haultfoeuille weights are exact on unbalanced panels, or keep "
            "the units observed at every step."
        )
    c = _Cells(checked)
    y = checked.frame[yname].to_numpy(np.float64)
    n = np.bincount(c.kid, minlength=c.n_k).astype(np.float64) / c.n_t
    ysum = np.bincount(c.cell, weights=y, minlength=c.n_k * c.n_t).reshape(c.n_k, c.n_t)
    ybar = ysum / n[:, None]
    start = c.cohorts.astype(np.int64)
    if np.unique(start[(start > 0) & (start < c.n_t)]).size == 0:
        raise IdentificationError(
            f"No unit of {idname!r} starts treatment inside the panel (cohorts in {gname!r} "
            "are all never treated or beyond the last step): nothing to decompose."
        )
    beta, _ = twfe_coefficient_cells(ybar, n, start)
    bc = bacon_cells(ybar, n, start)
    comp = pd.DataFrame(
        {
            "treated": c.label[bc.treated],
            "control": c.label[bc.control],
            "estimate": bc.estimate,
            "weight": bc.weight,
            "type": bc.type.astype(str),
            "forbidden": np.isin(bc.type, [TYPE_LATE, TYPE_ALWAYS]),
        }
    )
    return BaconDecomposition(
        spec=BaconSpec(yname=yname, tname=tname, idname=idname, gname=gname),
        comparisons=comp,
        twfe_estimate=beta,
        variance_d=bc.variance_d,
        n_units=c.n_units,
        n_periods=c.n_t,
        provenance=provenance(method="Goodman-Bacon (2021) Theorem 1 on cohort cell means"),
    )


def twfe_weights(
    data: pd.DataFrame | Panel,
    yname: str | None = None,
    tname: str | None = None,
    idname: str | None = None,
    gname: str | None = None,
    *,
    drop_always_treated: bool = False,
) -> TwfeWeights:
    """Weights of the treated (cohort, period) cells in the TWFE coefficient (dCDH 2020).

    ``beta_fe = sum_{(g,t): D=1} W_gt Delta_gt`` with ``W_gt = sum_{i in (g,t)} e_it /
    sum_{D_it = 1} e_it``, ``e`` the residual of ``D`` on unit and step effects (R
    ``TwoWayFEWeights(type = "feTR")`` with the cohort-by-step cells as groups). Balanced
    panels: closed form on cells. Unbalanced panels: ``e`` from the exact within
    transformation on the observed rows (alternating projections), then summed by cell —
    the decomposition stays exact.

    Parameters
    ----------
    data
        Long panel (frame, never modified) or :class:`~causalmem.Panel`.
    yname
        Outcome column (optional): with it, ``beta_fe`` and ``sigma_fe`` (the smallest standard
        deviation of the cell effects under which they could all have the opposite sign of
        ``beta_fe``, dCDH Corollary 1) are reported; without it, only the weights.
    tname, idname, gname
        Step, unit and cohort columns.
    drop_always_treated
        Drop units treated at or before the first step (otherwise an error).

    Returns
    -------
    TwfeWeights
    """
    data, yname, tname, idname, gname = _roles(
        data, yname, tname, idname, gname, "twfe_weights", need_y=False
    )
    if yname is None:  # the validator needs an outcome: a zero column on a copy of the roles
        roles = [c for c in dict.fromkeys((idname, tname, gname)) if c in data.columns]
        data = data.loc[:, roles].assign(**{"__no_outcome__": 0.0})
    checked = validate_long(
        data,
        idname=idname,
        tname=tname,
        gname=gname,
        ynames=(yname or "__no_outcome__",),
        allow_unbalanced_panel=True,
        drop_always_treated=drop_always_treated,
    )
    c = _Cells(checked)
    if not c.treated.any():
        raise IdentificationError(
            f"No row is treated (step >= cohort in {gname!r}): there are no weights to compute."
        )
    n_cells = c.n_k * c.n_t
    cnt = np.bincount(c.cell, minlength=n_cells).astype(np.float64)
    if checked.balanced:
        n = cnt.reshape(c.n_k, c.n_t)[:, 0]
        start = c.cohorts.astype(np.int64)
        t = np.arange(c.n_t)
        d = (t[None, :] >= start[:, None]).astype(np.float64)
        w_n = n / n.sum()
        dt = d - d.mean(axis=1, keepdims=True) - (w_n[:, None] * d).sum(axis=0, keepdims=True)
        dt = dt + float((w_n[:, None] * d).sum() / c.n_t)
        eps_sum = (dt * n[:, None]).ravel()
        eps_row = dt.ravel()[c.cell]
    else:
        dm = demean(c.treated.astype(np.float64)[:, None], [c.uid.astype(np.int64), c.tpos])
        if not dm.converged:
            raise IdentificationError("The two-way demeaning of the treatment did not converge.")
        eps_row = dm.values[:, 0]
        eps_sum = np.bincount(c.cell, weights=eps_row, minlength=n_cells)
    denom = float(eps_row[c.treated].sum())  # = sum e_it D_it = sum e_it^2 > 0
    if not denom > 1e-12 * max(1.0, float(c.treated.sum())):
        raise IdentificationError(
            "The treatment is collinear with the unit and step effects (no variation in "
            "timing): the TWFE coefficient is not identified."
        )
    kk, tt = np.divmod(np.arange(n_cells), c.n_t)
    treated_cell = (tt >= c.cohorts[kk]) & (cnt > 0)
    weight = eps_sum[treated_cell] / denom
    n1 = float(cnt[treated_cell].sum())
    share = cnt[treated_cell] / n1
    w = weight / share
    beta = sigma = float("nan")
    if yname is not None:
        y = checked.frame[yname].to_numpy(np.float64)
        beta = float(eps_row @ y) / denom
        sd_w = float(np.sqrt((share * (w - 1.0) ** 2).sum()))
        sigma = abs(beta) / sd_w if sd_w > 0 else float("inf")
    steps = c.steps.astype(np.float64)
    cells = pd.DataFrame(
        {
            "cohort": c.label[kk[treated_cell]],
            "time": steps[tt[treated_cell]],
            "event_time": (tt - c.cohorts[kk])[treated_cell].astype(np.int64),
            "n_obs": cnt[treated_cell].astype(np.int64),
            "weight": weight,
            "w": w,
        }
    )
    return TwfeWeights(
        spec=TwfeWeightsSpec(
            yname=yname, tname=tname, idname=idname, gname=gname, balanced=checked.balanced
        ),
        cells=cells,
        beta_fe=beta,
        sigma_fe=sigma,
        n_units=c.n_units,
        n_periods=c.n_t,
        provenance=provenance(method="dCDH (2020) Theorem 1, feTR weights on cohort cells"),
    )
