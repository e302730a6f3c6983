"""Cursor tasks of the BCI literature, stepped once per decoded bin.

The workspace is the square [−1, 1]²; a velocity of 1 (full speed) moves the cursor
``speed`` workspace units per second.

- **Center-out** (8 targets): targets alternate between the centre and one of 8 on a circle
  (random order); a trial succeeds when the cursor enters the target and stays ``hold_s``,
  fails after ``timeout_s``. Time to target = entry that led to the successful hold.
- **Grid selection** (Nuyujukian et al. 2015's grid task): an n×n grid of cells tiles the
  workspace, one is cued; dwelling ``dwell_s`` on any cell selects it — correct if it is the
  cued one, incorrect otherwise — and a new cell is cued. Achieved bitrate (Nuyujukian et al.
  2015, "a high performance keyboard neural prosthesis", the measure the BCI literature
  reports):

      B = log2(N − 1) · max(Sc − Si, 0) / t      bits/s

  N cells, Sc correct and Si incorrect selections in t seconds; it counts a wrong selection as
  costing one correct one (the deletion it needs), so guessing scores 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from host_tools.decoding.base import F64


def achieved_bitrate(n_targets: int, correct: int, incorrect: int, seconds: float) -> float:
    """Nuyujukian et al.'s achieved bitrate: log2(N−1)·max(Sc−Si, 0)/t."""
    if n_targets < 2 or seconds <= 0:
        return 0.0
    return math.log2(n_targets - 1) * max(correct - incorrect, 0) / seconds


@dataclass
class Cursor:
    """Position in [−1, 1]², moved by velocity (full speed = ``speed`` units/s)."""

    speed: float = 1.0
    pos: F64 = field(default_factory=lambda: np.zeros(2))

    def move(self, v: F64, dt: float) -> F64:
        self.pos = np.clip(self.pos + np.asarray(v, np.float64)[:2] * self.speed * dt, -1, 1)
        return self.pos


class Task:
    """A target-acquisition task; ``update`` once per bin with the cursor position."""

    name = "task"
    square = False          # targets are squares (grid cells) rather than discs

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.t = 0.0
        self.target = np.zeros(2)
        self.radius = 0.1

    def on_target(self, pos: F64) -> bool:
        d = pos - self.target
        return bool(np.all(np.abs(d) <= self.radius) if self.square
                    else np.hypot(d[0], d[1]) <= self.radius)

    def update(self, pos: F64, dt: float) -> str | None:
        """Advances the task clock; returns an event name when a trial ends."""
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError


class CenterOut(Task):
    name = "center_out"

    def __init__(self, seed: int = 0, n_targets: int = 8, distance: float = 0.7,
                 radius: float = 0.12, hold_s: float = 0.3, timeout_s: float = 5.0) -> None:
        super().__init__(seed)
        a = 2 * np.pi * np.arange(n_targets) / n_targets
        self.targets = distance * np.c_[np.cos(a), np.sin(a)]
        self.radius, self.hold_s, self.timeout_s = radius, hold_s, timeout_s
        self.outward = True          # the first trial goes out from the centre
        self.trial_t = 0.0
        self.entered: float | None = None
        self.trials: list[dict[str, Any]] = []
        self._order: list[int] = []
        self.target_index = -1
        self._next_target()

    def _next_target(self) -> None:
        if self.outward:
            if not self._order:
                self._order = list(self.rng.permutation(len(self.targets)))
            self.target_index = int(self._order.pop())
            self.target = self.targets[self.target_index].copy()
        else:
            self.target_index = -1
            self.target = np.zeros(2)
        self.trial_t, self.entered = 0.0, None

    def update(self, pos: F64, dt: float) -> str | None:
        self.t += dt
        self.trial_t += dt
        event = None
        if self.on_target(pos):
            if self.entered is None:
                self.entered = self.trial_t
            if self.trial_t - self.entered >= self.hold_s - 1e-9:
                event = "success"
        else:
            self.entered = None
        if event is None and self.trial_t >= self.timeout_s:
            event = "timeout"
        if event is not None:
            self.trials.append({"target": self.target_index, "outward": self.outward,
                                "success": event == "success",
                                "time_to_target_s": self.entered if event == "success" else None,
                                "end_s": round(self.t, 3)})
            self.outward = not self.outward
            self._next_target()
        return event

    def summary(self) -> dict[str, Any]:
        done = self.trials
        ok = [tr for tr in done if tr["success"]]
        ttt = [tr["time_to_target_s"] for tr in ok]
        return {"task": self.name, "trials": len(done), "successes": len(ok),
                "success_rate": round(len(ok) / len(done), 4) if done else None,
                "time_to_target_s": {"median": round(float(np.median(ttt)), 3) if ttt else None,
                                     "mean": round(float(np.mean(ttt)), 3) if ttt else None},
                "seconds": round(self.t, 2)}


class GridTask(Task):
    name = "grid"
    square = True

    def __init__(self, seed: int = 0, n: int = 6, dwell_s: float = 0.45) -> None:
        super().__init__(seed)
        self.n, self.dwell_s = n, dwell_s
        edges = np.linspace(-1, 1, n + 1)
        centres = (edges[:-1] + edges[1:]) / 2
        self.cells = np.array([[x, y] for y in centres for x in centres])
        self.radius = 1.0 / n                 # half a cell: the cells tile the workspace
        self.cued = 0
        self.dwelling: int | None = None
        self.dwell_t = 0.0
        self.correct = 0
        self.incorrect = 0
        self.selections: list[dict[str, Any]] = []
        self.last_t = 0.0
        self._cue()

    def _cue(self) -> None:
        self.cued = int(self.rng.integers(len(self.cells)))
        self.target = self.cells[self.cued].copy()

    def cell_of(self, pos: F64) -> int:
        ij = np.clip(((pos + 1) / 2 * self.n).astype(int), 0, self.n - 1)
        return int(ij[1] * self.n + ij[0])

    def update(self, pos: F64, dt: float) -> str | None:
        self.t += dt
        cell = self.cell_of(pos)
        if cell != self.dwelling:
            self.dwelling, self.dwell_t = cell, 0.0
        self.dwell_t += dt
        if self.dwell_t < self.dwell_s - 1e-9:
            return None
        ok = cell == self.cued
        self.correct += ok
        self.incorrect += not ok
        self.selections.append({"cued": self.cued, "selected": cell, "correct": ok,
                                "time_s": round(self.t - self.last_t, 3)})
        self.last_t = self.t
        self.dwelling, self.dwell_t = None, 0.0
        self._cue()
        return "correct" if ok else "incorrect"

    def summary(self) -> dict[str, Any]:
        n_sel = self.correct + self.incorrect
        times = [s["time_s"] for s in self.selections if s["correct"]]
        return {"task": self.name, "grid": f"{self.n}x{self.n}", "dwell_s": self.dwell_s,
                "correct": self.correct, "incorrect": self.incorrect,
                "success_rate": round(self.correct / n_sel, 4) if n_sel else None,
                "time_to_select_s": {"median": round(float(np.median(times)), 3)
                                     if times else None},
                "seconds": round(self.t, 2),
                "bits_per_s": round(achieved_bitrate(self.n * self.n, self.correct,
                                                     self.incorrect, self.t), 3),
                "bitrate_formula": "log2(N-1) * max(Sc - Si, 0) / t (Nuyujukian et al. 2015)"}


def ideal_velocity(pos: F64, target: F64, radius: float, slow_within: float = 0.3) -> F64:
    """Straight at the target, full speed until ``slow_within`` of it, then proportionally
    slower; zero once inside (the intention the calibration block shows and ReFIT assumes)."""
    d = np.asarray(target, np.float64) - pos
    dist = float(np.hypot(d[0], d[1]))
    if dist <= radius * 0.5 or dist == 0.0:
        return np.zeros(2)
    out: F64 = d / dist * min(1.0, dist / slow_within)
    return out


def make_task(name: str, seed: int) -> Task:
    if name in ("center_out", "center-out"):
        return CenterOut(seed)
    if name == "grid":
        return GridTask(seed)
    raise ValueError(f"unknown task {name!r} (center_out, grid)")
