"""Plots of router benchmarks: the cost-quality plane with each router's frontier and its AIQ.

matplotlib is imported lazily inside the plot function, and the figure is drawn on an Agg canvas without
pyplot, so no GUI backend is touched and no global figure is left open.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from fusion.levels.query.metrics import aiq, non_decreasing_convex_hull

logger = logging.getLogger(__name__)

__all__ = ["plot_cost_quality_plane", "shorten_label", "use_log_cost_axis"]

_LOG_SPAN = 100.0  # log x axis when max cost / min cost exceeds this (two orders of magnitude)
_POINT_MARKERS = ("*", "D", "P", "X", "^", "v", "s", "h")


def shorten_label(name: str, max_len: int = 22) -> str:
    """A short label for a model name: drop an ``org/`` prefix, then cut in the middle with an ellipsis."""
    if len(name) <= max_len:
        return name
    short = name.rsplit("/", 1)[-1]
    if len(short) <= max_len:
        return short
    head = (max_len - 1) // 2
    tail = max_len - 1 - head
    return f"{short[:head]}\u2026{short[-tail:]}"


def use_log_cost_axis(costs: np.ndarray) -> bool:
    """Whether a cost axis should be log-scaled: all costs positive, spanning over two orders of magnitude."""
    c = np.asarray(costs, dtype=float)
    if c.size == 0 or not np.all(c > 0):
        return False
    return bool(c.max() / c.min() > _LOG_SPAN)


def _finite_pair(kind: str, name: str, xy: tuple[float, float]) -> tuple[float, float]:
    try:
        x, y = float(xy[0]), float(xy[1])
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(f"{kind} {name!r} must be a (cost, quality) pair, got {xy!r}") from exc
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ValueError(f"{kind} {name!r} has a NaN or infinite value: {xy!r}")
    return x, y


def _densify(xs: np.ndarray, ys: np.ndarray, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Points along a piecewise-linear curve, so that it stays linear-in-cost on a log axis too."""
    if xs.size < 2:
        return xs, ys
    seg = [np.linspace(xs[i], xs[i + 1], n, endpoint=False) for i in range(xs.size - 1)]
    dx = np.concatenate([*seg, xs[-1:]])
    return dx, np.interp(dx, xs, ys)


def plot_cost_quality_plane(
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    singles: dict[str, tuple[float, float]],
    path: str | Path,
    *,
    title: str = "",
    points: dict[str, tuple[float, float]] | None = None,
) -> Path:
    """Draw the cost-quality plane of routers and single LLMs to one PNG.

    Args:
        curves: router name -> ``(costs, qualities)`` of its sweep (e.g. over a cost-weight parameter).
            Each is drawn as light markers plus its :func:`~fusion.levels.query.metrics.non_decreasing_convex_hull`
            as a solid line in the same colour (dotted flat extensions to the common cost range, as AIQ
            counts them); the legend reads ``"name (AIQ 0.xxx)"`` with AIQ over the common cost range of
            all curves.
        singles: candidate LLM name -> ``(cost, quality)``, drawn as gray labelled points.
        path: the PNG to write; parent folders are created.
        title: figure title.
        points: optional extra name -> ``(cost, quality)`` (e.g. ``"oracle"``, ``"task-best"``), drawn
            with distinct markers, labelled and listed in the legend.

    The x axis is log-scaled when all costs are positive and span more than two orders of magnitude.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: if there is nothing to draw, or a curve or point has bad values.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = dict(points or {})
    if not curves and not singles and not points:
        raise ValueError("nothing to plot: curves, singles and points are all empty")

    hulls: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, (costs, quals) in curves.items():
        try:
            hc, hq = non_decreasing_convex_hull(costs, quals)
        except ValueError as exc:
            raise ValueError(f"curve {name!r}: {exc}") from exc
        hulls[name] = (np.asarray(costs, dtype=float), np.asarray(quals, dtype=float), hc, hq)
    single_xy = {n: _finite_pair("single", n, xy) for n, xy in singles.items()}
    point_xy = {n: _finite_pair("point", n, xy) for n, xy in points.items()}

    if hulls:
        all_curve_costs = np.concatenate([h[0] for h in hulls.values()])
        lo, hi = float(all_curve_costs.min()), float(all_curve_costs.max())
    all_costs = np.array(
        [c for h in hulls.values() for c in h[0]]
        + [xy[0] for xy in single_xy.values()]
        + [xy[0] for xy in point_xy.values()],
        dtype=float,
    )
    log_x = use_log_cost_axis(all_costs)

    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    try:
        colours = [f"C{i % 10}" for i in range(len(hulls))]
        for colour, (name, (c, q, hc, hq)) in zip(colours, hulls.items(), strict=True):
            score = aiq(c, q, cost_range=(lo, hi))
            ax.scatter(c, q, s=14, color=colour, alpha=0.3, linewidths=0, zorder=2)
            dx, dy = _densify(hc, hq)
            ax.plot(dx, dy, "-", color=colour, lw=1.8, zorder=3, label=f"{name} (AIQ {score:.3f})")
            ax.plot(hc, hq, "o", color=colour, ms=3.5, zorder=3)
            if hc[0] > lo:
                ax.plot([lo, hc[0]], [hq[0], hq[0]], ":", color=colour, lw=1.2, zorder=3)
            if hc[-1] < hi:
                ax.plot([hc[-1], hi], [hq[-1], hq[-1]], ":", color=colour, lw=1.2, zorder=3)

        if single_xy:
            sx = [xy[0] for xy in single_xy.values()]
            sy = [xy[1] for xy in single_xy.values()]
            ax.scatter(sx, sy, s=22, color="0.45", zorder=4, label="single LLMs")
            for name, (x, y) in single_xy.items():
                ax.annotate(
                    shorten_label(name),
                    (x, y),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=6.5,
                    color="0.3",
                    zorder=4,
                )

        for i, (name, (x, y)) in enumerate(point_xy.items()):
            marker = _POINT_MARKERS[i % len(_POINT_MARKERS)]
            ax.scatter(
                [x],
                [y],
                s=70,
                marker=marker,
                facecolors="white" if marker in "Dsh" else "black",
                edgecolors="black",
                linewidths=1.2,
                zorder=5,
                label=name,
            )
            ax.annotate(
                name,
                (x, y),
                xytext=(5, -9),
                textcoords="offset points",
                fontsize=7.5,
                zorder=5,
            )

        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("mean cost per query (USD)")
        ax.set_ylabel("mean performance")
        if title:
            ax.set_title(title)
        ax.grid(True, which="major", alpha=0.35)
        if log_x:
            ax.grid(True, which="minor", alpha=0.12)
        ax.legend(fontsize=8, loc="lower right", framealpha=0.85)
        fig.tight_layout()

        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=120)
    finally:
        fig.clear()
    logger.info("wrote cost-quality plane (%d curves, %d singles) to %s", len(hulls), len(single_xy), out)
    return out
