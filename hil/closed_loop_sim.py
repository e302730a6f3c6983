"""The closed loop without processes or clocks: the same task, cursor loop, decoders and
simulated user as ``hil.closed_loop``, with the implant + hub + radio replaced by Poisson
counts from the tuned population and a fixed delay of whole bins. Deterministic for a seed:
the CI test of the loop logic, and a quick way to try a decoder or task setting.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from host_tools.decoding import make_decoder
from host_tools.decoding.base import F64, Decoder
from host_tools.decoding.features import Bin
from host_tools.decoding.loop import BlockLog, CursorLoop
from host_tools.decoding.session import View
from host_tools.decoding.synth import TunedPopulation
from host_tools.decoding.task import CenterOut, Task, ideal_velocity


@dataclass
class SimSpec:
    n_units: int = 48
    bin_s: float = 0.02
    delay_bins: int = 2          # intention → counts reaching the decoder (hub + link)
    seed: int = 0


class SimLoop:
    """A tuned population answering the user's intention, bin by bin; ``view`` (optional) is
    drawn every bin like ``hubctl cursor``'s."""

    def __init__(self, spec: SimSpec, view: View | None = None) -> None:
        self.view = view
        self.spec = spec
        self.pop = TunedPopulation.random(spec.n_units, spec.seed)
        self.rng = np.random.default_rng(spec.seed + 1)
        self.task: Task = CenterOut(spec.seed)
        self.intention = np.zeros(2)
        self.pipe: deque[F64] = deque([np.zeros(2)] * spec.delay_bins)
        self.loop = CursorLoop(self.task, spec.bin_s, on_step=self._user,
                               clock_ns=lambda: self._now_ns)
        self._now_ns = 0
        self.index = 0
        self.status = ""

    def _user(self, pos: F64, target: F64, v: F64) -> None:
        self.intention = ideal_velocity(pos, target, self.loop.task.radius)
        if self.view is not None:
            self.view.draw(pos, target, self.loop.task, self.status)

    def run(self, name: str, task: Task, decoder: Decoder | None, seconds: float) -> BlockLog:
        self.loop.start_block(name, task, decoder)
        self.status = f"{name}: " + ("follow the cursor" if decoder is None
                                     else f"{decoder.kind} in control")
        self.intention = np.zeros(2)
        self._user(self.loop.cursor.pos, task.target, np.zeros(2))
        for _ in range(round(seconds / self.spec.bin_s)):
            self.pipe.append(self.intention.copy())
            drive = self.pipe.popleft()
            x = self.rng.poisson(self.pop.rates(drive) * self.spec.bin_s).astype(np.float64)
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
            block_s: float = 60, grid_s: float = 60, view: View | None = None) -> dict[str, Any]:
    """Calibration → closed-loop center-out per decoder → grid with the first; task summaries."""
    from host_tools.decoding.task import GridTask

    sim = SimLoop(spec, view)
    calib = sim.run("calibration", CenterOut(spec.seed), None, calibration_s)
    out: dict[str, Any] = {"calibration": calib.task}
    decoders = {k: fit_on(k, [calib]) for k in kinds}
    for i, (k, dec) in enumerate(decoders.items()):
        out[f"center_out/{k}"] = sim.run(k, CenterOut(spec.seed + 10 + i), dec, block_s).task
    out["grid"] = sim.run("grid", GridTask(spec.seed + 30), decoders[kinds[0]], grid_s).task
    return out
