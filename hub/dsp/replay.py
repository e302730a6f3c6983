"""Replays a recording through the pipeline as fast as it can (``hub replay``)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.kernels import EVENT_DTYPE
from hub.sources import Recording


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    events: npt.NDArray[Any]  # EVENT_DTYPE, every detected spike in order


class Progress:
    """A one-line progress report on a stream, at most every `every` seconds."""

    def __init__(self, label: str, total: float, stream: TextIO | None = sys.stderr,
                 every: float = 1.0) -> None:
        self.label, self.total, self.stream, self.every = label, total, stream, every
        self.start = self.last = time.perf_counter()

    def update(self, done: float, extra: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if self.stream is None or (not force and now - self.last < self.every):
            return
        self.last = now
        pct = 100.0 * done / self.total if self.total else 100.0
        self.stream.write(f"\r{self.label}: {pct:5.1f}% {extra}   ")
        if force:
            self.stream.write("\n")
        self.stream.flush()


def replay(rec: Recording, cfg: PipelineConfig | None = None,
           progress: TextIO | None = sys.stderr) -> ReplayResult:
    cfg = cfg or PipelineConfig()
    pipe = Pipeline(cfg, rec.num_channels, rec.sampling_frequency, rec.channel_positions_um)
    chunks: list[npt.NDArray[Any]] = []
    labelled: list[npt.NDArray[Any]] = []  # snippet events with the sorter's units
    n_snippets = 0
    n_bins = 0
    prog = Progress(f"replay {rec.name}", rec.duration_s, progress)
    wall = 0.0
    for start, block in rec.blocks(pipe.block_samples):
        t = time.perf_counter()
        res = pipe.process(block)
        wall += time.perf_counter() - t
        if res.events.size:
            chunks.append(res.events)
        n_snippets += res.snippet_events.size
        if pipe.sorter is not None and res.snippet_events.size:
            labelled.append(res.snippet_events)
        n_bins += res.bins.index.size
        done = (start + block.shape[0]) / rec.sampling_frequency
        prog.update(done, f"{done:.1f}/{rec.duration_s:.1f} s, "
                          f"{done / wall if wall else 0:.0f}× real time")
    prog.update(rec.duration_s, "done", force=True)
    events = np.concatenate(chunks) if chunks else np.zeros(0, dtype=EVENT_DTYPE)
    if labelled:
        copy_units(events, np.concatenate(labelled))
    C, n = rec.num_channels, rec.num_samples
    per_ch = np.bincount(events["channel"], minlength=C) if events.size else np.zeros(C, int)
    noise = pipe.noise_counts().astype(np.float64)
    samples = n * C
    summary: dict[str, Any] = {
        "recording": rec.name,
        "channels": C,
        "sampling_frequency_hz": rec.sampling_frequency,
        "duration_s": rec.duration_s,
        "samples_processed": samples,
        "wall_seconds": wall,
        "msamples_per_s": samples / wall / 1e6 if wall else None,
        "realtime_factor": rec.duration_s / wall if wall else None,
        "block_samples": pipe.block_samples,
        "band_hz": list(pipe.band_hz),
        "spikes_total": int(events.size),
        "spikes_per_channel": per_ch.tolist(),
        "spike_rate_hz_mean": float(events.size / C / rec.duration_s) if n else 0.0,
        "noise_counts_per_channel": [round(float(v), 3) for v in noise],
        "noise_uV_per_channel": [round(float(v), 3) for v in noise * rec.gain_to_uV],
        "snippets": n_snippets,
        "snippets_dropped": pipe.snippets.dropped,
        "feature_bins": n_bins,
        "clipped_samples": rec.clipped[0],
        "stage_seconds": {k: round(v, 4) for k, v in pipe.times.seconds.items()},
        "config": cfg.to_dict(),
    }
    return ReplayResult(summary, events)


def copy_units(events: npt.NDArray[Any], labelled: npt.NDArray[Any]) -> None:
    """Writes each labelled snippet event's unit onto the same (sample, channel) detected event
    (events are in (sample, channel) order); events without a snippet keep −1."""
    width = int(max(events["channel"].max(initial=0), labelled["channel"].max(initial=0))) + 1
    keys = events["sample"] * width + events["channel"]
    lk = labelled["sample"] * width + labelled["channel"]
    i = np.minimum(np.searchsorted(keys, lk), max(keys.size - 1, 0))
    hit = keys[i] == lk if keys.size else np.zeros(lk.size, bool)
    events["unit"][i[hit]] = labelled["unit"][hit]


def save_events(path: Path, events: npt.NDArray[Any], fs: float) -> None:
    """Every detected spike as numpy arrays (sample index, channel, amplitude, unit)."""
    np.savez(path, sample_index=events["sample"], channel=events["channel"],
             amplitude=events["amplitude"], unit=events["unit"], threshold=events["threshold"],
             sampling_frequency=np.float64(fs))
