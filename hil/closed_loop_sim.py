"""The closed loop without processes or clocks: the same task, cursor loop, decoders and
simulated user (``hil.closed_loop_user``) as ``hil.closed_loop``, with the implant + hub +
radio replaced by a feature model of the tuned implant and a fixed delay of whole bins.
Deterministic for a seed: the CI test of the loop logic, and where the user model and the
decoder path are calibrated on tuning seeds (``python -m hil.closed_loop_calibrate``) before
the real loop runs on others.

Feature models (what the hub would send for ``hil/implant_tuned.py``'s populations):

- ``units``: Poisson counts per unit (sorted units);
- ``tc``: threshold crossings per channel — each unit's spikes counted on its main channel and,
  when half its amplitude clears a 5σ threshold, on the two neighbours (the implant's spatial
  footprint, the same seed → the same channels and amplitudes as ``TunedSpikes``);
- ``hg``: high-gamma RMS per channel — the tuned band amplitude over a band-limited background,
  χ²-distributed with the few degrees of freedom an 80 Hz band has in 20 ms (``TunedEcog``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hil.closed_loop_user import Intent, UserModel
from host_tools.decoding import make_decoder
from host_tools.decoding.base import F64, Decoder
from host_tools.decoding.features import Bin
from host_tools.decoding.loop import BlockLog, CursorLoop
from host_tools.decoding.session import View
from host_tools.decoding.synth import TunedPopulation
from host_tools.decoding.task import CenterOut, GridTask, Task, ideal_velocity

FEATURES = ("units", "tc", "hg")


@dataclass
class SimSpec:
    features: str = "units"
    n_units: int = 48            # spiking populations: units; hg: channels
    n_channels: int = 32         # tc: channels the units sit on
    bin_s: float = 0.02
    delay_bins: int = 2          # intention → the first bin whose features carry it
    seed: int = 0                # the population (the implant's seed)
    task_seed: int | None = None  # tasks and the user's noise (default: seed)
    user: UserModel = field(default_factory=UserModel)
    speed: float = 1.0           # cursor gain: workspace units per second at full speed
    smooth: float = 0.0          # cursor readout smoothing α (host_tools.decoding.loop)


class FeatureModel:
    """Features per bin for an intended velocity (module docstring)."""

    def __init__(self, spec: SimSpec) -> None:
        if spec.features not in FEATURES:
            raise ValueError(f"features {spec.features!r}: want one of {', '.join(FEATURES)}")
        self.kind, self.bin_s = spec.features, spec.bin_s
        self.rng = np.random.default_rng(spec.seed + 1)
        self.pop = TunedPopulation.random(spec.n_units, spec.seed)
        layout = np.random.default_rng(spec.seed)     # as hil.implant_tuned draws it
        if self.kind == "tc":
            c = spec.n_channels
            main = layout.integers(0, c, spec.n_units)
            amp = layout.uniform(120, 420, spec.n_units)
            m = np.zeros((c, spec.n_units))
            m[main, np.arange(spec.n_units)] = 1.0
            for u in np.flatnonzero(0.5 * amp > 5 * 20.0):
                for nb in (main[u] - 1, main[u] + 1):
                    if 0 <= nb < c:
                        m[nb, u] = 1.0
            self.mix = m
        elif self.kind == "hg":
            self.hg_amp = 12.0 * layout.uniform(0.6, 1.4, spec.n_units) * 1.12
            self.background = 5.0
            self.dof = 4

    @property
    def n_features(self) -> int:
        return int(self.mix.shape[0]) if self.kind == "tc" else len(self.pop.base_hz)

    def bin(self, v: F64) -> F64:
        rates = self.pop.rates(v)
        if self.kind == "hg":
            power = (self.hg_amp * rates / self.pop.base_hz) ** 2 + self.background ** 2
            chi = self.rng.chisquare(self.dof, power.size) / self.dof
            out: F64 = np.sqrt(power * chi)
            return out
        counts = self.rng.poisson(rates * self.bin_s).astype(np.float64)
        return self.mix @ counts if self.kind == "tc" else counts


class SimLoop:
    """The feature model answering the user's intention, bin by bin; ``view`` (optional) is
    drawn every bin like ``hubctl cursor``'s."""

    def __init__(self, spec: SimSpec, view: View | None = None) -> None:
        self.view = view
        self.spec = spec
        self.model = FeatureModel(spec)
        self.pop = self.model.pop
        seed = spec.seed if spec.task_seed is None else spec.task_seed
        self.intent = Intent(spec.user, spec.bin_s, spec.speed, seed + 7)
        self.task: Task = CenterOut(seed)
        self.open_loop = True
        self.pipe: deque[F64] = deque([np.zeros(2)] * spec.delay_bins)
        self.loop = CursorLoop(self.task, spec.bin_s, speed=spec.speed, smooth=spec.smooth,
                               on_step=self._user, clock_ns=lambda: self._now_ns)
        self._now_ns = 0
        self.index = 0
        self.status = ""

    def configure(self, user: UserModel, seed: int, speed: float, smooth: float = 0.0) -> None:
        """Another user model and cursor readout from the next block on."""
        self.intent = Intent(user, self.spec.bin_s, speed, seed)
        self.loop.cursor.speed, self.loop.smooth = speed, smooth

    def _user(self, pos: F64, target: F64, v: F64) -> None:
        if self.open_loop:
            self.intent.autopilot(ideal_velocity(pos, target, self.loop.task.radius))
        else:
            self.intent.step(pos, target)
        if self.view is not None:
            self.view.draw(pos, target, self.loop.task, self.status)

    def run(self, name: str, task: Task, decoder: Decoder | None, seconds: float) -> BlockLog:
        self.loop.start_block(name, task, decoder)
        self.open_loop = decoder is None
        self.status = f"{name}: " + ("follow the cursor" if decoder is None
                                     else f"{decoder.kind} in control")
        self.intent.reset()
        self._user(self.loop.cursor.pos, task.target, np.zeros(2))
        for _ in range(round(seconds / self.spec.bin_s)):
            self.pipe.append(self.intent.intended.copy())
            x = self.model.bin(self.pipe.popleft())
            t_sample = self._now_ns
            self._now_ns += round(self.spec.bin_s * 1e9)
            self.loop.on_bin(Bin(self.index, 0, x, t_sample))
            self.index += 1
        blk = self.loop.finish_block()
        assert blk is not None
        return blk


def fit_on(kind: str, blocks: list[BlockLog]) -> Decoder:
    X = np.concatenate([b.arrays()["x"] for b in blocks])
    Y = np.concatenate([b.arrays()["label"] for b in blocks])
    return make_decoder(kind).fit(X, Y)


def session(spec: SimSpec, kinds: tuple[str, ...] = ("kalman_ss",), calibration_s: float = 60,
            block_s: float = 60, grid_s: float = 60, view: View | None = None,
            refit: bool = False, grid_with: str | None = None,
            dwell_s: float = 0.45) -> dict[str, Any]:
    """Calibration → closed-loop center-out per decoder (→ ReFIT of the first on its block) →
    grid with ``grid_with`` (default: the ReFIT decoder if made, else the first); task
    summaries by block name."""
    sim = SimLoop(spec, view)
    seed = spec.seed if spec.task_seed is None else spec.task_seed
    calib = sim.run("calibration", CenterOut(seed), None, calibration_s)
    out: dict[str, Any] = {"calibration": calib.task}
    decoders = {k: fit_on(k, [calib]) for k in kinds}
    closed = {}
    for i, (k, dec) in enumerate(decoders.items()):
        closed[k] = sim.run(k, CenterOut(seed + 10 + i), dec, block_s)
        out[f"center_out/{k}"] = closed[k].task
    if refit:
        k = kinds[0]
        decoders["refit"] = fit_on(k, [calib, closed[k]])
        out["center_out/refit"] = sim.run("refit", CenterOut(seed + 20), decoders["refit"],
                                          block_s).task
    use = grid_with or ("refit" if refit else kinds[0])
    out["grid"] = sim.run("grid", GridTask(seed + 30, dwell_s=dwell_s), decoders[use],
                          grid_s).task
    return out
