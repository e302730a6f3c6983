"""The implant's sample clock: a crystal off by a fixed error plus a slow, temperature-like wander.

The firmware paces frames by this clock against the host's tick counter (``time.ticks_us``:
CLOCK_MONOTONIC on the unix port, the MCU's timer on a board). A clock running fast by ``ppb``
parts per 10⁹ emits frame k at ``t0 + k · P / (1 + ppb·1e-9)``, where P is the nominal frame
period. Integer arithmetic throughout: the period is a rational number of microseconds
(``step_us + step_rem / den``) recomputed only when the error changes (once a second), so
the schedule never accumulates rounding error.

Wander: a first-order Ornstein–Uhlenbeck process in ppb, updated once a second with time
constant ``tau_s`` and standard deviation ``sigma_ppb`` (a crystal following room temperature
over minutes). Each change starts a new *segment*; the firmware logs the segments (frame
counter, due time, ppb), which is the exact truth the host's drift fit is judged against.
"""

try:
    from micropython import const
except ImportError:            # CPython: only where a test says why
    const = int

_E15 = const(1_000_000_000_000_000)     # µs·ppb scale: 10⁶ µs/s × 10⁹
_E9 = const(1_000_000_000)


class Rng:
    """xorshift32: deterministic, integer, cheap on every port."""

    def __init__(self, seed: int) -> None:
        self.x = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self) -> int:
        x = self.x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.x = x
        return x

    def below(self, n: int) -> int:
        """Uniform in [0, n)."""
        return self.next() % n

    def normal_q8(self) -> int:
        """≈ N(0, 1) × 256: the sum of four uniform bytes (Irwin–Hall), centred and scaled."""
        x = self.next()
        s = (x & 255) + ((x >> 8) & 255) + ((x >> 16) & 255) + (x >> 24)
        # mean 510, variance 4 × (256² − 1)/12 ≈ 21845 → σ ≈ 147.8; × 256/147.8 ≈ × 1.732
        return ((s - 510) * 1773) >> 10


class SampleClock:
    """Due times (ticks_us) of consecutive frames of ``spf`` samples at nominal ``fs`` Hz."""

    def __init__(self, fs: int, spf: int, ppb: int, sigma_ppb: int = 0, tau_s: int = 300,
                 seed: int = 1) -> None:
        self.fs, self.spf = fs, spf
        self.base_ppb = ppb
        self.sigma_ppb, self.tau_s = sigma_ppb, max(1, tau_s)
        self.wander_ppb = 0
        self.rng = Rng(seed ^ 0x5EED)
        self.frames_per_s = max(1, fs // spf)
        self.k = 0                   # frames scheduled so far
        self.due = 0                 # ticks_us of frame k
        self.rem = 0
        self._set_rate()

    @property
    def ppb(self) -> int:
        return self.base_ppb + self.wander_ppb

    def _set_rate(self) -> None:
        # true period (µs) = spf · 10⁶ / (fs · (1 + ppb·10⁻⁹)) = spf·10¹⁵ / (fs · (10⁹ + ppb))
        self.den = self.fs * (_E9 + self.ppb)
        self.step_us, self.step_rem = divmod(self.spf * _E15, self.den)
        self.rem = self.rem * self.den // max(1, getattr(self, "_old_den", self.den))
        self._old_den = self.den

    def start(self, now_us: int) -> None:
        """Frame 0 is due now (power-up or reboot: the phase restarts)."""
        self.k, self.due, self.rem = 0, now_us, 0

    def set_error(self, ppb: int) -> None:
        """A new fixed error (control message); takes effect at the next frame."""
        self.base_ppb = ppb
        self._set_rate()

    def advance(self) -> bool:
        """Schedules the next frame; True when the clock's rate changed (a new segment)."""
        self.k += 1
        self.due += self.step_us
        self.rem += self.step_rem
        if self.rem >= self.den:
            self.rem -= self.den
            self.due += 1
        if self.sigma_ppb and self.k % self.frames_per_s == 0:
            # OU step of 1 s: w += −w/τ + σ·√(2/τ)·N(0,1); √(2/τ) in Q8 from an integer sqrt
            w = self.wander_ppb
            kick = self.sigma_ppb * _isqrt((2 << 16) // self.tau_s) * self.rng.normal_q8()
            self.wander_ppb = w - w // self.tau_s + (kick >> 16)
            self._set_rate()
            return True
        return False


def _isqrt(n: int) -> int:
    """⌊√n⌋ for n ≥ 0 (integer Newton)."""
    if n < 2:
        return n
    x = n
    y = (x + 1) >> 1
    while y < x:
        x = y
        y = (x + n // x) >> 1
    return x
