"""The implant's sample clock as the hub sees it: the least delayed frame arrival per interval.

A frame ending at sample *s* leaves the implant at its sample time and reaches the hub's event
loop after a transit delay that is never negative and varies (USB/UART buffering, a busy event
loop, several frames in one read). Each observation is ``(s, t_arrival)``; the one with the
smallest ``t − s/fs`` in an interval is the least delayed, the closest to the true sample time.
The periodic time-sync packet (every ``DaemonOptions.time_sync_s``) carries that one (not "the
last block processed when the timer fired", nor its arrival at the host, which add the
pipeline's and the uplink's delays), so the host fits points whose delay is the link's
minimum, not its jitter.

``epoch`` counts restarts of the implant's clock (its frame counter went backwards: a reboot);
sample indices keep counting across one on the hub, but the time base does not, so a fit must
start over. ``new_epoch`` asks the daemon to announce the new epoch at once (with its first
frame), before any spike of the new clock reaches the host.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    sample_index: int        # one past the frame's last sample
    hub_time_ns: int         # when the frame arrived (hub CLOCK_MONOTONIC)
    epoch: int


class ArrivalClock:
    """``observe()`` every frame; ``roll()`` once per interval; ``last`` is the previous
    interval's least delayed arrival (None before the first complete interval)."""

    def __init__(self) -> None:
        self.epoch = 0
        self.frames = 0
        self.last: Observation | None = None
        self._best: Observation | None = None
        self._best_key = 0.0
        self._last_counter: int | None = None
        self._end = -1
        #: set when a frame started a new epoch; whoever sends the news clears it
        self.new_epoch = False

    def observe(self, counter: int, end_sample: int, t_ns: int, fs: float) -> None:
        """Frame ``counter`` arrived at ``t_ns``; the stream now ends at ``end_sample``."""
        if self._last_counter is not None:
            delta = (counter - self._last_counter) & 0xFFFFFFFF
            if delta >= 0x80000000:           # counter went backwards: the implant restarted
                self.epoch += 1
                self._best = None
                self.last = None
                self.new_epoch = True
        self._last_counter = counter
        if end_sample <= self._end or fs <= 0:  # a duplicate or rejected frame: nothing new
            return
        self._end = end_sample
        self.frames += 1
        key = t_ns - end_sample * 1e9 / fs
        if self._best is None or key < self._best_key:
            self._best = Observation(end_sample, t_ns, self.epoch)
            self._best_key = key
        if self.new_epoch and self.last is None:
            self.last = self._best     # the new clock's first point, to announce it at once

    def roll(self) -> Observation | None:
        """Closes the interval: its best observation becomes ``last`` (kept if none)."""
        if self._best is not None:
            self.last, self._best = self._best, None
        return self.last
