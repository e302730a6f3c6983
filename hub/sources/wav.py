"""Mono int16 WAV files; several are stacked as channels (truncated to the shortest).

Only the headers are read when a recording is opened; samples are read block by block from
each file's data chunk (memory: one block, whatever the files' length).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hub.sources.base import FileRows, Recording, RecordingError

#: Neuralink N1 data has no published µV scale; 1 count is reported as 1 (arbitrary) unit.
DEFAULT_GAIN_UV = 1.0
#: Read-ahead of a WAV stack for small reads (bytes, all channels).
WINDOW_BYTES = 4 << 20


def _data_offset(path: Path) -> int:
    """Byte offset of the RIFF ``data`` chunk's samples."""
    with path.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise RecordingError(f"{path}: not a RIFF/WAVE file")
        while True:
            h = f.read(8)
            if len(h) < 8:
                raise RecordingError(f"{path}: no data chunk")
            size = int.from_bytes(h[4:], "little")
            if h[:4] == b"data":
                return f.tell()
            f.seek(size + (size & 1), 1)


def open_mono_int16(path: Path) -> tuple[FileRows, int]:
    """(rows of the samples, sample rate) of a mono 16-bit PCM WAV; anything else (or a file
    shorter than its header says) is a RecordingError."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                raise RecordingError(
                    f"{path}: want mono 16-bit PCM, got {w.getnchannels()} channel(s), "
                    f"{8 * w.getsampwidth()}-bit, {w.getcomptype()}")
            frames, rate = w.getnframes(), w.getframerate()
    except (wave.Error, EOFError, RuntimeError) as e:
        # RuntimeError: the stdlib chunk reader's bad seek (a chunk size past the file's end)
        why = str(e) or type(e).__name__
        raise RecordingError(f"{path}: not a readable WAV file ({why})") from e
    offset = _data_offset(path)
    held = max(0, path.stat().st_size - offset) // 2
    if held < frames:
        raise RecordingError(
            f"{path}: truncated: header announces {frames} frames, file holds {held}")
    return FileRows(path, offset, 2, frames), rate


def read_mono_int16(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """(all samples, sample rate) of a mono 16-bit PCM WAV (small files: codec tools)."""
    rows, rate = open_mono_int16(path)
    out = np.empty(rows.rows, "<i2")
    rows.read_into(0, out)
    rows.close()
    return out.astype(np.int16, copy=False), rate


def read_wav_stack(paths: list[Path]) -> Recording:
    """One channel per file, all at one sample rate."""
    if not paths:
        raise RecordingError("no WAV files given")
    files: list[FileRows] = []
    rate0 = 0
    for p in paths:
        rows, rate = open_mono_int16(p)
        if rate0 and rate != rate0:
            raise RecordingError(f"{p}: sample rate {rate} Hz differs from {rate0} Hz")
        rate0 = rate
        files.append(rows)
    n = min(f.rows for f in files)
    C = len(files)
    # Small reads (the simulated implant reads one frame, ~1 ms, at a time) are served from a
    # window of about WINDOW_BYTES read ahead: a read costs one preadv per file, so one per
    # frame would be C syscalls per millisecond. Larger reads bypass the window.
    window_rows = max(1, WINDOW_BYTES // (2 * C))
    win = np.empty((0, C), np.int16)
    win_start = 0
    column = np.empty(0, "<i2")

    def read_rows(start: int, stop: int) -> npt.NDArray[np.int16]:
        nonlocal column
        out = np.empty((stop - start, C), np.int16)
        if C == 1:
            files[0].read_into(start, out.reshape(-1).view("<i2"))
            return out
        if column.size < stop - start:
            column = np.empty(stop - start, "<i2")
        for j, f in enumerate(files):
            f.read_into(start, column[: stop - start])
            out[:, j] = column[: stop - start]
        return out

    def reader(start: int, stop: int) -> npt.NDArray[np.int16]:
        nonlocal win, win_start
        if stop - start >= window_rows:
            return read_rows(start, stop)
        if not (win_start <= start and stop <= win_start + win.shape[0]):
            win_start = start
            win = read_rows(start, min(n, start + window_rows))
        return win[start - win_start: stop - win_start].copy()

    name = paths[0].name if C == 1 else f"{paths[0].parent.name} ({C} WAVs)"
    return Recording(name=name, sampling_frequency=float(rate0), num_channels=C,
                     num_samples=n, gain_to_uV=np.full(C, DEFAULT_GAIN_UV), reader=reader,
                     info={"files": [str(p) for p in paths]})
