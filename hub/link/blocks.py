"""Frames → consecutive fixed-size sample blocks, with missing frames as explicit gaps.

The hub's sample clock is the implant's: sample index = unwrapped frame counter × samples per
frame, so it survives a hub restart and the host can see exactly which samples it never got.
A short gap (≤ ``max_fill`` samples) is filled by holding each channel's last value, so the
pipeline's filters see no step and its indices stay consistent; it is reported as a
:class:`Gap`. A longer gap (or the implant restarting its counter) is reported with
``filled=False``: the caller restarts the pipeline at ``gap.end``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hub.link.frame import Frame


@dataclass(frozen=True)
class Gap:
    start: int              # first missing sample index
    end: int                # one past the last missing sample
    frames: int             # frames missing
    filled: bool            # True: held values were inserted; False: the stream restarts at end


@dataclass(frozen=True)
class Block:
    first_sample: int
    samples: npt.NDArray[np.int16]    # (n, C)


class BlockAssembler:
    """``push(frame) -> [Gap | Block, ...]`` in sample order."""

    def __init__(self, block_samples: int, max_fill: int = 60_000) -> None:
        if block_samples < 1:
            raise ValueError("block_samples must be ≥ 1")
        self.block_samples = block_samples
        self.max_fill = max_fill
        self.n_channels = 0
        self.sampling_rate = 0
        self.frame_samples = 0
        self.format_errors = 0          # frames whose shape/rate differs from the stream's
        self.missing_frames = 0
        self._last_counter: int | None = None
        self._rows: list[npt.NDArray[np.int16]] = []
        self._nrows = 0
        self.next_sample = 0            # index of the first row not yet emitted in a block
        self._hold: npt.NDArray[np.int16] | None = None

    @property
    def started(self) -> bool:
        return self._last_counter is not None

    @property
    def end_sample(self) -> int:
        """One past the last sample pushed so far (the time-sync observation of a frame)."""
        return self._expected()

    def set_block_samples(self, n: int) -> None:
        """Takes effect at the next block boundary."""
        if n < 1:
            raise ValueError("block_samples must be ≥ 1")
        self.block_samples = n

    def push(self, frame: Frame) -> list[Gap | Block]:
        out: list[Gap | Block] = []
        if self._last_counter is None:
            self.n_channels, self.sampling_rate = frame.n_channels, frame.sampling_rate
            self.frame_samples = frame.n_samples
            self._last_counter = frame.counter
            self.next_sample = frame.counter * self.frame_samples
        elif (frame.n_channels, frame.sampling_rate, frame.n_samples) != (
                self.n_channels, self.sampling_rate, self.frame_samples):
            self.format_errors += 1
            return out
        else:
            delta = (frame.counter - self._last_counter) & 0xFFFFFFFF
            if delta == 0 or delta >= 0x80000000:        # duplicate or implant counter reset
                if delta == 0:
                    return out
                out += self._flush_partial()
                out.append(Gap(self._expected(), self._expected(), 0, filled=False))
                self._last_counter = frame.counter
                self._add(frame.samples, out)
                return out
            self._last_counter = frame.counter
            missing = delta - 1
            if missing:
                self.missing_frames += missing
                start = self._expected()
                n = missing * self.frame_samples
                if n <= self.max_fill and self._hold is not None:
                    out.append(Gap(start, start + n, missing, filled=True))
                    self._add(np.repeat(self._hold[None, :], n, axis=0), out)
                else:
                    out += self._flush_partial()
                    out.append(Gap(start, start + n, missing, filled=False))
                    self.next_sample = start + n
        self._add(frame.samples, out)
        return out

    def _expected(self) -> int:
        return self.next_sample + self._nrows

    def _add(self, rows: npt.NDArray[np.int16], out: list[Gap | Block]) -> None:
        self._rows.append(rows)
        self._nrows += rows.shape[0]
        self._hold = rows[-1]
        while self._nrows >= self.block_samples:
            data = self._rows[0] if len(self._rows) == 1 else np.concatenate(self._rows)
            b = self.block_samples
            out.append(Block(self.next_sample, np.ascontiguousarray(data[:b])))
            rest = data[b:]
            self._rows = [rest] if rest.shape[0] else []
            self._nrows = rest.shape[0]
            self.next_sample += b

    def _flush_partial(self) -> list[Gap | Block]:
        if not self._nrows:
            return []
        data = np.concatenate(self._rows)
        self._rows, self._nrows = [], 0
        blk = Block(self.next_sample, np.ascontiguousarray(data))
        self.next_sample += data.shape[0]
        return [blk]

    def flush(self) -> list[Gap | Block]:
        """The last partial block (at shutdown)."""
        return self._flush_partial()
