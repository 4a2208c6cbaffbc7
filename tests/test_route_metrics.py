"""Router-benchmark metrics (RouterBench hull/AIQ, RouteLLM PGR/APGR/CPT) and the cost-quality plot.

Expected values are computed by hand in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from fusion.levels.query.metrics import aiq, apgr, cpt, gap_recovered, non_decreasing_convex_hull, pgr
from fusion.levels.query.plots import plot_cost_quality_plane, shorten_label, use_log_cost_axis

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Frontier points (0, .2), (1, .5), (3, .8); (2, .55) lies below the chord (1, .5)-(3, .8) (0.65 at cost 2);
# (2.5, .4) and (4, .8) are dominated (cost more, no better).
COSTS = [2.0, 0.0, 4.0, 1.0, 2.5, 3.0]
QUALS = [0.55, 0.2, 0.8, 0.5, 0.4, 0.8]


# ------------------------------------------------------------------------------------------------ hull


def test_hull_drops_dominated_and_below_chord_points():
    hc, hq = non_decreasing_convex_hull(COSTS, QUALS)
    np.testing.assert_allclose(hc, [0.0, 1.0, 3.0])
    np.testing.assert_allclose(hq, [0.2, 0.5, 0.8])


def test_hull_with_cost_ties():
    # At cost 1 the best is 0.6; (2, .6) is no better; at cost 3 the best is 0.9.
    # (1, .6) stays: the chord (0.5, .1)-(3, .9) is at 0.26 at cost 1.
    hc, hq = non_decreasing_convex_hull([1, 1, 2, 3, 3, 0.5], [0.3, 0.6, 0.6, 0.7, 0.9, 0.1])
    np.testing.assert_allclose(hc, [0.5, 1.0, 3.0])
    np.testing.assert_allclose(hq, [0.1, 0.6, 0.9])


def test_hull_starts_at_cheapest_even_if_poor_and_drops_collinear():
    # (1, .5) is on the chord (0, 0)-(2, 1): it adds nothing to the frontier.
    hc, hq = non_decreasing_convex_hull([2, 1, 0], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(hc, [0.0, 2.0])
    np.testing.assert_allclose(hq, [0.0, 1.0])


def test_hull_single_point_and_all_same_cost():
    hc, hq = non_decreasing_convex_hull([0.3], [0.7])
    assert hc.tolist() == [0.3] and hq.tolist() == [0.7]
    hc, hq = non_decreasing_convex_hull([1, 1, 1], [0.2, 0.9, 0.4])
    assert hc.tolist() == [1.0] and hq.tolist() == [0.9]


def test_hull_cheapest_best_kills_everything_else():
    hc, hq = non_decreasing_convex_hull([0.1, 0.5, 0.9], [0.9, 0.8, 0.9])
    assert hc.tolist() == [0.1] and hq.tolist() == [0.9]


# ------------------------------------------------------------------------------------------------- AIQ


def test_aiq_piecewise_linear_frontier():
    # Hull (0, .2), (1, .5), (3, .8): area (.2+.5)/2*1 + (.5+.8)/2*2 = 0.35 + 1.3 = 1.65 over [0, 3].
    assert aiq([0, 1, 3], [0.2, 0.5, 0.8]) == pytest.approx(1.65 / 3)  # 0.55
    # The default range is over all given points, dominated ones too: [0, 4], flat 0.8 on [3, 4].
    assert aiq(COSTS, QUALS) == pytest.approx((1.65 + 0.8) / 4)  # 0.6125


def test_aiq_explicit_range_wider_than_points():
    # [-1, 5]: 0.2 flat on [-1, 0] (0.2), the hull (1.65), 0.8 flat on [3, 5] (1.6): 3.45 / 6.
    assert aiq(COSTS, QUALS, cost_range=(-1.0, 5.0)) == pytest.approx(3.45 / 6)  # 0.575


def test_aiq_explicit_range_inside_points():
    # [0.5, 2]: f(.5)=.35, f(1)=.5, f(2)=.65 -> (.35+.5)/2*.5 + (.5+.65)/2*1 = .2125 + .575 = .7875 over 1.5.
    assert aiq(COSTS, QUALS, cost_range=(0.5, 2.0)) == pytest.approx(0.7875 / 1.5)  # 0.525


def test_aiq_degenerate_range_is_best_quality():
    assert aiq([1.0, 1.0], [0.3, 0.7]) == pytest.approx(0.7)
    assert aiq([0.5], [0.4]) == pytest.approx(0.4)
    assert aiq(COSTS, QUALS, cost_range=(2.0, 2.0)) == pytest.approx(0.8)


def test_aiq_a_better_router_scores_higher_on_a_common_range():
    rng = (0.0, 4.0)
    better = aiq([0, 1, 3], [0.3, 0.6, 0.8], cost_range=rng)
    worse = aiq([0, 1, 3], [0.2, 0.5, 0.8], cost_range=rng)
    assert better > worse


# ----------------------------------------------------------------------------------------- PGR / APGR


def test_pgr():
    assert pgr(0.6, 0.4, 0.8) == pytest.approx(0.5)
    assert pgr(0.4, 0.4, 0.8) == pytest.approx(0.0)
    assert pgr(0.9, 0.4, 0.8) == pytest.approx(1.25)
    assert math.isnan(pgr(0.6, 0.5, 0.5))


def test_apgr_random_mix_is_half():
    shares = np.array([0.25, 0.5, 0.75])
    perf = 0.4 + 0.4 * shares  # the line from (0, weak) to (1, strong)
    assert apgr(shares, perf, weak=0.4, strong=0.8) == pytest.approx(0.5)
    # Endpoints given explicitly give the same.
    assert apgr([0.0, 0.5, 1.0], [0.4, 0.6, 0.8], weak=0.4, strong=0.8) == pytest.approx(0.5)


def test_apgr_perfect_router_is_close_to_one():
    # PGR curve (0, 0), (.1, 1), (.5, 1), (.9, 1), (1, 1): area .1*1/2 + .9*1 = 0.95.
    value = apgr([0.1, 0.5, 0.9], [0.8, 0.8, 0.8], weak=0.4, strong=0.8)
    assert value == pytest.approx(0.95)
    assert value > apgr([0.25, 0.5, 0.75], [0.5, 0.6, 0.7], weak=0.4, strong=0.8)


def test_apgr_unsorted_input_and_equal_models():
    assert apgr([0.75, 0.25, 0.5], [0.7, 0.5, 0.6], weak=0.4, strong=0.8) == pytest.approx(0.5)
    assert math.isnan(apgr([0.5], [0.6], weak=0.6, strong=0.6))


# ------------------------------------------------------------------------------------------------- CPT


def test_cpt_interpolated():
    # PGR points: (0, 0), (.2, .2), (.6, .8), (1, 1).
    shares, perf = [0.6, 0.2], [0.72, 0.48]
    # 0.5 between (.2, .2) and (.6, .8): .2 + (.3 / .6) * .4 = 0.4.
    assert cpt(shares, perf, 0.4, 0.8, target_pgr=0.5) == pytest.approx(0.4)
    assert cpt(shares, perf, 0.4, 0.8, target_pgr=0.8) == pytest.approx(0.6)
    # 0.9 between (.6, .8) and (1, 1): .6 + .5 * .4 = 0.8.
    assert cpt(shares, perf, 0.4, 0.8, target_pgr=0.9) == pytest.approx(0.8)
    assert cpt(shares, perf, 0.4, 0.8, target_pgr=0.0) == pytest.approx(0.0)


def test_cpt_never_reached_is_nan():
    # The share-1 point is given with PGR 0.5, so the curve tops out at 0.5.
    assert math.isnan(cpt([0.5, 1.0], [0.5, 0.6], 0.4, 0.8, target_pgr=0.8))
    assert math.isnan(cpt([0.5], [0.6], 0.6, 0.6, target_pgr=0.5))


# --------------------------------------------------------------------------------------- gap recovered


def test_gap_recovered():
    assert gap_recovered(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert gap_recovered(0.5, 0.6, 0.8) == pytest.approx(-0.5)
    assert gap_recovered(0.7, 0.6, 0.6) is None


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: non_decreasing_convex_hull([1, 2], [0.5]), "differ in length"),
        (lambda: non_decreasing_convex_hull([], []), "empty"),
        (lambda: non_decreasing_convex_hull([1, float("nan")], [0.5, 0.6]), "NaN"),
        (lambda: non_decreasing_convex_hull([1, 2], [0.5, float("inf")]), "NaN or infinite"),
        (lambda: non_decreasing_convex_hull([[1, 2]], [[0.5, 0.6]]), "one-dimensional"),
        (lambda: non_decreasing_convex_hull(["a"], [0.5]), "numeric"),
        (lambda: aiq([1, 2], [0.5, 0.6], cost_range=(2.0, 1.0)), "c_min <= c_max"),
        (lambda: aiq([1, 2], [0.5, 0.6], cost_range=(0.0, float("nan"))), "finite"),
        (lambda: aiq([1, 2], [0.5, 0.6], cost_range=(0.0,)), "pair"),
        (lambda: pgr(float("nan"), 0.4, 0.8), "performance"),
        (lambda: apgr([0.5, 0.6], [0.6], 0.4, 0.8), "differ in length"),
        (lambda: apgr([], [], 0.4, 0.8), "empty"),
        (lambda: apgr([1.5], [0.6], 0.4, 0.8), r"\[0, 1\]"),
        (lambda: apgr([0.5], [0.6], float("nan"), 0.8), "weak"),
        (lambda: cpt([0.5], [float("nan")], 0.4, 0.8, 0.5), "NaN"),
        (lambda: cpt([0.5], [0.6], 0.4, 0.8, float("nan")), "target_pgr"),
        (lambda: gap_recovered(0.5, float("nan"), 0.8), "best_single"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------------------ plot


def test_plot_writes_png(tmp_path):
    curves = {
        "knn": (np.array([0.001, 0.01, 0.05, 0.2]), np.array([0.5, 0.62, 0.6, 0.7])),
        "mlp": (np.array([0.002, 0.02, 0.1]), np.array([0.55, 0.65, 0.72])),
    }
    singles = {
        "meta-llama/Llama-3.1-8B-Instruct": (0.001, 0.5),
        "some-vendor/a-very-long-model-name-that-needs-shortening-v2": (0.3, 0.7),
    }
    points = {"oracle": (0.05, 0.85), "task-best": (0.08, 0.7)}
    out = plot_cost_quality_plane(
        curves, singles, tmp_path / "a" / "b" / "plane.png", title="t", points=points
    )
    assert out == tmp_path / "a" / "b" / "plane.png"
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_single_curve_and_zero_costs(tmp_path):
    curves = {"only": (np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.3, 0.4, 0.6, 0.65]))}
    out = plot_cost_quality_plane(curves, {"free-model": (0.0, 0.4)}, str(tmp_path / "zero.png"))
    assert out.read_bytes().startswith(PNG_MAGIC)
    out = plot_cost_quality_plane({"one-point": (np.array([0.5]), np.array([0.5]))}, {}, tmp_path / "p.png")
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_plot_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_cost_quality_plane({}, {}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="curve 'bad'"):
        plot_cost_quality_plane({"bad": (np.array([1.0]), np.array([np.nan]))}, {}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="single 's'"):
        plot_cost_quality_plane({}, {"s": (float("nan"), 0.5)}, tmp_path / "x.png")


def test_log_axis_rule_and_label_shortening():
    assert use_log_cost_axis(np.array([0.001, 0.5]))
    assert not use_log_cost_axis(np.array([0.01, 0.5]))
    assert not use_log_cost_axis(np.array([0.0, 0.001, 0.5]))  # zero cost: no log scale
    assert shorten_label("gpt-4o") == "gpt-4o"
    assert shorten_label("meta-llama/Llama-3.1-8B-Instruct") == "Llama-3.1-8B-Instruct"
    short = shorten_label("x/" + "a" * 40)
    assert len(short) == 22 and "\u2026" in short


def test_paired_bootstrap_interval():
    from fusion.levels.query.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    diff = rng.normal(0.05, 0.2, 2000)
    ci = paired_bootstrap(diff, n_boot=500, seed=1)
    assert ci["lo"] < ci["mean"] < ci["hi"] and ci["lo"] > 0  # a clear positive difference
    assert ci["hi"] - ci["lo"] == pytest.approx(2 * 1.96 * 0.2 / np.sqrt(2000), rel=0.2)
    assert paired_bootstrap(diff, n_boot=500, seed=1) == ci  # seeded
    # grouped: the mean of the group means, each group resampled within itself
    g = np.array(["a"] * 10 + ["b"] * 1990)
    d = np.concatenate([np.ones(10), np.zeros(1990)])
    out = paired_bootstrap(d, g, n_boot=200)
    assert out["mean"] == pytest.approx(0.5) and out["lo"] == out["hi"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="groups and diff"):
        paired_bootstrap(d, g[:5])
    with pytest.raises(ValueError, match="diff contains a NaN"):
        paired_bootstrap([0.1, np.nan])


def test_difference_is_paired_with_its_word():
    from fusion.core.stats import difference

    base = np.r_[np.zeros(20), np.ones(20)]
    better = base.copy()
    better[:12] = 1.0  # 12 of 40 queries gained, none lost
    up = difference(better, base, n_boot=500)
    assert up["mean"] == pytest.approx(0.3) and up["lo"] > 0 and up["word"] == "gain"
    down = difference(base, better, n_boot=500)
    assert down["hi"] < 0 and down["word"] == "loss"
    same = difference(base, base[::-1], n_boot=500)  # equal means, opposite per query: no evidence
    assert same["mean"] == 0 and same["lo"] < 0 < same["hi"] and same["word"] == "no evidence"
    assert difference(better, base, n_boot=500, margin=0.5)["word"] == "no evidence"
    with pytest.raises(ValueError, match="different queries"):
        difference(better, base[:-1])
