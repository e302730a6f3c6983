"""The simulated person in the closed loop, and the control server the implant listens to.

The user sees the cursor (as decoded) and the target, and intends to move straight at the
target (``task.ideal_velocity``: full speed, slowing within 0.3 of it, still once inside);
optionally with a perception delay and a little motor noise. Each intention goes to the
implant as a VELOCITY control message (the MicroPython implant's format, per-mille of full
speed): the implant's tuned population fires accordingly from its next chunk on.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import numpy as np

from hil import implant_ctl
from host_tools.decoding.base import F64
from host_tools.decoding.task import Task, ideal_velocity

log = logging.getLogger(__name__)


class ControlServer(implant_ctl.ControlServer):
    """The MicroPython implant's control server (``hil.implant_ctl``; the CPython implant's
    tuned modes speak the same messages), counting what it could not deliver."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.unsent = 0
        self._seq = 0

    def intend(self, v: F64) -> bool:
        """Sends velocity ``v`` (full speed = 1) as per-mille."""
        self._seq += 1
        ok = self.velocity(round(float(v[0]) * 1000), round(float(v[1]) * 1000), self._seq)
        self.sent += ok
        self.unsent += not ok
        return ok


class SimulatedUser:
    """``on_step(pos, target, v)`` → the next intention, sent through ``control``."""

    def __init__(self, control: ControlServer, task_of: Callable[[], Task], *,
                 delay_bins: int = 0, noise: float = 0.0, seed: int = 0) -> None:
        self.control = control
        self.task_of = task_of
        self.rng = np.random.default_rng(seed)
        self.noise = noise
        self.seen: deque[tuple[F64, F64]] = deque(maxlen=delay_bins + 1)
        self.intended = np.zeros(2)

    def on_step(self, pos: F64, target: F64, v: F64) -> None:
        self.seen.append((pos.copy(), target.copy()))
        p, t = self.seen[0]
        want = ideal_velocity(p, t, self.task_of().radius)
        if self.noise:
            want = want + self.rng.normal(0, self.noise, 2)
        self.intended = want
        self.control.intend(want)

    def rest(self) -> None:
        """No task on screen: intend nothing."""
        self.seen.clear()
        self.intended = np.zeros(2)
        self.control.intend(self.intended)
