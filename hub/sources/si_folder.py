"""SpikeInterface binary folders (``recording.save(folder=...)``), read without SpikeInterface.

Layout: ``binary.json`` (kwargs: file_paths, sampling_frequency, num_channels, dtype, time_axis,
file_offset, gain_to_uV), ``traces_cached_seg0.raw`` and ``probegroup.json`` (probeinterface:
contact_positions, device_channel_indices). int16 data is read as is. Float data (µV, as the
ground-truth generators write) is quantised like an Intan RHD front end: 0.195 µV per count,
clipped to int16 (clipped samples are counted in ``Recording.clipped``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.dsp.geometry import ProbeError, positions_from_probegroup
from hub.sources.base import FileRows, Recording, RecordingError

FLOAT_LSB_UV = 0.195  # Intan RHD2000 ADC step



def quantise_float_rows(rows: npt.ArrayLike, scale: npt.NDArray[np.float64], start: int,
                        where: str, clipped: list[int]) -> npt.NDArray[np.int16]:
    """Float rows (samples × channels, from row ``start``) → int16 at ``scale`` counts per
    unit: a non-finite sample is refused with its place (a missing sample is not a zero);
    values beyond int16 are clipped and counted in ``clipped[0]``."""
    x = np.asarray(rows, dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise RecordingError(
            f"{where}: sample {start + int(t)} of channel {int(c)} is {x[t, c]} "
            f"({int(bad.sum())} non-finite value(s) in rows {start}–{start + len(x)}); the hub "
            "reads only finite samples")
    q = np.rint(x * scale)
    over = np.abs(q) > 32767
    if over.any():
        clipped[0] += int(over.sum())
        np.clip(q, -32768, 32767, out=q)
    return np.ascontiguousarray(q.astype(np.int16))


def _load_json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecordingError(f"{path}: unreadable ({e})") from e
    if not isinstance(d, dict):
        raise RecordingError(f"{path}: top level must be an object")
    return d


def _positions(folder: Path, C: int) -> npt.NDArray[np.float64] | None:
    pg = folder / "probegroup.json"
    if not pg.exists():
        return None
    try:
        return positions_from_probegroup(_load_json(pg), C)
    except ProbeError as e:
        raise RecordingError(f"{pg}: {e}") from e


def read_si_binary_folder(folder: Path) -> Recording:
    meta_path = folder / "binary.json"
    if not meta_path.exists():
        raise RecordingError(f"{folder}: no binary.json (not a SpikeInterface binary folder)")
    kw = _load_json(meta_path).get("kwargs", {})
    try:
        files = kw["file_paths"]
        fs = float(kw["sampling_frequency"])
        C = int(kw["num_channels"])
        dtype = np.dtype(kw["dtype"])
    except (KeyError, TypeError, ValueError) as e:
        raise RecordingError(f"{meta_path}: missing or bad key ({e})") from e
    if len(files) != 1:
        raise RecordingError(f"{meta_path}: {len(files)} segments; only one is supported")
    if kw.get("time_axis", 0) != 0:
        raise RecordingError(f"{meta_path}: time_axis must be 0 (sample-major)")
    path = folder / files[0]
    offset = int(kw.get("file_offset", 0) or 0)
    size = path.stat().st_size - offset if path.exists() else -1
    if size < 0:
        raise RecordingError(f"{path}: data file missing")
    frame = dtype.itemsize * C
    if size % frame:
        raise RecordingError(f"{path}: {size} bytes is not a whole number of {C}-channel frames")
    n = size // frame
    rows = FileRows(path, offset, frame, n)

    def data(start: int, stop: int) -> npt.NDArray[Any]:
        out = np.empty((stop - start, C), dtype)
        rows.read_into(start, out)
        return out

    gains = np.asarray(kw.get("gain_to_uV") or [1.0] * C, dtype=np.float64)
    clipped = [0]
    if dtype == np.int16:
        def reader(start: int, stop: int) -> npt.NDArray[np.int16]:
            return data(start, stop).astype(np.int16, copy=False)
        out_gain = gains
    elif dtype.kind == "f":
        scale = gains / FLOAT_LSB_UV

        def reader(start: int, stop: int) -> npt.NDArray[np.int16]:
            return quantise_float_rows(data(start, stop), scale, start, str(path), clipped)
        out_gain = np.full(C, FLOAT_LSB_UV)
    else:
        raise RecordingError(f"{meta_path}: dtype {dtype} not supported (int16 or float)")
    return Recording(name=folder.name, sampling_frequency=fs, num_channels=C, num_samples=n,
                     gain_to_uV=out_gain, reader=reader, channel_positions_um=_positions(folder, C),
                     clipped=clipped, info={"source_dtype": str(dtype)})
