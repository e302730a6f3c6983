"""A virtual clock for asyncio tests: time advances only when every task is waiting, by exactly
the time to the next timer — sleeps, timeouts and rate limits take simulated seconds, so figures
measured in a test (a token bucket's rate, a budget estimate over windows) do not depend on how
busy the machine is, and the test takes as long as its CPU work.

    from tests.virtual_clock import run
    elapsed = run(coro())          # instead of asyncio.run(coro())

Each loop iteration also costs ``TICK`` (1 µs), as computing does in real time: code that
polls a clock (``while time.monotonic() < t``) always gets there.
``time.monotonic``/``monotonic_ns`` read the virtual clock while ``run`` runs (the event loop's
own clock is ``time.monotonic``), so code that stamps with them sees the same time. I/O that is
ready is handled at once; with no timer pending the loop waits for I/O in real time.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
#: virtual seconds one event-loop iteration takes (a fast CPU: time always moves on)
TICK = 1e-6


class VirtualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def monotonic_ns(self) -> int:
        return round(self.now * 1e9)


class _Selector(selectors.DefaultSelector):
    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self.clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.clock.now += TICK                  # every loop iteration costs a tick
        ready = super().select(0)
        if ready:
            return ready
        if timeout is None:                     # nothing scheduled: wait for I/O for real
            return super().select(None)
        self.clock.now += max(0.0, timeout)     # every task waits: jump to the next timer
        return ready


def run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the virtual clock."""
    clock = VirtualClock()
    saved = time.monotonic, time.monotonic_ns
    time.monotonic, time.monotonic_ns = clock.monotonic, clock.monotonic_ns  # type: ignore[assignment]
    loop = asyncio.SelectorEventLoop(_Selector(clock))
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
            time.monotonic, time.monotonic_ns = saved  # type: ignore[assignment]
