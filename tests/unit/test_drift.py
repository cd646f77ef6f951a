"""Drift building blocks: the PSI formula, its empty-bin epsilon, edge ties and merged quantiles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from abalone_model import drift


def test_psi_of_identical_distributions_is_zero():
    p = np.diff(np.concatenate([[0], drift.LEVELS, [1]]))
    assert drift.psi(p, p) == 0.0
    sample = np.random.default_rng(1).normal(size=20_000)
    edges, levels = drift.quantile_edges(np.quantile(sample, drift.LEVELS, method="inverted_cdf"))
    np.testing.assert_allclose(levels, drift.LEVELS)
    got = drift.proportions(sample, edges)
    assert drift.psi(p, got) < 1e-6
    assert 0.1 < drift.psi(p, drift.proportions(sample + 0.5, edges)) < 0.25  # half a sd: warn
    assert drift.psi(p, drift.proportions(sample + 1.0, edges)) > 0.25


def test_psi_formula_and_epsilon_for_empty_bins():
    base, batch = np.array([0.5, 0.5]), np.array([1.0, 0.0])
    eps = drift.EPSILON
    expected = (1 - 0.5) * math.log(1 / 0.5) + (eps - 0.5) * math.log(eps / 0.5)
    assert drift.psi(base, batch) == pytest.approx(expected, rel=1e-12)


def test_values_on_an_edge_count_half_each_side():
    np.testing.assert_allclose(drift.proportions(np.array([1, 2, 2, 3.0]), [2.0]), [0.5, 0.5])
    np.testing.assert_allclose(
        drift.proportions(np.array([1, 2, 3, 4.0]), [1.5, 3.5]), [0.25, 0.5, 0.25]
    )


def test_equal_quantiles_merge_at_their_mean_level():
    edges, levels = drift.quantile_edges([0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(edges, [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(levels, [0.03, 0.5, 0.95, 0.99])
