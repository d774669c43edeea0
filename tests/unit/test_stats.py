"""The tree's one percentile (instore.stats, re-exported by bench.stats): nearest rank at
index round(q * (n - 1)), numpy's method="nearest"."""

import math

import pytest

from bench.stats import percentile
from instore import stats


def test_bench_uses_the_one_definition() -> None:
    assert percentile is stats.percentile


def test_no_values() -> None:
    assert percentile([], 0.5) is None
    assert percentile([], 0.99, 2) is None
    assert math.isnan(percentile([], 0.99, 2, empty=math.nan))
    assert percentile(iter(()), 0.5) is None


def test_one_value_is_every_quantile() -> None:
    for q in (0, 0.5, 0.9, 0.99, 1):
        assert percentile([7.25], q) == 7.25
    assert percentile([1.23456], 0.99, 2) == 1.23


def test_known_quantiles() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10, index = value - 1
    assert percentile(values, 0) == 1
    assert percentile(values, 1) == 10
    assert percentile(values, 0.5) == 5  # index round(4.5) = 4: ties go to the even index
    assert percentile(values, 0.9) == 9  # index round(8.1) = 8
    assert percentile(values, 0.99) == 10  # index round(8.91) = 9
    hundred = list(range(100, 0, -1))  # unsorted: 100..1
    assert percentile(hundred, 0.5) == 51  # index round(49.5) = 50 -> 51
    assert percentile(hundred, 0.99) == 99  # index round(98.01) = 98
    assert percentile([1] * 98 + [30, 50], 0.99) == 30


def test_answer_is_one_of_the_values_and_keeps_its_type() -> None:
    p = percentile([4, 1, 3, 2], 0.5)  # index round(1.5) = 2 (ties to even)
    assert p == 3 and isinstance(p, int)  # the push sink's log line parses ints


def test_q_outside_0_1_is_an_error() -> None:
    with pytest.raises(ValueError, match="q must be within"):
        percentile([1.0], 99)


def test_same_as_numpy_nearest() -> None:
    np = pytest.importorskip("numpy")
    for n in (1, 2, 3, 4, 7, 10, 51, 100, 301):
        values = [(i * 7919) % 1009 / 7 for i in range(n)]
        for q in (0, 0.25, 0.5, 0.9, 0.95, 0.99, 1):
            assert percentile(values, q) == float(np.percentile(values, q * 100, method="nearest"))
