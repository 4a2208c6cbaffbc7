"""The statistics of comparing two systems on the same queries: the paired bootstrap every level reports beside a
difference (routers, thought templates, distilled models). Pure numpy; input is validated (empty, NaN, infinite
values raise a ValueError naming the argument)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray


def as_1d(name: str, values: ArrayLike) -> np.ndarray:
    """``values`` as a non-empty, finite, 1-D float array, or a ValueError naming ``name``."""
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {values!r}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} contains a NaN or infinite value (first at index {bad}: {arr[bad]})")
    return arr


def paired_bootstrap(diff: ArrayLike, groups: ArrayLike | None = None, *, n_boot: int = 1000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """The mean of per-query differences ``diff`` (router A minus router B on the same queries) and its
    percentile bootstrap interval, resampling queries (pairs) with replacement.

    With ``groups`` (e.g. the held-out task of each query) the statistic is the mean of the per-group means and
    queries are resampled within their group (a stratified bootstrap), so each group keeps its weight."""
    d = as_1d("diff", diff)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    if groups is None:
        parts = [d]
    else:
        g = np.asarray(groups)
        if g.shape != d.shape:
            raise ValueError(f"groups and diff differ in length: {g.size} != {d.size}")
        parts = [d[g == k] for k in np.unique(g)]
    stats = np.zeros(n_boot)
    for part in parts:  # the mean over groups of each group's resampled mean
        for start in range(0, n_boot, 200):
            b = min(200, n_boot - start)
            stats[start:start + b] += part[rng.integers(0, len(part), (b, len(part)))].mean(1)
    stats /= len(parts)
    alpha = (1 - level) / 2
    return {"mean": float(np.mean([p.mean() for p in parts])), "lo": float(np.quantile(stats, alpha)),
            "hi": float(np.quantile(stats, 1 - alpha))}


GAIN, LOSS, NO_EVIDENCE = "gain", "loss", "no evidence"


def verdict(interval: dict[str, float], margin: float = 0.0) -> str:
    """The plain word for a difference's interval (``lo``, ``hi``): ``gain`` when all of it lies above ``margin``,
    ``loss`` when all of it lies below ``-margin``, else ``no evidence``."""
    if interval["lo"] > margin:
        return GAIN
    if interval["hi"] < -margin:
        return LOSS
    return NO_EVIDENCE


def difference(values: ArrayLike, baseline: ArrayLike, *, n_boot: int = 1000, seed: int = 0,
               margin: float = 0.0) -> dict:
    """What every level reports for a system against a baseline on the same queries: the mean per-query
    difference ``values - baseline``, its paired-bootstrap 95% interval (``lo``, ``hi``) and its word (gain / loss
    / no evidence, :func:`verdict`)."""
    a, b = as_1d("values", values), as_1d("baseline", baseline)
    if a.shape != b.shape:
        raise ValueError(f"values and baseline were scored on different queries ({a.size} != {b.size})")
    ci = paired_bootstrap(a - b, n_boot=n_boot, seed=seed)
    return {**ci, "word": verdict(ci, margin)}
