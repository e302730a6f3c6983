"""NAME.bin (interleaved little-endian int16, sample-major) beside NAME.json.

The sidecar needs ``sampling_frequency``, ``num_channels`` and ``gain_to_uV`` (one number or one
per channel); ``channel_positions_um`` ([[x, y], …]) is optional; ``num_samples`` and ``dtype``,
when present, must agree with the file. Unknown keys are ignored.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.sources.base import FileRows, Recording, RecordingError


def _key(meta: dict[str, Any], key: str, path: Path) -> Any:
    if key not in meta:
        raise RecordingError(f"{path}: missing key {key!r}")
    return meta[key]


def read_raw(bin_path: Path) -> Recording:
    json_path = bin_path.with_suffix(".json")
    if not bin_path.exists():
        raise RecordingError(f"{bin_path}: no such file")
    if not json_path.exists():
        raise RecordingError(f"{json_path}: sidecar missing for {bin_path.name}")
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as e:
        raise RecordingError(f"{json_path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise RecordingError(f"{json_path}: top level must be an object")
    fs = _key(meta, "sampling_frequency", json_path)
    C = _key(meta, "num_channels", json_path)
    gain = _key(meta, "gain_to_uV", json_path)
    if not isinstance(fs, int | float) or isinstance(fs, bool) or not math.isfinite(fs) or fs <= 0:
        raise RecordingError(f"{json_path}: key 'sampling_frequency' must be a number > 0")
    if not isinstance(C, int) or isinstance(C, bool) or C < 1:
        raise RecordingError(f"{json_path}: key 'num_channels' must be an integer ≥ 1")
    if meta.get("dtype", "int16") not in ("int16", "<i2", "i2"):
        raise RecordingError(f"{json_path}: key 'dtype' is {meta['dtype']!r}; only int16 is read")
    gains = np.asarray(gain, dtype=np.float64)
    if gains.ndim == 0:
        gains = np.full(C, float(gains))
    if gains.shape != (C,) or not np.all(np.isfinite(gains)) or np.any(gains <= 0):
        raise RecordingError(
            f"{json_path}: key 'gain_to_uV' must be a positive number or {C} positive numbers")
    size = bin_path.stat().st_size
    if size % (2 * C):
        raise RecordingError(
            f"{bin_path}: {size} bytes is not a whole number of {C}-channel int16 frames "
            "(truncated file, or 'num_channels' is wrong)")
    n = size // (2 * C)
    if "num_samples" in meta and meta["num_samples"] != n:
        raise RecordingError(
            f"{json_path}: key 'num_samples' says {meta['num_samples']} but the file holds {n}")
    pos = None
    if "channel_positions_um" in meta:
        try:
            pos = np.asarray(meta["channel_positions_um"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise RecordingError(f"{json_path}: key 'channel_positions_um' is malformed") from e
        if pos.shape != (C, 2):
            raise RecordingError(
                f"{json_path}: key 'channel_positions_um' must hold {C} [x, y] pairs")
    rows = FileRows(bin_path, 0, 2 * C, n)

    def reader(start: int, stop: int) -> npt.NDArray[np.int16]:
        out = np.empty((stop - start, C), "<i2")
        rows.read_into(start, out)
        return out.astype(np.int16, copy=False)

    return Recording(name=bin_path.stem, sampling_frequency=float(fs), num_channels=C,
                     num_samples=n, gain_to_uV=gains, reader=reader, channel_positions_um=pos)


def write_raw(bin_path: Path, data: npt.NDArray[np.int16], sampling_frequency: float,
              gain_to_uV: float, channel_positions_um: list[list[float]] | None = None) -> None:
    """Writes NAME.bin + NAME.json (the inverse of read_raw)."""
    arr = np.ascontiguousarray(data, dtype="<i2")
    bin_path.write_bytes(arr.tobytes())
    meta: dict[str, Any] = {"sampling_frequency": sampling_frequency,
                            "num_channels": int(arr.shape[1]), "gain_to_uV": gain_to_uV,
                            "num_samples": int(arr.shape[0]), "dtype": "int16"}
    if channel_positions_um is not None:
        meta["channel_positions_um"] = channel_positions_um
    bin_path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
