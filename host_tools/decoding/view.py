"""What the person at the host sees: the decoded cursor, the target, the block's status.

``TerminalView`` redraws a character grid (ANSI home + clear) at most every ``interval`` s;
``FigureView`` draws with matplotlib — in a window (``interactive``) or off-screen (Agg),
and ``snapshot(path)`` writes the current picture as PNG. Both are throttled: the loop steps
every bin, a screen needs ~20 frames a second. Off-screen, ``draw`` only keeps the state and
the picture is made when a snapshot asks for it: drawing runs on the loop that receives the
hub's packets, and every millisecond spent there is sample → cursor latency.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from host_tools.decoding.base import F64
from host_tools.decoding.task import GridTask, Task


class TerminalView:
    def __init__(self, cols: int = 49, rows: int = 21, stream: TextIO | None = None,
                 interval: float = 0.05, clear: bool = True) -> None:
        self.cols, self.rows = cols, rows
        self.stream = stream or sys.stdout
        self.interval, self.clear = interval, clear
        self._last = -1e9
        self.frames = 0

    def _cell(self, p: F64) -> tuple[int, int]:
        c = round(float(p[0] + 1) / 2 * (self.cols - 1))
        r = round((1 - float(p[1] + 1) / 2) * (self.rows - 1))
        return min(max(r, 0), self.rows - 1), min(max(c, 0), self.cols - 1)

    def render(self, pos: F64, target: F64, task: Task, status: str) -> str:
        grid = [[" "] * self.cols for _ in range(self.rows)]
        for r in range(self.rows):
            for c in range(self.cols):
                x = c / (self.cols - 1) * 2 - 1
                y = 1 - r / (self.rows - 1) * 2
                d = np.array([x, y]) - target
                inside = (np.all(np.abs(d) <= task.radius) if task.square
                          else np.hypot(d[0], d[1]) <= task.radius)
                if inside:
                    grid[r][c] = "#"
        r, c = self._cell(pos)
        grid[r][c] = "O"
        border = "+" + "-" * self.cols + "+"
        body = "\n".join("|" + "".join(row) + "|" for row in grid)
        return f"{border}\n{body}\n{border}\n{status[:self.cols + 2]}\n"

    def draw(self, pos: F64, target: F64, task: Task, status: str) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self.frames += 1
        text = self.render(pos, target, task, status)
        self.stream.write(("\x1b[H\x1b[2J" if self.clear else "") + text)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")


class FigureView:
    def __init__(self, interactive: bool = False, interval: float = 0.05,
                 trail: int = 60) -> None:
        import matplotlib

        if not interactive:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt, self.interactive, self.interval = plt, interactive, interval
        if interactive:
            plt.ion()
        self.fig, self.ax = plt.subplots(figsize=(5.2, 5.6))
        ax = self.ax
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        self._task_id: int | None = None
        self._target_patches: list[Any] = []
        (self.trail_line,) = ax.plot([], [], "-", color="tab:blue", lw=1, alpha=0.5)
        (self.dot,) = ax.plot([], [], "o", color="tab:blue", ms=12)
        self.title = ax.set_title("", fontsize=9)
        self.trail: list[F64] = []
        self.trail_len = trail
        self._last = -1e9
        self.frames = 0
        self._state: tuple[F64, F64, Task, str] | None = None

    def _task_artists(self, task: Task, target: F64) -> None:
        from matplotlib.patches import Circle, Rectangle

        for p in self._target_patches:
            p.remove()
        self._target_patches = []
        if isinstance(task, GridTask):
            w = 2 / task.n
            for cx, cy in task.cells:
                self._target_patches.append(self.ax.add_patch(Rectangle(
                    (cx - w / 2, cy - w / 2), w, w, fill=False, ec="0.75", lw=0.6)))
            self._target_patches.append(self.ax.add_patch(Rectangle(
                (target[0] - w / 2, target[1] - w / 2), w, w, color="tab:green", alpha=0.6)))
        else:
            self._target_patches.append(self.ax.add_patch(Circle(
                tuple(target), task.radius, color="tab:green", alpha=0.6)))

    def draw(self, pos: F64, target: F64, task: Task, status: str) -> None:
        self.trail.append(pos.copy())
        del self.trail[:-self.trail_len]
        self._state = (pos.copy(), target.copy(), task, status)
        now = time.monotonic()
        if not self.interactive or now - self._last < self.interval:
            return
        self._last = now
        self._render()

    def _render(self) -> None:
        if self._state is None:
            return
        pos, target, task, status = self._state
        self.frames += 1
        self._task_artists(task, target)
        t = np.asarray(self.trail)
        self.trail_line.set_data(t[:, 0], t[:, 1])
        self.dot.set_data([pos[0]], [pos[1]])
        summary = task.summary()
        extra = (f"  {summary['correct']}✓ {summary['incorrect']}✗  {summary['bits_per_s']:.2f}"
                 f" bits/s" if isinstance(task, GridTask) else
                 f"  {summary['successes']}/{summary['trials']} targets")
        self.title.set_text(status + extra)
        if self.interactive:
            self.fig.canvas.draw_idle()
            self.plt.pause(0.001)

    def snapshot(self, path: Path) -> Path:
        self._render()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fig.savefig(path, dpi=100)
        return path

    def close(self) -> None:
        self.plt.close(self.fig)
