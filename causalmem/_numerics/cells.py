"""Group-time cell layout of Callaway & Sant'Anna (2021), as R ``did::att_gt`` enumerates it.

Reference: Callaway, B. and Sant'Anna, P. H. C. (2021), "Difference-in-Differences with multiple
time periods", Journal of Econometrics 225(2), https://doi.org/10.1016/j.jeconom.2020.12.001.

Notation: periods ``tlist`` (sorted observed steps), cohorts ``glist`` (sorted treatment steps of
the treated units), anticipation ``delta``. For cohort ``g`` the post-treatment base period is the
last period ``p`` with ``p + delta < g``. Pre-treatment cells use the previous period (``varying``)
or that same base (``universal``, where the cell ``t = base`` is a structural zero).
Not-yet-treated comparison units for a cell are the never treated plus cohorts
``g' > max(t, base) + delta`` other than ``g`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from causalmem._types import BoolArray, Float64Array, Int64Array


@dataclass(frozen=True, slots=True)
class CellLayout:
    """Index arrays describing every ATT(g, t) cell.

    Attributes (``J`` = number of cells, ``K`` = number of treated cohorts)
    ----------------------------------------------------------------------
    g_idx : int64[J]
        Cohort index into ``glist``.
    t_idx, b_idx : int64[J]
        Period indices (into ``tlist``) of the outcome period and the base period.
    post : bool[J]
        ``glist[g_idx] <= tlist[t_idx]``.
    reference : bool[J]
        Structural-zero cells (``universal`` base period, ``t == base``): ATT is 0 by definition.
    k0 : int64[J]
        Comparison cohorts are ``k >= k0`` (``k0 == K`` means never treated only), with
        ``g_idx`` itself removed when ``exclude_own``.
    exclude_own : bool[J]
        Whether cohort ``g_idx`` lies in the range ``k >= k0`` and must be taken out.
    dropped_groups : tuple
        Cohorts with no valid base period (``g - delta`` at or before the first period).
    difference : bool
        Cells of the difference estimator: ``b_idx`` points at an all-zero column appended to
        the outcomes, so a cell is ``Ybar_t(g) - Ybar_t(C)`` (Lesci et al., Estimator 1).
    """

    tlist: Float64Array
    glist: Float64Array
    g_idx: Int64Array
    t_idx: Int64Array
    b_idx: Int64Array
    post: BoolArray
    reference: BoolArray
    k0: Int64Array
    exclude_own: BoolArray
    dropped_groups: tuple[float, ...]
    difference: bool = False

    @property
    def n_cells(self) -> int:
        """Number of cells ``J``."""
        return int(self.g_idx.size)

    @property
    def group(self) -> Float64Array:
        """Cohort (treatment step) of each cell."""
        return self.glist[self.g_idx]

    @property
    def time(self) -> Float64Array:
        """Outcome period of each cell."""
        return self.tlist[self.t_idx]

    @property
    def base(self) -> Float64Array:
        """Base period of each cell (NaN for the difference estimator, which has none)."""
        if self.difference:
            return np.full(self.n_cells, np.nan)
        return self.tlist[self.b_idx]


def build_cells(
    tlist: Float64Array,
    glist: Float64Array,
    *,
    base_period: str,
    anticipation: int | float,
    notyettreated: bool,
) -> CellLayout:
    """Enumerate the ATT(g, t) cells exactly as R ``did`` (>= 2.1) does.

    Parameters
    ----------
    tlist
        Sorted distinct periods.
    glist
        Sorted distinct treatment cohorts (never-treated excluded).
    base_period
        ``"varying"`` or ``"universal"``.
    anticipation
        Number of periods (in ``tlist`` units) of anticipation ``delta``.
    notyettreated
        Use never treated plus not-yet-treated cohorts as comparison units.

    Returns
    -------
    CellLayout

    Examples
    --------
    >>> c = build_cells(np.array([1., 2, 3]), np.array([2., 3]), base_period="varying",
    ...                 anticipation=0, notyettreated=False)
    >>> c.group.tolist(), c.time.tolist(), c.base.tolist()
    ([2.0, 2.0, 3.0, 3.0], [2.0, 3.0, 2.0, 3.0], [1.0, 1.0, 1.0, 2.0])
    """
    tlist = np.asarray(tlist, dtype=np.float64)
    glist = np.asarray(glist, dtype=np.float64)
    n_t, n_g = tlist.size, glist.size
    varying = base_period == "varying"
    # Outcome periods: all but the first for "varying" (the first has no previous period).
    t_out = np.arange(1 if varying else 0, n_t)
    # Last period p with p + delta < g, per cohort (-1 when none exists).
    gbase = np.searchsorted(tlist + anticipation, glist, side="left") - 1
    dropped = tuple(float(g) for g in glist[gbase < 0])

    gg, tt = np.meshgrid(np.arange(n_g), t_out, indexing="ij")
    gi, ti = gg.ravel(), tt.ravel()
    keep = gbase[gi] >= 0
    gi, ti = gi[keep], ti[keep]
    post = glist[gi] <= tlist[ti]
    bi = np.where(post | (not varying), gbase[gi], ti - 1)
    reference = (~post) & (bi == ti) if not varying else np.zeros(gi.size, dtype=bool)

    k_never = n_g
    if notyettreated:
        thr = tlist[np.maximum(ti, bi)] + anticipation
        k0 = np.searchsorted(glist, thr, side="right")
    else:
        k0 = np.full(gi.size, k_never)
    exclude_own = gi >= k0
    return CellLayout(
        tlist=tlist,
        glist=glist,
        g_idx=gi.astype(np.int64),
        t_idx=ti.astype(np.int64),
        b_idx=bi.astype(np.int64),
        post=post,
        reference=reference,
        k0=k0.astype(np.int64),
        exclude_own=exclude_own,
        dropped_groups=dropped,
    )
