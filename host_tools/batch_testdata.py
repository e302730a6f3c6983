"""Small seeded recordings in every raw format a batch reads, from SpikeInterface's
ground-truth generator (tests and ``bench/bench_batch.py``). Samples are int16 at 0.195 µV per
count (an Intan front end), as a lab's recordings are."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from hub.sources.raw import write_raw

LSB_UV = 0.195
FORMATS = ("si_folder", "raw", "wav_stack", "nwb")


def generate_int16(seed: int, seconds: float, channels: int, units: int,
                   fs: float = 30000.0) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float64]]:
    """(samples (n, C) int16, contact positions (C, 2) µm) of a ground-truth recording."""
    import spikeinterface.core as si

    rec, _ = si.generate_ground_truth_recording(
        durations=[seconds], sampling_frequency=fs, num_channels=channels, num_units=units,
        generate_sorting_kwargs=dict(firing_rates=(4.0, 12.0), refractory_period_ms=4.0),
        generate_unit_locations_kwargs=dict(margin_um=10.0, minimum_z=5.0, maximum_z=40.0,
                                            minimum_distance=18.0, max_iteration=100),
        generate_templates_kwargs=dict(unit_params=dict(alpha=(100.0, 250.0))),
        noise_kwargs=dict(noise_levels=5.0, strategy="on_the_fly"), seed=seed)
    x = np.rint(rec.get_traces() / LSB_UV)
    return np.clip(x, -32768, 32767).astype(np.int16), \
        np.asarray(rec.get_channel_locations(), np.float64)[:, :2]


def write_recording(path: Path, fmt: str, x: npt.NDArray[np.int16],
                    pos: npt.NDArray[np.float64], fs: float = 30000.0) -> Path:
    """Writes samples in one format; returns the recording's path (folder or .bin)."""
    if fmt == "raw":
        path.parent.mkdir(parents=True, exist_ok=True)
        bin_path = path.with_suffix(".bin")
        write_raw(bin_path, x, fs, LSB_UV, pos.tolist())
        return bin_path
    if fmt == "wav_stack":
        path.mkdir(parents=True, exist_ok=True)
        for c in range(x.shape[1]):
            with wave.open(str(path / f"ch{c:03d}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(round(fs))
                w.writeframes(np.ascontiguousarray(x[:, c]).astype("<i2").tobytes())
        return path
    if fmt == "si_folder":
        import spikeinterface.core as si

        rec = si.NumpyRecording([x], fs)
        rec.set_channel_gains(LSB_UV)
        rec.set_channel_offsets(0.0)
        rec.set_dummy_probe_from_locations(pos)
        rec.save(folder=path, overwrite=True, n_jobs=1, progress_bar=False)
        return path
    if fmt == "nwb":
        return write_nwb(path.with_suffix(".nwb"), x, pos, fs)
    raise ValueError(f"unknown format {fmt!r} (want one of {FORMATS})")


def write_nwb(path: Path, x: npt.NDArray[np.int16], pos: npt.NDArray[np.float64],
              fs: float = 30000.0) -> Path:
    """An NWB file with the samples as its one raw ElectricalSeries (int16, conversion to V)
    and the contact positions in the electrodes table (rel_x, rel_y)."""
    from datetime import UTC, datetime

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.ecephys import ElectricalSeries

    nwb = NWBFile(session_description="generated ground truth (hubctl batch test data)",
                  identifier=path.stem, session_start_time=datetime(2026, 1, 1, tzinfo=UTC))
    group = nwb.create_electrode_group("probe", description="generated", location="unknown",
                                       device=nwb.create_device("generator"))
    for c in range(x.shape[1]):
        nwb.add_electrode(rel_x=float(pos[c, 0]), rel_y=float(pos[c, 1]), group=group,
                          location="unknown")
    region = nwb.create_electrode_table_region(list(range(x.shape[1])), "all channels")
    nwb.add_acquisition(ElectricalSeries(name="ElectricalSeries", data=x, electrodes=region,
                                         rate=fs, conversion=LSB_UV * 1e-6))
    path.parent.mkdir(parents=True, exist_ok=True)
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path


def make_batch(folder: Path, n: int, seconds: float = 3.0, channels: int = 8, units: int = 4,
               first_seed: int = 100, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """`n` recordings rec00, rec01, … cycling through `formats`, seeds first_seed + i."""
    out = []
    for i in range(n):
        x, pos = generate_int16(first_seed + i, seconds, channels, units)
        out.append(write_recording(folder / f"rec{i:02d}", formats[i % len(formats)], x, pos))
    return out
