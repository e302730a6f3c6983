"""Retry timing shared by both ends of a link: exponential back-off with full jitter, and a
rate limit for repeated messages.

A peer that fails again and again (a host whose socket was reset, a hub that refuses a second
connection) must cost a bounded number of attempts per second, never a busy loop: each failure
waits ``min(cap, base · factor^k)`` times a random factor in [1 − jitter, 1], and a success
resets the ladder. :class:`Backoff` only computes delays; the caller sleeps, so a test can read
the delays without waiting for them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for consecutive failures: ``next()`` → seconds to wait, ``reset()`` on success."""

    base_s: float = 0.05
    cap_s: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5            # share of the delay that is random (0: none, 1: full)
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0              # consecutive failures so far

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.cap_s and self.factor >= 1 and 0 <= self.jitter <= 1):
            raise ValueError(f"back-off needs 0 < base ≤ cap, factor ≥ 1, jitter in [0, 1] "
                             f"(base {self.base_s}, cap {self.cap_s}, factor {self.factor}, "
                             f"jitter {self.jitter})")

    def next(self) -> float:
        """The delay before the next attempt (and one more failure counted)."""
        raw = min(self.cap_s, self.base_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return raw * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.failures = 0


class RateLimit:
    """At most ``burst`` events at once and ``per_s`` per second on average; ``allow()`` says
    whether this one may pass, and ``suppressed`` counts those that did not since the last one
    that did (``take_suppressed()`` reads and clears it)."""

    def __init__(self, per_s: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_s <= 0 or burst < 1:
            raise ValueError("a rate limit needs per_s > 0 and burst ≥ 1")
        self.per_s, self.burst, self._clock = per_s, burst, clock
        self._tokens = float(burst)
        self._t = clock()
        self.suppressed = 0

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._t) * self.per_s)
        self._t = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n
