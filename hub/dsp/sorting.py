"""Online sorting on the hub: the templates file (the "load templates" command's payload) and a
causal, block-by-block runner over a recording.

Templates file (``.npz``, numpy only, no pickles), version 2 — one array per field of the
command, so the wire message maps onto it 1:1:

    format               str   "implant-hub-templates"
    version              int32 2 (version 1 files, without `noise`, still load)
    sampling_frequency   float64  Hz of the recording the templates came from
    n_channels           int32 C
    pre, post            int32    samples before / from the peak (the hub's snippet_pre / _post)
    unit_ids             int32 [U]          ids the hub reports for these units (≥ 0, unique)
    templates            float32 [U][C][L]  mean filtered waveform in hub counts (after the hub's
                                            own band-pass and reference), peak of the largest
                                            channel at index `pre`
    basis                float32 [D][L]     per-channel feature basis (D = 0: none)
    spike_counts         int32 [U]          calibration spikes behind each template (info)
    sorter               str   the offline sorter used (info)
    noise                float32 [C] or [0] σ per channel (hub counts) the hub's detector had
                                            at the end of the calibration segment; a pipeline
                                            with SorterConfig.seed_noise starts from it instead
                                            of a noise warm-up (version 2; absent or [0]: none)
"""

from __future__ import annotations

import logging
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.kernels.sorter import LABEL, MERGE, SORT_EVENT_DTYPE
from hub.sources import Recording

log = logging.getLogger(__name__)

FORMAT = "implant-hub-templates"
VERSION = 2
#: versions this hub reads (1: before `noise`)
READS = (1, 2)
MAX_UNITS = 1024


class TemplateError(ValueError):
    """A templates file or message is malformed or does not fit the hub's configuration."""


@dataclass
class TemplateSet:
    """What the host hands the hub for calibrated sorting (see the module docstring)."""

    sampling_frequency: float
    pre: int
    post: int
    unit_ids: npt.NDArray[np.int32]
    templates: npt.NDArray[np.float32]          # (U, C, L)
    basis: npt.NDArray[np.float32]              # (D, L), D may be 0
    spike_counts: npt.NDArray[np.int32] = field(
        default_factory=lambda: np.zeros(0, np.int32))
    sorter: str = ""
    noise: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros(0, np.float32))

    @property
    def n_channels(self) -> int:
        return int(self.templates.shape[1])

    def validate(self, n_channels: int | None = None, fs: float | None = None,
                 pre: int | None = None, post: int | None = None,
                 max_units: int = MAX_UNITS) -> None:
        """Raises TemplateError naming the first problem; checks the whole set."""
        t, ids, b = self.templates, self.unit_ids, self.basis
        L = self.pre + self.post
        if self.pre < 0 or self.post < 1:
            raise TemplateError(f"pre={self.pre}, post={self.post}: need pre ≥ 0 and post ≥ 1")
        if t.ndim != 3 or t.shape[2] != L:
            raise TemplateError(f"templates must have shape (units, channels, {L}), got {t.shape}")
        if ids.ndim != 1 or ids.size != t.shape[0]:
            raise TemplateError(f"unit_ids has shape {ids.shape} for {t.shape[0]} templates")
        if t.shape[0] > max_units:
            raise TemplateError(f"too many units: {t.shape[0]} (at most {max_units})")
        if ids.size and (ids.min() < 0 or np.unique(ids).size != ids.size):
            raise TemplateError("unit_ids must be unique and ≥ 0")
        if not np.isfinite(t).all():
            bad = sorted({int(u) for u in np.nonzero(~np.isfinite(t))[0]})
            raise TemplateError(f"templates hold NaN or infinite values (units at rows {bad})")
        if t.size and (np.abs(t).max(axis=(1, 2)) == 0).any():
            raise TemplateError("a template is all zeros")
        if b.ndim != 2 or (b.size and b.shape[1] != L) or b.shape[0] > L:
            raise TemplateError(f"basis must have shape (D ≤ {L}, {L}), got {b.shape}")
        if not np.isfinite(b).all():
            raise TemplateError("basis holds NaN or infinite values")
        z = self.noise
        if z.size and (z.ndim != 1 or z.size != t.shape[1]):
            raise TemplateError(f"noise must have one σ per channel ({t.shape[1]}), "
                                f"got shape {z.shape}")
        if z.size and not (np.isfinite(z).all() and (z > 0).all()):
            raise TemplateError("noise must be finite and > 0 on every channel")
        if n_channels is not None and t.shape[1] != n_channels:
            raise TemplateError(f"templates are for {t.shape[1]} channels, "
                                f"the recording has {n_channels}")
        if fs is not None and abs(self.sampling_frequency - fs) > 1e-6 * fs:
            raise TemplateError(f"templates are at {self.sampling_frequency} Hz, "
                                f"the recording at {fs} Hz")
        if pre is not None and post is not None and (self.pre, self.post) != (pre, post):
            raise TemplateError(f"templates span pre={self.pre}, post={self.post} samples; "
                                f"the hub's snippets pre={pre}, post={post}")

    def save(self, path: Path) -> None:
        self.validate()
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez(fh, format=np.str_(FORMAT), version=np.int32(VERSION),
                     sampling_frequency=np.float64(self.sampling_frequency),
                     n_channels=np.int32(self.n_channels), pre=np.int32(self.pre),
                     post=np.int32(self.post), unit_ids=self.unit_ids.astype(np.int32),
                     templates=self.templates.astype(np.float32),
                     basis=self.basis.astype(np.float32),
                     spike_counts=self.spike_counts.astype(np.int32), sorter=np.str_(self.sorter),
                     noise=self.noise.astype(np.float32))

    @classmethod
    def load(cls, path: Path) -> TemplateSet:
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as e:
            raise TemplateError(f"{path}: not a templates file ({e or type(e).__name__})") from e
        try:
            return cls._read(z, path)
        except TemplateError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error,
                RuntimeError) as e:   # zipfile: a damaged entry "encrypted" / of no known method
            raise TemplateError(f"{path}: damaged templates file ({e or type(e).__name__})") \
                from e

    @classmethod
    def _read(cls, z: Any, path: Path) -> TemplateSet:
        with z:
            need = ("format", "version", "sampling_frequency", "n_channels", "pre", "post",
                    "unit_ids", "templates", "basis")
            missing = [k for k in need if k not in z.files]
            if missing:
                raise TemplateError(f"{path}: missing fields {missing}")
            if str(z["format"]) != FORMAT:
                raise TemplateError(f"{path}: format {str(z['format'])!r}, want {FORMAT!r}")
            if int(z["version"]) not in READS:
                raise TemplateError(f"{path}: version {int(z['version'])}, this hub reads "
                                    f"{', '.join(map(str, READS))}")
            ts = cls(float(z["sampling_frequency"]), int(z["pre"]), int(z["post"]),
                     np.asarray(z["unit_ids"]), np.asarray(z["templates"]),
                     np.asarray(z["basis"]),
                     np.asarray(z["spike_counts"]) if "spike_counts" in z.files
                     else np.zeros(0, np.int32),
                     str(z["sorter"]) if "sorter" in z.files else "",
                     np.asarray(z["noise"]) if "noise" in z.files
                     else np.zeros(0, np.float32))
            if ts.templates.ndim == 3 and ts.templates.shape[1] != int(z["n_channels"]):
                raise TemplateError(f"{path}: n_channels={int(z['n_channels'])} but templates "
                                    f"have {ts.templates.shape[1]} channels")
        if ts.templates.dtype.kind != "f" or ts.basis.dtype.kind != "f":
            raise TemplateError(f"{path}: templates and basis must be floating point")
        if ts.unit_ids.dtype.kind not in "iu":
            raise TemplateError(f"{path}: unit_ids must be integers")
        if ts.noise.dtype.kind != "f":
            raise TemplateError(f"{path}: noise must be floating point")
        ts.unit_ids = ts.unit_ids.astype(np.int32)
        ts.noise = ts.noise.astype(np.float32).reshape(-1)
        ts.templates = ts.templates.astype(np.float32)
        ts.basis = ts.basis.astype(np.float32).reshape(-1, ts.pre + ts.post) \
            if ts.basis.size else np.zeros((0, ts.pre + ts.post), np.float32)
        ts.validate()
        return ts


def load_templates(pipe: Pipeline, ts: TemplateSet) -> None:
    """Validates `ts` against the pipeline and hands it to its sorter (rejected whole)."""
    if pipe.sorter is None:
        raise TemplateError("the pipeline does not sort (PipelineConfig.sort is off)")
    ts.validate(pipe.n_channels, pipe.fs, pipe.cfg.snippet_pre, pipe.cfg.snippet_post,
                pipe.cfg.sort_settings.max_units)
    pipe.sorter.load_templates(ts.unit_ids, ts.templates, ts.basis if ts.basis.size else None)
    if pipe.cfg.sort_settings.seed_noise and ts.noise.size and pipe.next_sample == 0:
        pipe.seed_noise(ts.noise)


#: a loaded unit fits when it took at least this share of its peak channel's spikes …
FIT_MIN_SHARE = 0.02
#: … with a mean noise-normalised distance δ below this (≈ 1 for a template that fits)
FIT_MAX_DELTA = 3.0


def unfit_units(fit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The loaded units whose templates do not fit the signal (Sorter.fit() rows), each with a
    reason: none or too few of its channel's spikes matched, or matched only loosely."""
    bad = []
    for r in fit:
        if r["channel_spikes"] == 0:
            continue                     # nothing seen on its channel yet: undecided
        share = r["spikes"] / r["channel_spikes"]
        if share < FIT_MIN_SHARE:
            bad.append({**r, "reason": f"took {r['spikes']} of the {r['channel_spikes']} "
                                       f"spikes on channel {r['channel']}"})
        elif r["mean_delta"] > FIT_MAX_DELTA:
            bad.append({**r, "reason": f"matched loosely (mean δ {r['mean_delta']:.2f})"})
    return bad


def resolve_merges(units: npt.NDArray[np.int32],
                   sort_events: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    """Labels after applying every MERGE (absorbed id → surviving id), as a host would."""
    parent: dict[int, int] = {}
    for e in sort_events[sort_events["kind"] == MERGE]:
        parent[int(e["other"])] = int(e["unit"])

    def root(u: int) -> int:
        seen = 0
        while u in parent and seen < len(parent):
            u = parent[u]
            seen += 1
        return u

    out = units.copy()
    for u in np.unique(units[units >= 0]):
        r = root(int(u))
        if r != u:
            out[units == u] = r
    return out


def apply_late_labels(samples: npt.NDArray[np.int64], channels: npt.NDArray[np.int32],
                      units: npt.NDArray[np.int32],
                      sort_events: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    """Labels with every NK_SORT_LABEL applied (SorterConfig.late_labels): the spike at that
    (sample, channel) takes the event's unit (it was left unlabelled, or labelled online only
    as an outlier near another unit). Events naming no spike here are ignored."""
    out = units.copy()
    lab = sort_events[sort_events["kind"] == LABEL]
    if not lab.size or not samples.size:
        return out
    c = np.int64(max(int(channels.max()), int(lab["channel"].max())) + 1)
    key = samples.astype(np.int64) * c + channels
    order = np.argsort(key, kind="stable")
    want = lab["sample"].astype(np.int64) * c + lab["channel"]
    pos = np.clip(np.searchsorted(key[order], want), 0, key.size - 1)
    hit = key[order][pos] == want
    out[order[pos[hit]]] = lab["unit"][hit]
    return out


@dataclass
class SortResult:
    samples: npt.NDArray[np.int64]     # peak sample of every sorted spike
    channels: npt.NDArray[np.int32]
    units: npt.NDArray[np.int32]       # as labelled online (−1: unsorted)
    final_units: npt.NDArray[np.int32]  # after the late labels and merges reported later
    sort_events: npt.NDArray[Any]
    stats: dict[str, Any]
    peeled: npt.NDArray[np.bool_]      # spike found by peel (a second spike in an event)
    clusters: dict[str, npt.NDArray[Any]]  # the sorter's cluster table at the end
    neighbors: npt.NDArray[np.int32]   # (channels, neighbours) table the sorter used


def sort_recording(rec: Recording, cfg: PipelineConfig | None = None,
                   templates: TemplateSet | None = None,
                   max_seconds: float | None = None, first: int = 0,
                   last: int | None = None) -> SortResult:
    """Runs the hub pipeline with sorting over `rec`, block by block, causally: samples
    [first, last) (the whole recording by default; at most `max_seconds` of it), the hub's
    sample 0 at `first`."""
    cfg = cfg or PipelineConfig(sort=True)
    if not cfg.sort:
        raise ValueError("sort_recording needs PipelineConfig(sort=True)")
    pipe = Pipeline(cfg, rec.num_channels, rec.sampling_frequency, rec.channel_positions_um)
    if templates is not None:
        load_templates(pipe, templates)
    assert pipe.sorter is not None
    n = (rec.num_samples if last is None else min(last, rec.num_samples)) - first
    if max_seconds is not None:
        n = min(n, round(max_seconds * rec.sampling_frequency))
    evs: list[npt.NDArray[Any]] = []
    peel: list[npt.NDArray[np.bool_]] = []
    ses: list[npt.NDArray[Any]] = []
    wall = 0.0
    motion: list[list[float]] = []        # [sample, µm] every ~0.5 s (loaded templates only)
    every = max(1, round(0.5 * rec.sampling_frequency / pipe.block_samples))
    for b, start in enumerate(range(0, n, pipe.block_samples)):
        block = rec.read(first + start, first + min(start + pipe.block_samples, n))
        t = time.perf_counter()
        r = pipe.process(block)
        wall += time.perf_counter() - t
        if templates is not None and b % every == 0:
            motion.append([float(start), round(pipe.sorter.motion()[0], 3)])
        evs.append(r.snippet_events)
        peel.append(np.zeros(r.snippet_events.size, bool))
        if r.peeled is not None and r.peeled.size:
            evs.append(r.peeled)
            peel.append(np.ones(r.peeled.size, bool))
        if r.sort_events is not None and r.sort_events.size:
            ses.append(r.sort_events)
    ev = np.concatenate(evs) if evs else np.zeros(0, dtype=np.dtype([]))
    se = np.concatenate(ses) if ses else np.zeros(0, SORT_EVENT_DTYPE)
    units = np.asarray(ev["unit"], np.int32)
    samples, channels = np.asarray(ev["sample"], np.int64), np.asarray(ev["channel"], np.int32)
    stats: dict[str, Any] = dict(pipe.sorter.stats())
    if templates is not None:
        stats["fit"] = pipe.sorter.fit()
        stats["unfit_units"] = unfit_units(stats["fit"])
        stats["motion_um"], stats["motion_spikes"] = pipe.sorter.motion()
        stats["motion_trace"] = motion
        stats["motion_jumps"] = pipe.sorter.motion_jumps()
    stats.update(wall_seconds=wall, samples=n * rec.num_channels,
                 stage_seconds=dict(pipe.times.seconds),
                 memory_bytes=pipe.sorter.memory_bytes,
                 snippets_dropped=pipe.snippets.dropped)
    log.info("sorted %d spikes into %d live units (%s)", int((units >= 0).sum()),
             stats["live_units"], {k: stats[k] for k in ("births", "merges", "retirements")})
    final = resolve_merges(apply_late_labels(samples, channels, units, se), se)
    return SortResult(samples, channels, units, final, se, stats,
                      np.concatenate(peel) if peel else np.zeros(0, bool),
                      pipe.sorter.clusters(), pipe.sorter.neighbors)
