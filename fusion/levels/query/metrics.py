"""Evaluation metrics of router benchmarks: the cost-quality frontier and the performance gap recovered.

RouterBench (Hu et al., 2024, "RouterBench: A Benchmark for Multi-LLM Routing System"):

* :func:`non_decreasing_convex_hull` -- the upper-left convex frontier of a router's cost-quality points;
* :func:`aiq` -- Average Improvement in Quality, the mean height of that frontier over a cost range.

RouteLLM (Ong et al., 2024, "RouteLLM: Learning to Route LLMs with Preference Data"), for a router that
chooses between a weak and a strong model:

* :func:`pgr` -- performance gap recovered, (perf - weak) / (strong - weak);
* :func:`apgr` -- average PGR over the share of calls sent to the strong model, in [0, 1];
* :func:`cpt` -- call-performance threshold, the smallest share of strong calls that reaches a target PGR.

And :func:`gap_recovered`, the share of the best-single-to-oracle gap a router closes, and
:func:`paired_bootstrap` (from :mod:`fusion.core.stats`), the 95% interval of a mean per-query difference between two routers on the same queries.

All functions are pure numpy and validate their input: empty arrays, mismatched lengths, NaN or infinite
values raise a :class:`ValueError` with the offending argument's name.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np

from fusion.core.stats import as_1d as _as_1d
from fusion.core.stats import paired_bootstrap

logger = logging.getLogger(__name__)

__all__ = [
    "aiq",
    "apgr",
    "cpt",
    "gap_recovered",
    "non_decreasing_convex_hull",
    "paired_bootstrap",
    "pgr",
]

ArrayLike = Sequence[float] | np.ndarray


# ----------------------------------------------------------------------------------------------- validation


def _as_scalar(name: str, value: float) -> float:
    """``value`` as a finite float, or a ValueError naming ``name``."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out}")
    return out


def _same_length(names: tuple[str, str], a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} differ in length: {a.size} != {b.size}")


# ------------------------------------------------------------------------------------------- RouterBench


def non_decreasing_convex_hull(costs: ArrayLike, qualities: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The non-decreasing upper convex hull of cost-quality points (RouterBench, Hu et al. 2024).

    The frontier starts at the cheapest point (among cost ties, the one of best quality) and keeps only
    the points on the upper-left convex frontier:

    * a point that costs at least as much as another but is no better is dominated and dropped (so the
      frontier is strictly increasing in quality as cost grows);
    * a point on or below the chord between two frontier neighbours is dropped (the frontier is concave:
      mixing the two neighbours' routes at random does at least as well at that cost).

    Args:
        costs: cost of each point (e.g. mean USD per query of one router configuration).
        qualities: quality of each point, same length.

    Returns:
        ``(hull_costs, hull_qualities)``, float arrays sorted by increasing cost (and quality). A single
        point is returned as a one-element hull.

    Raises:
        ValueError: on empty input, mismatched lengths, NaN or infinite values.
    """
    c = _as_1d("costs", costs)
    q = _as_1d("qualities", qualities)
    _same_length(("costs", "qualities"), c, q)

    # By cost ascending, then quality descending: the first point of each cost tie is its best one.
    order = np.lexsort((-q, c))
    c, q = c[order], q[order]

    # Pareto filter: keep a point only if it is strictly better than every cheaper-or-equal point kept.
    pareto: list[tuple[float, float]] = []
    for ci, qi in zip(c.tolist(), q.tolist(), strict=True):
        if not pareto or qi > pareto[-1][1]:
            pareto.append((ci, qi))

    # Upper hull (monotone chain) of the Pareto points; costs and qualities both strictly increase here.
    hull: list[tuple[float, float]] = []
    for p in pareto:
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            # cross >= 0: hull[-1] lies on or below the chord hull[-2] -> p, so it is not on the frontier.
            cross = (x1 - x0) * (p[1] - y0) - (y1 - y0) * (p[0] - x0)
            if cross >= 0:
                hull.pop()
            else:
                break
        hull.append(p)

    hc = np.array([h[0] for h in hull], dtype=float)
    hq = np.array([h[1] for h in hull], dtype=float)
    logger.debug("convex hull: %d of %d points kept", hc.size, c.size)
    return hc, hq


def aiq(costs: ArrayLike, qualities: ArrayLike, cost_range: tuple[float, float] | None = None) -> float:
    """Average Improvement in Quality (RouterBench): the mean height of the frontier over a cost range.

    The frontier is :func:`non_decreasing_convex_hull` of the points, linearly interpolated between hull
    points. Outside the hull it is extended flat: before its first (cheapest) point at the first hull
    quality, beyond its last point at its best quality. The result is the area under that curve over
    ``[c_min, c_max]`` divided by ``c_max - c_min``.

    Args:
        costs: cost of each point.
        qualities: quality of each point, same length.
        cost_range: ``(c_min, c_max)``; default the min and max of ``costs``. Pass a common range (e.g. the
            union of all routers' costs) to compare routers with each other.

    Returns:
        The AIQ, in the units of ``qualities``. For a degenerate range (``c_max == c_min``) the best hull
        quality is returned (the frontier's value when every point has the same cost).

    Raises:
        ValueError: on bad points (see :func:`non_decreasing_convex_hull`) or a range with non-finite
            bounds or ``c_max < c_min``.
    """
    hc, hq = non_decreasing_convex_hull(costs, qualities)
    if cost_range is None:
        c_all = np.asarray(costs, dtype=float)
        lo, hi = float(c_all.min()), float(c_all.max())
    else:
        if len(cost_range) != 2:
            raise ValueError(f"cost_range must be a (c_min, c_max) pair, got {cost_range!r}")
        lo = _as_scalar("cost_range[0]", cost_range[0])
        hi = _as_scalar("cost_range[1]", cost_range[1])
        if hi < lo:
            raise ValueError(f"cost_range must have c_min <= c_max, got ({lo}, {hi})")
    if hi == lo:
        return float(hq.max())

    # The curve is linear between these knots, so the trapezoid rule is exact.
    inner = hc[(hc > lo) & (hc < hi)]
    knots = np.concatenate(([lo], inner, [hi]))
    heights = np.interp(knots, hc, hq)  # np.interp clamps to hq[0] / hq[-1] outside the hull
    area = float(np.trapezoid(heights, knots))
    return area / (hi - lo)


# ---------------------------------------------------------------------------------------------- RouteLLM


def _pgr_array(performances: np.ndarray, weak: float, strong: float) -> np.ndarray:
    if strong == weak:
        return np.full_like(performances, np.nan)
    return (performances - weak) / (strong - weak)


def pgr(performance: float, weak: float, strong: float) -> float:
    """Performance gap recovered (RouteLLM, Ong et al. 2024): ``(perf - weak) / (strong - weak)``.

    0 is the weak model's performance, 1 the strong model's; a router can score below 0 or above 1.

    Note:
        When ``strong == weak`` there is no gap to recover and the result is NaN (not an error), so that
        a sweep over tasks can go on and skip such tasks with ``np.nanmean``.

    Raises:
        ValueError: if any argument is NaN or infinite.
    """
    perf = _as_scalar("performance", performance)
    w = _as_scalar("weak", weak)
    s = _as_scalar("strong", strong)
    return float(_pgr_array(np.array([perf]), w, s)[0])


def _share_curve(
    call_shares: ArrayLike, performances: ArrayLike, weak: float, strong: float
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Validated (share, performance) points sorted by share, with (0, weak) and (1, strong) added if absent."""
    x = _as_1d("call_shares", call_shares)
    y = _as_1d("performances", performances)
    _same_length(("call_shares", "performances"), x, y)
    w = _as_scalar("weak", weak)
    s = _as_scalar("strong", strong)
    if np.any((x < 0) | (x > 1)):
        raise ValueError(f"call_shares must lie in [0, 1], got min {x.min()} and max {x.max()}")
    if not np.any(x == 0.0):
        x, y = np.append(x, 0.0), np.append(y, w)
    if not np.any(x == 1.0):
        x, y = np.append(x, 1.0), np.append(y, s)
    order = np.argsort(x, kind="stable")
    return x[order], y[order], w, s


def apgr(call_shares: ArrayLike, performances: ArrayLike, weak: float, strong: float) -> float:
    """Average performance gap recovered (RouteLLM): the area under PGR(share of strong calls) on [0, 1].

    The router's sweep points ``(call_shares[i], performances[i])`` are sorted by share, the all-weak
    ``(0, weak)`` and all-strong ``(1, strong)`` routers are added where no point has share 0 or 1, and
    the PGR curve is integrated by the trapezoid rule. A router that mixes the two models at random lies
    on the line PGR = share and scores 0.5; a router that recovers the whole gap at once scores close to 1.

    Args:
        call_shares: share of queries routed to the strong model at each threshold, each in [0, 1].
        performances: the router's performance at each threshold, same length.
        weak: the weak model's performance (alone).
        strong: the strong model's performance (alone).

    Returns:
        APGR; NaN when ``strong == weak`` (see :func:`pgr`).

    Raises:
        ValueError: on empty input, mismatched lengths, NaN/infinite values, shares outside [0, 1].
    """
    x, y, w, s = _share_curve(call_shares, performances, weak, strong)
    if s == w:
        return float("nan")
    return float(np.trapezoid(_pgr_array(y, w, s), x))


def cpt(
    call_shares: ArrayLike, performances: ArrayLike, weak: float, strong: float, target_pgr: float
) -> float:
    """Call-performance threshold (RouteLLM's CPT(x%)): the least share of strong calls reaching a PGR.

    The curve is built as in :func:`apgr` (sorted by share, endpoints added) and linearly interpolated
    between consecutive points; the result is the first share along it at which PGR >= ``target_pgr``
    (e.g. 0.5 for CPT(50%), 0.8 for CPT(80%)). Lower is better.

    Args:
        call_shares: share of queries routed to the strong model at each threshold, each in [0, 1].
        performances: the router's performance at each threshold, same length.
        weak: the weak model's performance.
        strong: the strong model's performance.
        target_pgr: the PGR to reach, as a fraction (0.5, not 50).

    Returns:
        The share in [0, 1]; NaN if the curve never reaches ``target_pgr`` or ``strong == weak``.

    Raises:
        ValueError: on bad input (see :func:`apgr`) or a non-finite ``target_pgr``.
    """
    x, y, w, s = _share_curve(call_shares, performances, weak, strong)
    target = _as_scalar("target_pgr", target_pgr)
    if s == w:
        return float("nan")
    g = _pgr_array(y, w, s)
    if g[0] >= target:
        return float(x[0])
    for i in range(1, g.size):
        if g[i] >= target:
            # g[i - 1] < target <= g[i]: interpolate linearly inside this segment.
            frac = (target - g[i - 1]) / (g[i] - g[i - 1])
            return float(x[i - 1] + frac * (x[i] - x[i - 1]))
    logger.debug("cpt: target PGR %.3f never reached (max %.3f)", target, float(g.max()))
    return float("nan")


# ----------------------------------------------------------------------------------------------- general


def gap_recovered(router: float, best_single: float, oracle: float) -> float | None:
    """Share of the best-single-to-oracle gap a router closes: ``(router - best) / (oracle - best)``.

    0 means no better than always calling the best single model, 1 means as good as the per-query oracle;
    negative values mean worse than the best single model.

    Returns:
        The ratio, or None when ``oracle == best_single`` (there is no gap to close).

    Raises:
        ValueError: if any argument is NaN or infinite.
    """
    r = _as_scalar("router", router)
    b = _as_scalar("best_single", best_single)
    o = _as_scalar("oracle", oracle)
    if o == b:
        return None
    return (r - b) / (o - b)
