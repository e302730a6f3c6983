"""Replays a recording through the pipeline as fast as it can (``hub replay``), streaming.

Memory is bounded independent of the recording's length: the recording is read one block at a
time (hub.sources), per-channel counts are kept incrementally, and detected spikes go to a sink
as soon as their unit labels are final (the sorter labels a spike when its snippet completes,
a few blocks later) — ``EventsFile`` writes them to disk and builds the ``.npz`` at the end
without holding them all. Without a sink, ``replay`` collects them in memory (library use).

The default reference (``reference="auto"``, see :func:`choose_reference`) is none where a
common reference would remove the signal: fewer than ``MIN_REFERENCE_CHANNELS`` channels, or a
stack of separate WAV files (nothing says they were recorded at the same time).
"""

from __future__ import annotations

import logging
import queue
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO, TypeVar

import numpy as np
import numpy.typing as npt

from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.kernels import EVENT_DTYPE
from hub.sources import Recording

log = logging.getLogger(__name__)

#: Below this many channels a median/average reference is dominated by each channel's own
#: signal (one channel: it is the signal; two: half of each spike is subtracted from the other).
MIN_REFERENCE_CHANNELS = 8

EventSink = Callable[[npt.NDArray[Any]], None]
T = TypeVar("T")


def choose_reference(rec: Recording, requested: str = "auto") -> tuple[str, str]:
    """(reference to use, why): ``auto`` → the pipeline's default reference (robust) for a
    simultaneous recording of at least MIN_REFERENCE_CHANNELS channels, else "none". An
    explicit robust/median/average where auto would say none is honoured with a warning."""
    files = rec.info.get("files") or []
    if rec.num_channels < MIN_REFERENCE_CHANNELS:
        unsafe = (f"{rec.num_channels} channel(s) (a common reference needs ≥ "
                  f"{MIN_REFERENCE_CHANNELS}: below that it removes the spikes themselves)")
    elif len(files) > 1:
        unsafe = (f"a stack of {len(files)} separate WAV files (not known to be simultaneous: "
                  "a common reference would mix unrelated signals)")
    else:
        unsafe = ""
    if requested == "auto":
        if unsafe:
            return "none", f"no common reference: {unsafe}; --reference robust forces one"
        ref = PipelineConfig.reference
        return ref, f"{ref} reference over {rec.num_channels} channels"
    if unsafe and requested != "none":
        log.warning("%s reference forced on %s", requested, unsafe)
        return requested, f"{requested} reference forced on {unsafe}"
    return requested, f"{requested} reference (as asked)"


@dataclass
class ReplayResult:
    summary: dict[str, Any]
    events: npt.NDArray[Any]  # EVENT_DTYPE, every detected spike in order (empty with a sink)


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


class UnitLabeller:
    """Holds detected events until no snippet label can still arrive for them (``lag``
    samples), writes the sorter's units onto them, then passes them to ``sink`` in order."""

    def __init__(self, sink: EventSink, lag: int) -> None:
        self.sink, self.lag = sink, lag
        self._pending: deque[npt.NDArray[Any]] = deque()
        self.unmatched = 0           # labels whose event was already passed on (or absent)

    def events(self, ev: npt.NDArray[Any]) -> None:
        if ev.size:
            self._pending.append(ev.copy())

    def labels(self, labelled: npt.NDArray[Any]) -> None:
        hit = np.zeros(labelled.size, bool)
        for ev in self._pending:
            inside = (labelled["sample"] >= ev["sample"][0]) & \
                     (labelled["sample"] <= ev["sample"][-1])
            if inside.any():
                hit[inside] |= copy_units(ev, labelled[inside])
        self.unmatched += int((~hit).sum())

    def flush(self, now: int | None = None) -> None:
        """Passes on every event older than ``now − lag`` (all, with None)."""
        while self._pending and (now is None or self._pending[0]["sample"][-1] < now - self.lag):
            self.sink(self._pending.popleft())


def read_ahead(blocks: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``blocks`` read by a thread up to ``depth`` items ahead (memory: depth + 1 blocks), so
    reading the next block overlaps processing this one (file reads and the C kernels both run
    without the GIL). A reader error is raised here, in order."""
    q: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def reader() -> None:
        try:
            for item in blocks:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((False, None))
        except BaseException as e:  # handed to the consumer, which raises it
            q.put((False, e))

    t = threading.Thread(target=reader, name="replay-read-ahead", daemon=True)
    t.start()
    try:
        while True:
            more, item = q.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item
    finally:
        stop.set()
        t.join()


def replay(rec: Recording, cfg: PipelineConfig | None = None,
           progress: TextIO | None = sys.stderr, sink: EventSink | None = None) -> ReplayResult:
    """Runs ``rec`` through the pipeline. Detected spikes go to ``sink`` (in order, units
    final), or are returned in the result when there is none."""
    cfg = cfg or PipelineConfig()
    pipe = Pipeline(cfg, rec.num_channels, rec.sampling_frequency, rec.channel_positions_um)
    C, fs = rec.num_channels, rec.sampling_frequency
    kept: list[npt.NDArray[Any]] = []
    per_ch = np.zeros(C, np.int64)

    def count(ev: npt.NDArray[Any]) -> None:
        per_ch[:] += np.bincount(ev["channel"], minlength=C)[:C]
        if sink is None:
            kept.append(ev)
        else:
            sink(ev)

    lag = pipe.block_samples * 2 + cfg.snippet_pre + cfg.snippet_post + round(fs)
    labeller = UnitLabeller(count, lag)
    n_snippets = n_bins = 0
    prog = Progress(f"replay {rec.name}", rec.duration_s, progress)
    wall = 0.0
    t_loop = time.perf_counter()
    for start, block in read_ahead(rec.blocks(pipe.block_samples)):
        t = time.perf_counter()
        res = pipe.process(block)
        wall += time.perf_counter() - t
        labeller.events(res.events)
        n_snippets += res.snippet_events.size
        if pipe.sorter is not None and res.snippet_events.size:
            labeller.labels(res.snippet_events)
        labeller.flush(start + block.shape[0])
        n_bins += res.bins.index.size
        done = (start + block.shape[0]) / fs
        prog.update(done, f"{done:.1f}/{rec.duration_s:.1f} s, "
                          f"{done / wall if wall else 0:.0f}× real time")
    labeller.flush()
    loop = time.perf_counter() - t_loop
    prog.update(rec.duration_s, "done", force=True)
    events = np.concatenate(kept) if kept else np.zeros(0, dtype=EVENT_DTYPE)
    n_spikes = int(per_ch.sum())
    noise = pipe.noise_counts().astype(np.float64)
    samples = rec.num_samples * C
    summary: dict[str, Any] = {
        "recording": rec.name,
        "channels": C,
        "sampling_frequency_hz": fs,
        "duration_s": rec.duration_s,
        "samples_processed": samples,
        "wall_seconds": wall,
        "msamples_per_s": samples / wall / 1e6 if wall else None,
        "realtime_factor": rec.duration_s / wall if wall else None,
        "loop_seconds": loop,
        "loop_msamples_per_s": samples / loop / 1e6 if loop else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "block_samples": pipe.block_samples,
        "band_hz": list(pipe.band_hz),
        "reference": cfg.reference,
        "spikes_total": n_spikes,
        "spikes_per_channel": per_ch.tolist(),
        "spike_rate_hz_mean": float(n_spikes / C / rec.duration_s) if rec.num_samples else 0.0,
        "noise_counts_per_channel": [round(float(v), 3) for v in noise],
        "noise_uV_per_channel": [round(float(v), 3) for v in noise * rec.gain_to_uV],
        "snippets": n_snippets,
        "snippets_dropped": pipe.snippets.dropped,
        "unit_labels_unmatched": labeller.unmatched,
        "feature_bins": n_bins,
        "clipped_samples": rec.clipped[0],
        "stage_seconds": {k: round(v, 4) for k, v in pipe.times.seconds.items()},
        "config": cfg.to_dict(),
    }
    return ReplayResult(summary, events)


def copy_units(events: npt.NDArray[Any], labelled: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Writes each labelled snippet event's unit onto the same (sample, channel) detected event
    (events are in (sample, channel) order); events without a snippet keep −1. Returns which
    labelled events found their event."""
    width = int(max(events["channel"].max(initial=0), labelled["channel"].max(initial=0))) + 1
    keys = events["sample"] * width + events["channel"]
    lk = labelled["sample"] * width + labelled["channel"]
    i = np.minimum(np.searchsorted(keys, lk), max(keys.size - 1, 0))
    hit: npt.NDArray[np.bool_] = keys[i] == lk if keys.size else np.zeros(lk.size, bool)
    events["unit"][i[hit]] = labelled["unit"][hit]
    return hit


def save_events(path: Path, events: npt.NDArray[Any], fs: float) -> None:
    """Every detected spike as numpy arrays (sample index, channel, amplitude, unit)."""
    with EventsFile(path, fs) as f:
        f(events)


class EventsFile:
    """An event sink that writes ``path`` (.npz: sample_index, channel, amplitude, unit,
    threshold, sampling_frequency — ``np.load`` reads it) with memory bounded by one chunk:
    events are appended to a scratch file beside ``path``, and each column is copied from it
    into the archive on ``close``."""

    FIELDS: ClassVar[dict[str, str]] = {
        "sample_index": "sample", "channel": "channel", "amplitude": "amplitude",
        "unit": "unit", "threshold": "threshold"}
    CHUNK: ClassVar[int] = 1 << 16

    def __init__(self, path: Path, fs: float) -> None:
        self.path, self.fs = path, fs
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._scratch_path = path.with_name(path.name + ".events.tmp")
        self._scratch = self._scratch_path.open("wb")
        self.count = 0

    def __call__(self, events: npt.NDArray[Any]) -> None:
        self._scratch.write(np.ascontiguousarray(events, EVENT_DTYPE).tobytes())
        self.count += events.size

    def __enter__(self) -> EventsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        import zipfile

        from numpy.lib import format as npf

        if self._scratch.closed:
            return
        self._scratch.close()
        try:
            with zipfile.ZipFile(self.path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
                for name, col in self.FIELDS.items():
                    dt = EVENT_DTYPE.fields[col][0]       # type: ignore[index]
                    with z.open(f"{name}.npy", "w", force_zip64=True) as f:
                        npf.write_array_header_2_0(f, {"descr": npf.dtype_to_descr(dt),
                                                       "fortran_order": False,
                                                       "shape": (self.count,)})
                        for off in range(0, self.count, self.CHUNK):
                            part = np.fromfile(self._scratch_path, EVENT_DTYPE,
                                               min(self.CHUNK, self.count - off),
                                               offset=off * EVENT_DTYPE.itemsize)
                            f.write(np.ascontiguousarray(part[col]).tobytes())
                with z.open("sampling_frequency.npy", "w") as f:
                    npf.write_array(f, np.asarray(self.fs, np.float64))
        finally:
            self._scratch_path.unlink(missing_ok=True)
