"""Percentiles of the bench: the figures in docs/performance.md rest on them."""

from __future__ import annotations

import math

import pytest

from kami_bench.stats import Summary, histogram_quantile, percentile


def test_percentile_interpolates_between_closest_ranks() -> None:
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]  # unsorted on purpose
    assert percentile(samples, 0.5) == 3.0
    assert percentile(samples, 0.0) == 1.0
    assert percentile(samples, 1.0) == 5.0
    assert percentile(samples, 0.95) == pytest.approx(4.8)


def test_percentile_of_nothing_is_none_and_bad_quantiles_are_refused() -> None:
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 1.5)


def test_summary_reports_count_and_tail() -> None:
    summary = Summary.of([float(n) for n in range(1, 101)])
    assert summary.count == 100
    assert summary.p50 == pytest.approx(50.5)
    assert summary.p99 == pytest.approx(99.01)
    assert summary.max == 100.0
    assert Summary.of([]) == Summary(0, None, None, None, None)


def test_histogram_quantile_interpolates_inside_the_bucket() -> None:
    # 2 under 0.1 s, 4 more under 0.5 s, 4 more under 1 s.
    buckets = {0.1: 2.0, 0.5: 6.0, 1.0: 10.0, math.inf: 10.0}
    assert histogram_quantile(buckets, 0.5) == pytest.approx(0.1 + 0.4 * (5 - 2) / (6 - 2))
    assert histogram_quantile(buckets, 0.1) == pytest.approx(0.1 * 1 / 2)
    assert histogram_quantile(buckets, 1.0) == pytest.approx(1.0)


def test_histogram_quantile_in_the_overflow_bucket_answers_the_highest_bound() -> None:
    buckets = {0.1: 1.0, 1.0: 2.0, math.inf: 10.0}
    assert histogram_quantile(buckets, 0.9) == 1.0


def test_histogram_quantile_of_an_empty_or_malformed_histogram() -> None:
    assert histogram_quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None
    with pytest.raises(ValueError, match=r"\+Inf"):
        histogram_quantile({0.1: 1.0}, 0.5)
