"""The Recording type every reader returns, and the dispatcher that picks a reader."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: What a recording's rate and gain may be (anything else is a broken or forged header).
MIN_RATE_HZ, MAX_RATE_HZ = 1.0, 1e6
MAX_GAIN_UV = 1e4


class RecordingError(ValueError):
    """A recording file is missing, truncated, malformed or contradicts its metadata."""


class FileRows:
    """Rows of fixed size from a region of a file, read with ``preadv`` into the caller's
    array: nothing is mapped, so resident memory is one block whatever the file's length (a
    memory map would keep every page read so far resident). The descriptor closes with the
    object (or ``close``)."""

    def __init__(self, path: Path, offset: int, row_bytes: int, rows: int) -> None:
        self.path, self.offset, self.row_bytes, self.rows = path, offset, row_bytes, rows
        self._fd: int | None = os.open(path, os.O_RDONLY)

    def read_into(self, start: int, out: npt.NDArray[Any]) -> None:
        """Fills ``out`` (C-contiguous, a whole number of rows) from row ``start``."""
        if self._fd is None:
            raise RecordingError(f"{self.path}: read after close")
        want = out.nbytes
        if want % self.row_bytes or start < 0 or start + want // self.row_bytes > self.rows:
            raise IndexError(f"{self.path}: rows [{start}, {start + want // self.row_bytes}) "
                             f"outside 0..{self.rows}")
        view = memoryview(out.data).cast("B")
        pos, done = self.offset + start * self.row_bytes, 0
        while done < want:
            got = os.preadv(self._fd, [view[done:]], pos + done)
            if got <= 0:
                raise RecordingError(f"{self.path}: file shrank while reading (truncated at "
                                     f"byte {pos + done})")
            done += got

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:
        self.close()


@dataclass
class Recording:
    """An int16 multichannel recording, read in blocks.

    ``reader(start, stop)`` returns rows [start, stop) as a C-contiguous int16 array of shape
    (stop - start, num_channels). ``gain_to_uV`` converts counts to microvolts per channel.
    """

    name: str
    sampling_frequency: float
    num_channels: int
    num_samples: int
    gain_to_uV: npt.NDArray[np.float64]
    reader: Callable[[int, int], npt.NDArray[np.int16]]
    channel_positions_um: npt.NDArray[np.float64] | None = None
    #: Samples clipped to the int16 range when a float recording was quantised.
    clipped: list[int] = field(default_factory=lambda: [0])
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_channels < 1:
            raise RecordingError(f"{self.name}: a recording needs at least one channel")
        fs = self.sampling_frequency
        if not (math.isfinite(fs) and MIN_RATE_HZ <= fs <= MAX_RATE_HZ):
            raise RecordingError(f"{self.name}: sampling_frequency {fs} Hz is not a rate a "
                                 f"recording can have ({MIN_RATE_HZ:g}–{MAX_RATE_HZ:g} Hz)")
        if self.num_samples < 1:
            raise RecordingError(f"{self.name}: the recording holds no samples")
        if self.gain_to_uV.shape != (self.num_channels,):
            raise RecordingError(
                f"{self.name}: gain_to_uV has {self.gain_to_uV.size} values for "
                f"{self.num_channels} channels")
        g = self.gain_to_uV
        if not (np.all(np.isfinite(g)) and np.all(g > 0) and np.all(g <= MAX_GAIN_UV)):
            raise RecordingError(f"{self.name}: gain_to_uV must be finite, > 0 and ≤ "
                                 f"{MAX_GAIN_UV:g} µV per count (got {g.min():g}–{g.max():g})")
        pos = self.channel_positions_um
        if pos is not None and pos.shape != (self.num_channels, 2):
            raise RecordingError(
                f"{self.name}: channel_positions_um must be {self.num_channels} [x, y] pairs, "
                f"got shape {pos.shape}")

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sampling_frequency

    def read(self, start: int, stop: int) -> npt.NDArray[np.int16]:
        if not 0 <= start <= stop <= self.num_samples:
            raise IndexError(f"rows [{start}, {stop}) outside 0..{self.num_samples}")
        return self.reader(start, stop)

    def blocks(self, block_samples: int, start: int = 0, stop: int | None = None
               ) -> Iterator[tuple[int, npt.NDArray[np.int16]]]:
        """(first_sample, block) over rows [start, stop) (default: all), read one block at a
        time (memory: one block, whatever the length); the last block may be shorter."""
        if block_samples < 1:
            raise ValueError("block_samples must be ≥ 1")
        stop = self.num_samples if stop is None else stop
        for first in range(start, stop, block_samples):
            yield first, self.read(first, min(first + block_samples, stop))


def open_recording(path: str | Path) -> Recording:
    """Opens a WAV file, a folder of WAVs (stacked as channels), NAME.bin + NAME.json, or a
    SpikeInterface binary folder."""
    from hub.sources import raw, si_folder, wav

    p = Path(path)
    if not p.exists():
        raise RecordingError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / "binary.json").exists() or (p / "si_folder.json").exists():
            return si_folder.read_si_binary_folder(p)
        wavs = sorted(p.glob("*.wav"))
        if wavs:
            return wav.read_wav_stack(wavs)
        raise RecordingError(f"{p}: folder holds neither a SpikeInterface recording nor WAVs")
    suffix = p.suffix.lower()
    if suffix == ".wav":
        return wav.read_wav_stack([p])
    if suffix in (".bin", ".json"):
        return raw.read_raw(p.with_suffix(".bin"))
    raise RecordingError(f"{p}: unknown recording type {suffix!r} (want .wav, .bin+.json, "
                         "or a SpikeInterface binary folder)")
