"""Statistics every benchmark reports with. The percentile is defined once, in `instore.stats`
(product code such as the worker's loop-lag report uses it too and must not import `bench`):
the nearest-rank value at index ``round(q * (n - 1))``, i.e. ``numpy.percentile(...,
method="nearest")``."""

from instore.stats import percentile

__all__ = ["percentile"]
