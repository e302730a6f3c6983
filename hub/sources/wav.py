"""Mono int16 WAV files; several are stacked as channels (truncated to the shortest)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hub.sources.base import Recording, RecordingError

#: Neuralink N1 data has no published µV scale; 1 count is reported as 1 (arbitrary) unit.
DEFAULT_GAIN_UV = 1.0


def read_mono_int16(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """(samples, sample rate) of a mono 16-bit PCM WAV; anything else is a RecordingError."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                raise RecordingError(
                    f"{path}: want mono 16-bit PCM, got {w.getnchannels()} channel(s), "
                    f"{8 * w.getsampwidth()}-bit, {w.getcomptype()}")
            frames, rate = w.getnframes(), w.getframerate()
            raw = w.readframes(frames)
    except (wave.Error, EOFError) as e:
        raise RecordingError(f"{path}: not a readable WAV file ({e})") from e
    if len(raw) != 2 * frames:
        raise RecordingError(
            f"{path}: truncated: header announces {frames} frames, file holds {len(raw) // 2}")
    return np.frombuffer(raw, dtype="<i2").astype(np.int16), rate


def read_wav_stack(paths: list[Path]) -> Recording:
    """One channel per file, all at one sample rate."""
    if not paths:
        raise RecordingError("no WAV files given")
    columns: list[npt.NDArray[np.int16]] = []
    rate0 = 0
    for p in paths:
        x, rate = read_mono_int16(p)
        if rate0 and rate != rate0:
            raise RecordingError(f"{p}: sample rate {rate} Hz differs from {rate0} Hz")
        rate0 = rate
        columns.append(x)
    n = min(x.shape[0] for x in columns)
    data = np.stack([x[:n] for x in columns], axis=1)  # (n, C), sample-major
    C = len(columns)

    def reader(start: int, stop: int) -> npt.NDArray[np.int16]:
        return np.ascontiguousarray(data[start:stop])

    name = paths[0].name if C == 1 else f"{paths[0].parent.name} ({C} WAVs)"
    return Recording(name=name, sampling_frequency=float(rate0), num_channels=C,
                     num_samples=n, gain_to_uV=np.full(C, DEFAULT_GAIN_UV), reader=reader,
                     info={"files": [str(p) for p in paths]})
