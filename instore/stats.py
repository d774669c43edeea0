"""The one percentile definition of the tree: benchmarks (`bench.stats` re-exports it), the
demo's summary, the worker's loop-lag report and the push sink's summary line all use it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import overload


@overload
def percentile(values: Iterable[float], q: float, digits: int | None = None, *,
               empty: float) -> float: ...
@overload
def percentile(values: Iterable[float], q: float, digits: int | None = None, *,
               empty: None = None) -> float | None: ...
def percentile(values: Iterable[float], q: float, digits: int | None = None, *,
               empty: float | None = None) -> float | None:
    """The ``q``-quantile (0 <= q <= 1) of ``values`` by the nearest-rank rule: the sorted value
    at index ``round(q * (n - 1))``, ties to the even index. The same as
    ``numpy.percentile(values, q * 100, method="nearest")``, without numpy. The answer is always
    one of the values (an int stays an int), never an interpolation between two.

    ``digits`` rounds the answer (``round(x, digits)``). With no values the answer is ``empty``:
    None unless the caller always wrote another (NaN) there.
    """
    if not 0 <= q <= 1:
        msg = f"q must be within [0, 1], not {q}"
        raise ValueError(msg)
    s = sorted(values)
    if not s:
        return empty
    x = s[round(q * (len(s) - 1))]
    return x if digits is None else round(x, digits)
