"""Live status of ``hubctl record`` on a terminal (rich): elapsed time, link throughput, rates
per class, the hub's buffers and shed counts per class, hub CPU and the time-sync drift.

Fed from the same hooks as the packet log (every chunk, every decoded envelope); redrawn at
most 4 times a second; only used when stderr is a terminal (or ``--status on``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from host_tools.receiver import CLASS_NAMES, items_of
from host_tools.timesync import TimeSyncFit
from hub.wire import pb

WINDOW_NS = 2_000_000_000          # rates over the last 2 s
CLASSES = (pb.STREAM_SPIKES, pb.STREAM_FEATURES, pb.STREAM_SNIPPETS, pb.STREAM_RAW,
           pb.STREAM_TELEMETRY)
UNITS = {pb.STREAM_SPIKES: "events/s", pb.STREAM_FEATURES: "bins/s",
         pb.STREAM_SNIPPETS: "snippets/s", pb.STREAM_RAW: "ch-samples/s",
         pb.STREAM_TELEMETRY: "packets/s"}


def _si(x: float, unit: str) -> str:
    for div, p in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.2f} {p}{unit}"
    return f"{x:.0f} {unit}"


class LiveStatus:
    """A rich Live panel; ``refresh`` redraws (throttled), ``stop`` leaves the last frame."""

    def __init__(self, link: str = "", console: Console | None = None) -> None:
        self.link = link
        self.console = console or Console(stderr=True)
        self.t0 = time.monotonic_ns()
        self.chunks: deque[tuple[int, int]] = deque()            # (t_ns, bytes)
        self.items: dict[int, deque[tuple[int, int]]] = {c: deque() for c in CLASSES}
        self.total_bytes = 0
        self.packets = 0
        self.sessions: list[int] = []
        self.telemetry: pb.Telemetry | None = None
        self.fit = TimeSyncFit()
        self._last_draw = 0.0
        self._stderr = sys.stderr
        self.live = Live(self.render(), console=self.console, refresh_per_second=4,
                         transient=False, auto_refresh=False)
        self.live.start()
        # log records go through the live display (above it), not over it
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and h.stream in (sys.__stderr__,
                                                                     self._stderr):
                self._swapped.append((h, h.setStream(sys.stderr)))

    # ------------------------------------------------------------ hooks
    def on_chunk(self, chunk: bytes, t_ns: int) -> None:
        self.chunks.append((t_ns, len(chunk)))
        self.total_bytes += len(chunk)

    def on_envelope(self, env: pb.Envelope, t_ns: int) -> None:
        self.packets += 1
        if env.session_id not in self.sessions:
            self.sessions.append(env.session_id)
            self.fit = TimeSyncFit()          # a new hub session: a new sample clock
        kind = env.WhichOneof("payload")
        if env.stream in self.items and kind != "time_sync":
            self.items[env.stream].append((t_ns, items_of(env) if kind != "telemetry" else 1))
        if kind == "telemetry":
            self.telemetry = env.telemetry
        elif kind == "time_sync":
            self.fit.add_packet(env.time_sync, t_ns)

    # ------------------------------------------------------------ drawing
    def _rate(self, q: deque[tuple[int, int]], now: int) -> float:
        while q and now - q[0][0] > WINDOW_NS:
            q.popleft()
        return sum(n for _, n in q) / (WINDOW_NS / 1e9)

    def render(self) -> Group:
        now = time.monotonic_ns()
        el = (now - self.t0) / 1e9
        head = Text.assemble(
            ("● recording ", "bold red"), (f"{int(el // 3600):02d}:{int(el % 3600 // 60):02d}:"
                                           f"{el % 60:04.1f}", "bold"),
            f"   {self.link.upper()} link  {_si(self._rate(self.chunks, now) * 8, 'bit/s')}"
            f"   {self.total_bytes / 1e6:.1f} MB, {self.packets} packets"
            f"   hub session(s): {', '.join(f'{s:08x}' for s in self.sessions) or '—'}")
        t = Table(expand=False, show_edge=False, pad_edge=False)
        for col in ("class", "rate", "hub queued", "shed (total)", "produced"):
            t.add_column(col, justify="right" if col != "class" else "left")
        counters = {c.stream: c for c in self.telemetry.classes} if self.telemetry else {}
        for st in CLASSES:
            c = counters.get(st)
            shed = f"{c.shed:,}" if c else "—"
            style = "yellow" if c and c.shed else ""
            t.add_row(CLASS_NAMES[st], f"{self._rate(self.items[st], now):,.0f} {UNITS[st]}",
                      f"{c.queued_bytes / 1e3:.1f} kB" if c else "—",
                      Text(shed, style=style), f"{c.produced:,}" if c else "—")
        tel = self.telemetry
        drift = self.fit.drift_ppm
        foot = Text.assemble(
            f"hub CPU {100 * tel.cpu_load:.0f} %   budget {_si(tel.budget_bps, 'bit/s')}   "
            f"raw channels {tel.raw_channels_sent}   implant frames missing "
            f"{tel.link_missing_frames}   " if tel else "waiting for hub telemetry   ",
            (f"time-sync drift {drift:+.1f} ppm ({len(self.fit.points)} points"
             f"{', settling' if len(self.fit.points) < 30 else ''})"
             if drift is not None else "time sync: fitting…"), style="dim" if not tel else "")
        return Group(head, t, foot)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_draw >= 0.25:
            self._last_draw = now
            self.live.update(self.render(), refresh=True)

    def stop(self) -> None:
        self.refresh(force=True)
        self.live.stop()
        for h, stream in self._swapped:
            h.setStream(stream)
        self._swapped.clear()

    def __enter__(self) -> LiveStatus:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
