"""Latency percentiles in fixed memory, however long a session runs.

A receiver sees one latency per spike (thousands per second from a 1024-channel probe); keeping
them all would grow without bound. ``LatencyHistogram`` counts them in log-spaced bins 0.5 %
wide from 1 µs to 1000 s: percentiles are exact to within half a bin (±0.25 %), ``n``, ``min``
and ``max`` exactly, in 4 k counters.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

LO_MS, HI_MS, STEP = 1e-3, 1e6, 1.005
NBINS = math.ceil(math.log(HI_MS / LO_MS) / math.log(STEP))
#: the coarse histogram for plots (``latency_hist_ms``): 0.1 ms … 100 s, 10 per decade
HIST_EDGES_MS = [round(10 ** (e / 10), 4) for e in range(-10, 51)]


class LatencyHistogram:
    """Latencies in milliseconds; bin 0 holds values ≤ 1 µs, the last one ≥ 1000 s."""

    def __init__(self) -> None:
        self.counts = np.zeros(NBINS + 2, np.int64)
        self.coarse_counts = np.zeros(len(HIST_EDGES_MS) - 1, np.int64)
        self.n = 0
        self.min = math.inf
        self.max = -math.inf

    def add(self, values_ms: float | npt.ArrayLike) -> None:
        v = np.atleast_1d(np.asarray(values_ms, np.float64))
        if not v.size:
            return
        self.n += int(v.size)
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor(np.log(np.maximum(v, LO_MS) / LO_MS) / math.log(STEP)) + 1
        idx = np.clip(np.nan_to_num(k, nan=0.0), 0, NBINS + 1).astype(np.int64)
        self.counts += np.bincount(idx, minlength=NBINS + 2)
        clipped = np.clip(v, HIST_EDGES_MS[0], HIST_EDGES_MS[-1])
        self.coarse_counts += np.histogram(clipped, bins=HIST_EDGES_MS)[0]

    def percentile(self, p: float) -> float:
        """The p-th percentile (0–100), as the middle of its bin (clamped to min/max)."""
        if not self.n:
            raise ValueError("no latencies")
        rank = max(1, math.ceil(p / 100.0 * self.n))
        b = int(np.searchsorted(np.cumsum(self.counts), rank))
        mid = LO_MS * STEP ** (b - 0.5) if 0 < b <= NBINS else (LO_MS if b == 0 else HI_MS)
        return min(max(mid, self.min), self.max)

    def coarse(self) -> dict[str, list[float] | list[int]]:
        """Counts per HIST_EDGES_MS bin (values outside in the first/last bin); no counts
        when empty."""
        return {"edges": HIST_EDGES_MS,
                "counts": self.coarse_counts.tolist() if self.n else []}

    def summary(self) -> dict[str, Any]:
        if not self.n:
            return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
        return {"n": self.n, "p50": round(self.percentile(50), 2),
                "p90": round(self.percentile(90), 2), "p99": round(self.percentile(99), 2),
                "max": round(self.max, 2)}
