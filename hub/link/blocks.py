"""Frames → consecutive fixed-size sample blocks, with every discontinuity an explicit item.

The hub's sample clock is the implant's: within a stream, sample index = unwrapped frame
counter × samples per frame, so the host sees exactly which samples it never got. What
``push(frame)`` returns, in sample order:

- :class:`StreamStart` — the first frame, and every confirmed change of the implant's format
  (channels, rate, samples per frame): the pipeline must be rebuilt for it.
- :class:`Block` — ``block_samples`` rows (shorter just before a gap or stream change).
  ``resume`` is True for the first block after a gap or discontinuity: the signal does not
  continue the previous block, and the pipeline must resume rather than filter across.
- :class:`Gap` — samples that never arrived. A gap is a gap: nothing is ever filled in.
  ``kind`` says why: ``"missing"`` (frames lost: [start, end) is their exact range),
  ``"discontinuity"`` (the counter jumped back or implausibly far: the implant restarted; the
  hub's index goes on where it was, so the range is empty) or ``"format"`` (a new stream).

Frames that cannot be placed are dropped and counted, never guessed at: ``duplicates``
(counter seen just now), ``stale`` (up to ``stale_frames`` behind: late or replayed),
``foreign`` (another format, not confirmed by ``confirm_frames`` alike in a row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hub.link.frame import Frame

COUNTER_MOD = 1 << 32


@dataclass(frozen=True)
class Gap:
    start: int              # first missing sample index
    end: int                # one past the last missing sample
    frames: int             # frames missing
    kind: str = "missing"   # "missing" | "discontinuity" | "format"


@dataclass(frozen=True)
class StreamStart:
    """The implant's stream (re)starts with this format at ``first_sample``."""

    first_sample: int
    n_channels: int
    sampling_rate: int
    frame_samples: int
    change: bool            # False for the first stream, True for a format change


@dataclass(frozen=True)
class Block:
    first_sample: int
    samples: npt.NDArray[np.int16]    # (n, C)
    resume: bool = False              # first block after a gap or discontinuity


Item = Block | Gap | StreamStart


@dataclass
class AssemblerStats:
    """Frame counts by fate (reported in telemetry)."""

    accepted: int = 0
    missing_frames: int = 0
    duplicates: int = 0
    stale: int = 0
    foreign: int = 0             # frames of an unconfirmed other format, dropped
    discontinuities: int = 0
    format_changes: int = 0


class BlockAssembler:
    """``push(frame) -> [Item, ...]`` in sample order; ``flush()`` at the end."""

    def __init__(self, block_samples: int, confirm_frames: int = 2, stale_frames: int = 64,
                 max_gap_s: float = 3600.0, block_ms: float | None = None) -> None:
        if block_samples < 1:
            raise ValueError("block_samples must be ≥ 1")
        if confirm_frames < 1 or stale_frames < 0 or not max_gap_s > 0:
            raise ValueError("confirm_frames ≥ 1, stale_frames ≥ 0 and max_gap_s > 0")
        self.block_samples = block_samples
        self.confirm_frames, self.stale_frames, self.max_gap_s = (confirm_frames, stale_frames,
                                                                   max_gap_s)
        self.stats = AssemblerStats()
        #: when set, every stream (re)start sizes blocks to this duration at its own rate
        self.block_ms = block_ms
        self.n_channels = 0
        self.sampling_rate = 0
        self.frame_samples = 0
        self._last_counter: int | None = None
        self._rows: list[npt.NDArray[np.int16]] = []
        self._nrows = 0
        self.next_sample = 0            # index of the first row not yet emitted in a block
        self._resume = False
        self._candidates: list[Frame] = []

    @property
    def started(self) -> bool:
        return self._last_counter is not None

    @property
    def missing_frames(self) -> int:
        return self.stats.missing_frames

    @property
    def format_errors(self) -> int:
        """Frames of another format that were dropped (kept for old callers)."""
        return self.stats.foreign

    @property
    def end_sample(self) -> int:
        """One past the last sample pushed so far (the time-sync observation of a frame)."""
        return self._expected()

    def set_block_samples(self, n: int) -> None:
        """Takes effect at the next block boundary."""
        if n < 1:
            raise ValueError("block_samples must be ≥ 1")
        self.block_samples = n

    def push(self, frame: Frame) -> list[Item]:
        out: list[Item] = []
        fmt = (frame.n_channels, frame.sampling_rate, frame.n_samples)
        if self._last_counter is None:
            self._start(frame, out, change=False)
        elif fmt != (self.n_channels, self.sampling_rate, self.frame_samples):
            self._candidate(frame, out)
        else:
            if self._candidates:          # the stream's format again: those were strays
                self.stats.foreign += len(self._candidates)
                self._candidates = []
            self._place(frame, out)
        return out

    # ------------------------------------------------------------ frames of the stream
    def _place(self, frame: Frame, out: list[Item]) -> None:
        assert self._last_counter is not None
        delta = (frame.counter - self._last_counter) % COUNTER_MOD
        max_gap = max(1, int(self.max_gap_s * self.sampling_rate / self.frame_samples))
        if delta == 0:
            self.stats.duplicates += 1
            return
        if COUNTER_MOD - delta <= self.stale_frames:
            self.stats.stale += 1
            return
        if delta > max_gap + 1:           # the implant restarted (or its counter is garbage)
            self.stats.discontinuities += 1
            self._break(Gap(self._expected(), self._expected(), 0, "discontinuity"), out)
        elif delta > 1:
            missing = delta - 1
            self.stats.missing_frames += missing
            start = self._expected()
            n = missing * self.frame_samples
            self._break(Gap(start, start + n, missing), out)
            self.next_sample = start + n
        self._last_counter = frame.counter
        self._add(frame.samples, out)
        self.stats.accepted += 1

    def _break(self, gap: Gap, out: list[Item]) -> None:
        out += self._flush_partial()
        out.append(gap)
        self._resume = True

    # ------------------------------------------------------------ format changes
    def _candidate(self, frame: Frame, out: list[Item]) -> None:
        c = self._candidates
        if c and (c[0].n_channels, c[0].sampling_rate, c[0].n_samples) != (
                frame.n_channels, frame.sampling_rate, frame.n_samples):
            self.stats.foreign += len(c)
            c.clear()
        c.append(frame)
        if len(c) < self.confirm_frames:
            return
        self.stats.format_changes += 1
        first, rest = c[0], c[1:]
        self._candidates = []
        self._start(first, out, change=True)
        for f in rest:
            self._place(f, out)

    def _start(self, frame: Frame, out: list[Item], change: bool) -> None:
        if change:
            out += self._flush_partial()
            start = self._expected()
            out.append(Gap(start, start, 0, "format"))
        else:
            start = frame.counter * frame.n_samples
        self.n_channels, self.sampling_rate = frame.n_channels, frame.sampling_rate
        self.frame_samples = frame.n_samples
        if self.block_ms:
            self.block_samples = max(1, round(self.block_ms * frame.sampling_rate / 1000.0))
        self._last_counter = frame.counter
        self.next_sample = start
        self._resume = False
        out.append(StreamStart(start, frame.n_channels, frame.sampling_rate, frame.n_samples,
                               change))
        self._add(frame.samples, out)
        self.stats.accepted += 1

    # ------------------------------------------------------------ blocks
    def _expected(self) -> int:
        return self.next_sample + self._nrows

    def _add(self, rows: npt.NDArray[np.int16], out: list[Item]) -> None:
        self._rows.append(rows)
        self._nrows += rows.shape[0]
        while self._nrows >= self.block_samples:
            data = self._rows[0] if len(self._rows) == 1 else np.concatenate(self._rows)
            b = self.block_samples
            out.append(self._block(np.ascontiguousarray(data[:b])))
            rest = data[b:]
            self._rows = [rest] if rest.shape[0] else []
            self._nrows = rest.shape[0]

    def _block(self, data: npt.NDArray[np.int16]) -> Block:
        blk = Block(self.next_sample, data, self._resume)
        self._resume = False
        self.next_sample += data.shape[0]
        return blk

    def _flush_partial(self) -> list[Item]:
        if not self._nrows:
            return []
        data = np.concatenate(self._rows)
        self._rows, self._nrows = [], 0
        return [self._block(np.ascontiguousarray(data))]

    def flush(self) -> list[Item]:
        """The last partial block (at shutdown); unconfirmed format candidates are foreign."""
        self.stats.foreign += len(self._candidates)
        self._candidates = []
        return self._flush_partial()
