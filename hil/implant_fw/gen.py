"""Generative mode: a seeded population of units with waveforms, noise and firing rates tuned
to a 2-D movement signal (the closed-loop BCI's intended velocity).

What a board can sustain decides the design: no floats in the per-frame path, no allocation,
and as little interpreted work per sample as possible.

- Noise: one table of ``noise_len`` int16 values ≈ N(0, σ²) drawn at boot; each frame copies a
  contiguous slice at a random offset (a C ``memcpy`` — the only per-sample work).
- Units: a biphasic template (Q12, ~1.6 ms) per unit, a main channel and a footprint on its
  neighbours (gains Q8); spikes are added sample by sample (48 samples × 3 channels ≈ 150
  interpreted adds per spike, a few hundred spikes a second).
- Firing: a time-rescaled Poisson process per unit — the integrated rate (Hz·samples, Q8) is
  compared with an Exp(1) threshold from a table, so each unit costs one add and one compare
  per frame and the rate may change every frame. Rates are cosine-tuned to the velocity:
  ``rate = base + depth · (vx·cos θ + vy·sin θ) / 1000`` (vx, vy in per-mille of full speed),
  clamped at 0; a refractory period of 1.5 ms.
"""

import array
import math

from clock import Rng

try:
    from micropython import const
except ImportError:            # CPython: only where a test says why
    const = int

_Q12 = const(4096)
_EXP_LEVELS = const(256)


def _exp_table() -> list[int]:
    """−ln(u) in Q8 for u at the centres of 256 equal bins: Exp(1) thresholds."""
    return [int(-math.log((i + 0.5) / _EXP_LEVELS) * 256 + 0.5) for i in range(_EXP_LEVELS)]


class Unit:
    __slots__ = ("acc", "amp", "base_q8", "ch", "cx", "cy", "depth_q8", "gains", "rate_q8",
                 "thr", "tpl")

    def __init__(self, ch: int, gains: list[tuple[int, int]], amp: int, tpl: int,
                 base_q8: int, depth_q8: int, cx: int, cy: int) -> None:
        self.ch, self.gains, self.amp, self.tpl = ch, gains, amp, tpl
        self.base_q8, self.depth_q8, self.cx, self.cy = base_q8, depth_q8, cx, cy
        self.acc = 0            # integrated rate since the last spike (Hz·samples, Q8)
        self.thr = 0            # Exp(1)·fs in the same units
        self.rate_q8 = base_q8


class Population:
    """``fill(samples, first_sample, rng)`` writes one frame of signal into ``samples``."""

    def __init__(self, n_channels: int, fs: int, spf: int, n_units: int, rng: Rng,
                 noise_counts: int = 20, noise_len: int = 0) -> None:
        self.c, self.fs, self.spf, self.rng = n_channels, fs, spf, rng
        nc = n_channels * spf
        self.noise_len = max(noise_len, 4 * nc + 4096)
        self.noise = array.array("h", bytes(2 * self.noise_len))
        r = rng
        for i in range(self.noise_len):
            self.noise[i] = (r.normal_q8() * noise_counts) >> 8
        self.noise_mv = memoryview(self.noise)
        self.exp_q8 = _exp_table()
        self.tlen = max(8, 16 * fs // 10_000)          # 1.6 ms
        self.pre = self.tlen // 3
        self.refractory = max(1, 15 * fs // 10_000)    # 1.5 ms
        self.templates = [self._template(w) for w in (2, 3, 4)]
        self.units: list[Unit] = []
        for _ in range(n_units):
            ch = r.below(n_channels)
            gains = [(ch, 256)]
            for d, g in ((-1, 128), (1, 128), (-2, 48), (2, 48)):
                if 0 <= ch + d < n_channels:
                    gains.append((ch + d, g))
            theta = r.below(360) * math.pi / 180
            base_hz = 4 + r.below(17)
            self.units.append(Unit(
                ch, gains, 120 + r.below(300), r.below(3),
                base_hz << 8, (base_hz << 8) * (60 + r.below(41)) // 100,
                int(math.cos(theta) * _Q12), int(math.sin(theta) * _Q12)))
        for u in self.units:
            u.thr = self._threshold()
        #: spikes still being drawn: [unit, template position, first row in this frame]
        self.active: list[list[int]] = []
        self.vx = self.vy = 0
        self.spikes = 0

    def _template(self, width: int) -> "array.array[int]":
        """Biphasic extracellular spike, trough −1 (Q12) at ``pre``, in ``tlen`` samples."""
        t = array.array("h", bytes(2 * self.tlen))
        s = self.fs / 10_000
        for i in range(self.tlen):
            x = (i - self.pre) / (width * s)
            y = -math.exp(-x * x) + 0.35 * math.exp(-((x - 2.2) / 1.6) ** 2)
            t[i] = int(y * _Q12)
        return t

    def _threshold(self) -> int:
        return int(self.exp_q8[self.rng.below(_EXP_LEVELS)]) * self.fs

    def set_velocity(self, vx: int, vy: int) -> None:
        """Intended velocity, per-mille of full speed (clamped to ±1000)."""
        self.vx, self.vy = max(-1000, min(1000, vx)), max(-1000, min(1000, vy))
        for u in self.units:
            m = (self.vx * u.cx + self.vy * u.cy) // 1000       # Q12, in [−4096, 4096]
            u.rate_q8 = max(0, u.base_q8 + (u.depth_q8 * m >> 12))

    def fill(self, samples: memoryview, first: int) -> int:
        """Noise plus spikes for the frame starting at sample ``first``; returns spikes born.
        ``samples`` are int16 items, row-major (spf rows × C channels)."""
        nc = self.c * self.spf
        off = self.rng.below(self.noise_len - nc)
        samples[:] = self.noise_mv[off:off + nc]
        spf, born = self.spf, 0
        for ui, u in enumerate(self.units):  # time-rescaled Poisson, one step per frame
            r = u.rate_q8
            acc = u.acc + r * spf
            if acc >= u.thr and r:
                row = (u.thr - u.acc) // r   # where in this frame the threshold was crossed
                self.active.append([ui, 0, row if row < spf else spf - 1])
                u.acc = -r * self.refractory
                u.thr = self._threshold()
                born += 1
            else:
                u.acc = acc
        if self.active:
            self._draw(samples)
        self.spikes += born
        return born

    def _draw(self, samples: memoryview) -> None:
        c, spf, tlen, keep = self.c, self.spf, self.tlen, []
        for sp in self.active:
            u = self.units[sp[0]]
            tpl = self.templates[u.tpl]
            pos, row = sp[1], sp[2]
            n = min(spf - row, tlen - pos)
            for ch, g in u.gains:
                a = u.amp * g               # Q8 amplitude on this channel
                i = row * c + ch
                for j in range(pos, pos + n):
                    v = samples[i] + (a * tpl[j] >> 20)
                    samples[i] = v if -32768 <= v <= 32767 else (32767 if v > 0 else -32768)
                    i += c
            if pos + n < tlen:
                keep.append([sp[0], pos + n, 0])
        self.active = keep
