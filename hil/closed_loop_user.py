"""The simulated person in the closed loop, and the control server the implant listens to.

The user is the feedback controller of the BCI literature (Willett et al. 2017, "Feedback
control policies employed by people using intracortical brain–computer interfaces"; Willett et
al. 2019, "Principled BCI decoder design and parameter selection using a feedback control
model"; Cunningham et al. 2011's closed-loop simulator): each bin the user looks at the
*displayed* cursor and the target as they were ``delay_s`` ago (visual feedback delay; a new
target is therefore seen, and answered, ``delay_s`` after it appears: the reaction time) and
intends a velocity straight at the aim point — the target's centre, or the cued grid cell's —
with a speed that grows with distance and saturates (the piecewise-linear "f_targ" of Willett's
model):

    u = f(‖e‖) · e/‖e‖ + n,   e = g − p̂,   f(d) = clip((d − dead) / (sat − dead), 0, 1)

p̂ is the delayed cursor, optionally moved on by an internal forward model (Golub et al. 2015,
"Internal models engaged by brain–computer interface control"): the displacement the user's
own commands of the last ``delay_s`` should have produced, weighted by ``forward`` (0: none,
1: a perfect model of a perfect decoder). n is intent noise, an AR(1) process of σ ``noise``
(share of full speed) and correlation time ``noise_tau_s``. ‖u‖ ≤ 1 (full speed).

During calibration (open loop) the cursor moves on autopilot and the user intends exactly that
movement (what the decoder's training labels say). Each intention goes to the implant as a
VELOCITY control message (the MicroPython implant's format, per-mille of full speed): the
implant's tuned population fires accordingly from its next chunk on.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from hil import implant_ctl
from host_tools.decoding.base import F64
from host_tools.decoding.task import Task, ideal_velocity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserModel:
    """The simulated person's parameters (module docstring)."""

    delay_s: float = 0.2        # visual feedback delay (and reaction time to a new target)
    sat: float = 0.3            # distance (workspace units) from which full speed is intended
    dead: float = 0.0           # within this of the aim point nothing is intended
    forward: float = 0.0        # internal forward model weight, 0 … 1
    noise: float = 0.1          # intent noise σ per axis, share of full speed
    noise_tau_s: float = 0.1    # its correlation time

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class Intent:
    """The controller: ``step(pos, target)`` once per displayed cursor update (every bin)
    returns the intended velocity; ``autopilot(v)`` during calibration."""

    def __init__(self, model: UserModel, bin_s: float, speed: float = 1.0,
                 seed: int = 0) -> None:
        self.model, self.bin_s, self.speed = model, bin_s, speed
        self.rng = np.random.default_rng(seed)
        self.k = max(0, round(model.delay_s / bin_s))
        self._a = float(np.exp(-bin_s / model.noise_tau_s)) if model.noise_tau_s > 0 else 0.0
        self.reset()

    def reset(self) -> None:
        """A new block: nothing seen yet, nothing intended."""
        self.seen: deque[tuple[F64, F64]] = deque(maxlen=self.k + 1)
        self.sent: deque[F64] = deque(maxlen=max(self.k, 1))
        self.n = np.zeros(2)
        self.intended = np.zeros(2)

    def _noise(self) -> F64:
        m = self.model
        if m.noise <= 0:
            return np.zeros(2)
        self.n = self._a * self.n + np.sqrt(1 - self._a ** 2) * m.noise * self.rng.normal(0, 1, 2)
        return self.n

    def step(self, pos: F64, target: F64) -> F64:
        m = self.model
        self.seen.append((np.array(pos, np.float64), np.array(target, np.float64)))
        p, g = self.seen[0]
        if m.forward and self.k:
            p = p + m.forward * self.speed * self.bin_s * np.sum(list(self.sent)[-self.k:], 0)
        e = g - p
        d = float(np.hypot(e[0], e[1]))
        gain = min(1.0, max(0.0, (d - m.dead) / max(m.sat - m.dead, 1e-9)))
        u: F64 = (e / d * gain if d > 0 else np.zeros(2)) + self._noise()
        s = float(np.hypot(u[0], u[1]))
        if s > 1.0:
            u = u / s
        self.sent.append(u)
        self.intended = u
        return u

    def autopilot(self, v: F64) -> F64:
        """Open loop: the user intends the movement the cursor shows."""
        self.seen.clear()
        self.intended = np.asarray(v, np.float64).copy()
        self.sent.append(self.intended)
        return self.intended


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
    """``on_step(pos, target, v)`` → the next intention, sent through ``control``. The host
    sets ``open_loop`` while a calibration block runs (the autopilot moves the cursor)."""

    def __init__(self, control: ControlServer, task_of: Callable[[], Task], model: UserModel,
                 *, bin_s: float = 0.02, speed: float = 1.0, seed: int = 0) -> None:
        self.control = control
        self.task_of = task_of
        self.intent = Intent(model, bin_s, speed, seed)
        self.open_loop = False

    @property
    def intended(self) -> F64:
        return self.intent.intended

    def on_step(self, pos: F64, target: F64, v: F64) -> None:
        if self.open_loop:
            want = self.intent.autopilot(ideal_velocity(pos, target, self.task_of().radius))
        else:
            want = self.intent.step(pos, target)
        self.control.intend(want)

    def rest(self) -> None:
        """No task on screen: intend nothing."""
        self.intent.reset()
        self.control.intend(np.zeros(2))
