"""Synthetic tuned populations: known ground truth for tests and for the simulated implants.

Velocities follow reaches (smooth bell-shaped speed profiles toward random targets) and each
unit's rate is cosine-tuned to the velocity, as in motor cortex (Georgopoulos 1982) and as the
implant emulators generate it: ``rate = base + depth · (v · d_pd) / v_max``, clamped at 0,
with a preferred direction per unit; counts per bin are Poisson.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from host_tools.decoding.base import F64


@dataclass
class TunedPopulation:
    """Cosine-tuned units: base rates (Hz), modulation depths (Hz at full speed), preferred
    directions (unit vectors)."""

    base_hz: F64
    depth_hz: F64
    pd: F64            # (N, 2)
    v_max: float = 1.0

    @classmethod
    def random(cls, n: int, seed: int, v_max: float = 1.0) -> TunedPopulation:
        rng = np.random.default_rng(seed)
        base = rng.uniform(4.0, 20.0, n)
        theta = rng.uniform(0, 2 * np.pi, n)
        return cls(base, base * rng.uniform(0.6, 1.0, n),
                   np.c_[np.cos(theta), np.sin(theta)], v_max)

    def rates(self, v: npt.ArrayLike) -> F64:
        """Firing rates (…, N) in Hz for velocities (…, 2)."""
        m = np.asarray(v, dtype=np.float64) @ self.pd.T / self.v_max
        out: F64 = np.maximum(self.base_hz + self.depth_hz * m, 0.0)
        return out


def reaches(n_bins: int, bin_s: float, seed: int, v_max: float = 1.0,
            reach_s: float = 1.0) -> F64:
    """(n_bins, 2) velocities of successive reaches to random targets, each with a minimum-jerk
    speed profile peaking at ``v_max``."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_bins, 2))
    n = max(2, round(reach_s / bin_s))
    s = np.linspace(0, 1, n)
    profile = 30 * s ** 2 * (1 - s) ** 2 / 1.875        # minimum jerk, peak 1
    t = 0
    while t < n_bins:
        a = rng.uniform(0, 2 * np.pi)
        seg = profile[:, None] * (v_max * rng.uniform(0.5, 1.0)) * np.array([np.cos(a),
                                                                             np.sin(a)])
        k = min(n, n_bins - t)
        out[t:t + k] = seg[:k]
        t += k + int(rng.integers(0, n // 2 + 1))
    return out


def population_counts(pop: TunedPopulation, v: F64, bin_s: float, seed: int,
                      lead_bins: int = 0) -> F64:
    """Poisson counts per bin (T, N) for velocities v (T, 2); rates lead the movement by
    ``lead_bins`` (neurons fire before the hand moves)."""
    rng = np.random.default_rng(seed)
    drive = np.roll(v, -lead_bins, axis=0) if lead_bins else v
    if lead_bins:
        drive[-lead_bins:] = 0.0
    counts: F64 = rng.poisson(pop.rates(drive) * bin_s).astype(np.float64)
    return counts
