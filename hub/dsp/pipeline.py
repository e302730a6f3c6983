"""The hub's block pipeline: band-pass → reference → noise + detection → snippets → features
(→ online sorting, optional).

One C call per kernel per block over all channels; buffers are allocated once. Times are in the
recording's samples; the configuration is in physical units (Hz, ms, µm) and converted once.

A gap in the input (``process(block, resume=True, skipped=n)``) is never bridged: the spikes
waiting at its edge are decided with the window cut there, the filters restart from their
steady state for the block's first sample (no step), σ is held, nothing is decided for
``hold_off`` samples (the filter's settling time, at least the detector's window and the
snippet's pre samples), snippets that would reach across are dropped and counted, and feature
bins report only the samples they saw.

Feature bins count a spike in the bin where it was *decided* (its peak + the detector's
look-ahead, ``latency_samples``, 0.4 ms by default), not where it peaked: a bin is then final
with its own last sample and leaves with the block that holds it, instead of waiting for the
next block to see the look-ahead (a whole block of sample → cursor latency in a BCI loop).
Power is per sample as before; bins are the same whatever the block size.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.dsp.bandpower import HighGammaBins
from hub.dsp.geometry import adjacency, exclusion_adjacency, snippet_neighbors
from hub.kernels import (
    EVENT_DTYPE,
    Bandpass,
    Detector,
    DetectorConfig,
    FeatureBinner,
    FeatureBins,
    LfpFilter,
    Reference,
    SnippetExtractor,
    butter_sos,
)
from hub.kernels.frontend import settle_samples
from hub.kernels.sorter import Sorter, SorterConfig, split_peeled
from hub.wire import settings
from hub.wire.settings import ConfigError as ConfigError  # re-exported

MAX_PENDING = 4096  # snippets waiting for their post samples (and sorted in one call)


_D = settings.defaults()


@dataclass(frozen=True)
class PipelineConfig:
    """The front end's settings: the PipelineSettings fields of the settings schema
    (hub.wire.settings: ranges, units and these defaults come from proto/hub.proto), plus the
    sorter's own tuning. Validated as a whole by :meth:`validate`."""

    block_ms: float = _D["block_ms"]
    band_low_hz: float = _D["band_low_hz"]
    band_high_hz: float = _D["band_high_hz"]
    filter_order: int = _D["filter_order"]
    reference: str = _D["reference"]               # "robust" | "median" | "average" | "none"
    reference_group_size: int = _D["reference_group_size"]   # 0: one group of all channels
    polarity: str = _D["polarity"]                 # "neg" | "pos" | "both"
    threshold: float = _D["threshold"]             # × MAD σ
    exclude_ms: float = _D["exclude_ms"]
    refractory_ms: float = _D["refractory_ms"]
    warmup_s: float = _D["warmup_s"]
    noise_tau_s: float = _D["noise_tau_s"]
    neighbor_radius_um: float = _D["neighbor_radius_um"]
    snippet_pre: int = _D["snippet_pre"]
    snippet_post: int = _D["snippet_post"]
    snippet_channels: int = _D["snippet_channels"]
    bin_ms: float = _D["bin_ms"]
    lfp: bool = _D["lfp"]
    lfp_cutoff_hz: float = _D["lfp_cutoff_hz"]
    lfp_rate_hz: float = _D["lfp_rate_hz"]
    sort: bool = _D["sort"]                        # online spike sorting of the snippets
    sort_settings: SorterConfig = field(default_factory=SorterConfig)

    @property
    def band_hz(self) -> tuple[float, float]:
        return (self.band_low_hz, self.band_high_hz)

    def values(self) -> dict[str, Any]:
        """The schema's pipeline settings, by name."""
        return {n: getattr(self, n) for n in settings.PIPELINE}

    def validate(self, fs: float, n_channels: int | None = None) -> None:
        """Raises SettingError (a ValueError naming the field) unless every setting is in
        range and consistent with the others, ``fs`` and ``n_channels``."""
        d = settings.defaults()
        d.update(self.values())
        settings.check_all(d, fs, n_channels)

    def live_change(self, other: PipelineConfig) -> bool:
        """True when ``other`` differs from this only in live settings (no rebuild)."""
        return all(getattr(self, n) == getattr(other, n) or settings.SETTINGS[n].live
                   for n in settings.PIPELINE) and self.sort_settings == other.sort_settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BlockResult:
    """What one block produced (all arrays are owned copies)."""

    first_sample: int
    n_samples: int
    events: npt.NDArray[Any]                    # EVENT_DTYPE
    snippet_events: npt.NDArray[Any]            # EVENT_DTYPE, snippets completed in this block
    snippets: npt.NDArray[np.float32]           # (n, K, pre+post)
    bins: FeatureBins
    lfp: npt.NDArray[np.float32] | None = None
    #: unit births / merges / retirements (SORT_EVENT_DTYPE) when sorting; snippet_events
    #: then carry the unit of each spike, labelled in the block that completed its snippet.
    sort_events: npt.NDArray[Any] | None = None
    #: ECoG mode (lfp=True; decoding, issue 15): high-gamma mean x² per row of ``bins``
    hg_power: npt.NDArray[np.float32] | None = None
    #: sorting: spikes found under another spike's snippet (EVENT_DTYPE, unit set; no snippet
    #: of their own: amplitude = their template's peak at the fitted scale; nk_sort_peel.c)
    peeled: npt.NDArray[Any] | None = None


@dataclass
class StageTimes:
    """Seconds spent per kernel since start."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt


class Pipeline:
    """Runs blocks through the kernels; the caller feeds consecutive int16 blocks."""

    def __init__(self, cfg: PipelineConfig, n_channels: int, fs: float,
                 positions_um: npt.NDArray[np.float64] | None = None) -> None:
        cfg.validate(fs)      # the daemon also checks against its channel count (no group of one)
        self.cfg, self.n_channels, self.fs = cfg, n_channels, fs
        self.block_samples = max(1, round(cfg.block_ms * fs / 1000.0))
        hi = min(cfg.band_high_hz, 0.45 * fs)  # clamp the top corner below Nyquist
        self.band_hz = (cfg.band_low_hz, hi)
        sos = butter_sos(cfg.filter_order, "bandpass", self.band_hz, fs)
        self.bandpass = Bandpass(n_channels, sos)
        if cfg.reference == "none":
            self.reference: Reference | None = None
        else:
            size = cfg.reference_group_size or n_channels
            groups = np.arange(n_channels) // size
            halves = reference_halves(groups, positions_um) if cfg.reference == "robust" \
                else None
            self.reference = Reference(groups, cfg.reference, halves,
                                       tau_samples=cfg.noise_tau_s * fs)
        ms = fs / 1000.0
        dcfg = DetectorConfig(
            polarity=cfg.polarity, threshold=cfg.threshold,
            exclude_sweep=round(cfg.exclude_ms * ms), refractory=round(cfg.refractory_ms * ms),
            warmup=round(cfg.warmup_s * fs), eta_fast=0.1,
            eta_slow=1.0 / (cfg.noise_tau_s * fs))
        self.adjacency = adjacency(positions_um, n_channels, cfg.neighbor_radius_um)
        # sorting: the detector's exclusion spares the spikes of neurons a few contacts apart
        # (SorterConfig.exclusion_radius_um); the sorter peels those of nearer ones
        det_adj = exclusion_adjacency(positions_um, n_channels, cfg.neighbor_radius_um,
                                      cfg.sort_settings.exclusion_radius_um) \
            if cfg.sort else self.adjacency
        self.detector = Detector(n_channels, dcfg, det_adj)
        max_block = max(self.block_samples, round(50 * ms))
        # the sorter may see more channels than the uplink sends (the first snippet_channels
        # of each row are the same: nearest first); results carry the uplink's
        k_sort = max(cfg.snippet_channels, cfg.sort_settings.channels) if cfg.sort else 0
        neighbors = snippet_neighbors(positions_um, n_channels,
                                      max(cfg.snippet_channels, k_sort), cfg.neighbor_radius_um)
        self.snippet_k = min(cfg.snippet_channels, neighbors.shape[1])
        self.snippets = SnippetExtractor(neighbors, cfg.snippet_pre, cfg.snippet_post,
                                         max_block=max_block, max_pending=MAX_PENDING)
        self.sorter: Sorter | None = None
        if cfg.sort:
            self.sorter = Sorter(neighbors, cfg.snippet_pre, cfg.snippet_post, fs, cfg.threshold,
                                 cfg.sort_settings, max_spikes=MAX_PENDING)
            if cfg.sort_settings.motion and positions_um is not None:
                self.sorter.set_positions(np.asarray(positions_um, np.float64)[:, :2],
                                          cfg.sort_settings.motion_move)
        self.bin_samples = max(1, round(cfg.bin_ms * ms))
        self.features = FeatureBinner(n_channels, self.bin_samples, 0, max_block)
        self.lfp: LfpFilter | None = None
        if cfg.lfp:
            q = max(1, round(fs / cfg.lfp_rate_hz))
            self.lfp = LfpFilter(n_channels, butter_sos(4, "lowpass", (cfg.lfp_cutoff_hz,), fs), q)
        # ECoG mode (decoding, issue 15): high-gamma power per bin from the LFP stream
        self.hg: HighGammaBins | None = None
        if self.lfp is not None and self.bin_samples % self.lfp.decimation == 0:
            self.hg = HighGammaBins(n_channels, fs / self.lfp.decimation,
                                    self.bin_samples // self.lfp.decimation, max_block)
        self._filtered = np.empty((max_block, n_channels), dtype=np.float32)
        self.next_sample = 0
        self.times = StageTimes()
        #: quiet samples after a gap: the band-pass settles, windows never span the gap
        self.hold_off = max(settle_samples(sos), self.detector.latency, cfg.snippet_pre)
        self.gaps = 0
        #: live threshold changes the sorter has yet to take: (first sample decided under the
        #: new k, k); the snippets of spikes decided before still carry the old k·σ
        self._sort_k: deque[tuple[int, float]] = deque()

    def apply(self, cfg: PipelineConfig) -> bool:
        """Takes ``cfg`` between two blocks if it differs from the current settings only in
        live ones (the schema's ``live`` flag; the threshold: detector and sorter together).
        False, and nothing changed, when it needs a new pipeline; raises SettingError (nothing
        changed) when it is invalid."""
        changed = [n for n in settings.PIPELINE if getattr(cfg, n) != getattr(self.cfg, n)]
        if not self.cfg.live_change(cfg) or any(n != "threshold" for n in changed):
            return cfg == self.cfg
        cfg.validate(self.fs)
        if changed:
            self.detector.set_threshold(cfg.threshold)
            if self.sorter is not None:
                # spikes decided from the next block on peak at ≥ next_sample − latency
                self._sort_k.append((self.next_sample - self.detector.latency, cfg.threshold))
        self.cfg = cfg
        return True

    def seed_noise(self, sigma: npt.ArrayLike) -> None:
        """Before the first block: the detector starts from σ per channel (counts, e.g. a
        calibration's TemplateSet.noise) and decides from ``hold_off`` on (the filters'
        settling) instead of after the noise warm-up; its estimate counts as one warm-up's
        worth of samples, so a seed from another day is corrected within about that long."""
        if self.next_sample != 0:
            raise ValueError("the noise seed must come before the first block")
        self.detector.seed_noise(sigma, self.hold_off, round(self.cfg.warmup_s * self.fs))

    @property
    def latency_samples(self) -> int:
        """Delay from a spike's peak to its decision (the detector's look-ahead)."""
        return self.detector.latency

    def process(self, block: npt.NDArray[np.int16], resume: bool = False,
                skipped: int = 0) -> BlockResult:
        """Processes the next block (≤ 50 ms): consecutive, or (``resume``) the first after a
        gap of ``skipped`` samples (0: a discontinuity, e.g. the implant restarted)."""
        n = block.shape[0] if block.ndim == 2 else -1
        if n > self._filtered.shape[0]:
            raise ValueError(f"block of {n} samples exceeds the 50 ms maximum "
                             f"({self._filtered.shape[0]})")
        if skipped < 0:
            raise ValueError(f"skipped={skipped}: a gap cannot go back in time")
        edge, edge_bins = empty_events(), None
        if (resume or skipped) and n > 0:
            edge, edge_bins = self._resume(self.next_sample + skipped, block[0])
        t0 = self.next_sample
        clock = time.perf_counter
        a = clock()
        y = self.bandpass.process(block, self._filtered[:n] if n >= 0 else None)
        b = clock()
        self.times.add("bandpass", b - a)
        if self.reference is not None:
            self.reference.process(y)
        c = clock()
        self.times.add("reference", c - b)
        events = self.detector.process(y, t0).copy()
        if edge.size:
            events = np.concatenate([edge, events])
        d = clock()
        self.times.add("detect", d - c)
        sev, wf = self.snippets.process(y, t0, events[edge.size:])
        e = clock()
        self.times.add("snippets", e - d)
        bins = self.features.process(y, t0, self._decided(events[edge.size:], t0 + n - 1))
        if edge_bins is not None and edge_bins.index.size:
            bins = FeatureBins(*(np.concatenate([u, v]) for u, v in zip(
                (edge_bins.index, edge_bins.samples, edge_bins.counts, edge_bins.power),
                (bins.index, bins.samples, bins.counts, bins.power), strict=True)))
        f = clock()
        self.times.add("features", f - e)
        lfp = None
        if self.lfp is not None:
            lfp = self.lfp.process(block, t0)
            if self.hg is not None:            # ECoG mode: kept rows first at ⌈t0 / q⌉
                q = self.lfp.decimation
                self.hg.process(lfp, -(-t0 // q))
            self.times.add("lfp", clock() - f)
        sev = sev.copy()
        sort_events = peeled = None
        if self.sorter is not None:
            g = clock()
            sort_events, peeled = split_peeled(self._sort(sev, wf, t0 + n))
            self.times.add("sort", clock() - g)
        self.next_sample = t0 + n
        hg = self.hg.take(bins.index) if self.hg is not None and bins.index.size else None
        return BlockResult(t0, n, events, sev, wf[:, :self.snippet_k].copy(), bins, lfp,
                           sort_events, hg, peeled)

    def _decided(self, events: npt.NDArray[Any], last: int) -> npt.NDArray[Any]:
        """The events with ``sample`` moved to where each was decided (peak + look-ahead; at
        most ``last``, the last sample processed: a gap decides the spikes at its edge early),
        for the feature bins (module docstring)."""
        if not events.size:
            return events
        out = events.copy()
        out["sample"] = np.minimum(out["sample"] + self.detector.latency, last)
        return out

    def _resume(self, at: int, x0: npt.NDArray[np.int16]) -> tuple[npt.NDArray[Any],
                                                                      FeatureBins]:
        """The input resumes at ``at`` with the row ``x0``: see the module docstring."""
        self.gaps += 1
        edge = self.detector.resume(at, self.hold_off)
        self.snippets.resume(at, edge)
        bins = self.features.resume(self._decided(edge, self.next_sample - 1), at)
        self.bandpass.settle(x0)
        if self.lfp is not None:
            self.lfp.settle(x0)
        self.next_sample = at
        return edge, bins

    def _sort(self, sev: npt.NDArray[Any], wf: npt.NDArray[np.float32],
              now: int) -> npt.NDArray[Any]:
        """Sorts the completed snippets; a pending threshold change reaches the sorter exactly
        between the last spike decided under the old threshold and the first under the new
        (snippets complete in sample order)."""
        assert self.sorter is not None
        out, lo = [], 0
        while self._sort_k:
            at, k = self._sort_k[0]
            newer = np.flatnonzero(sev["sample"][lo:] >= at)
            if not newer.size and now <= at + self.cfg.snippet_post:
                break                        # old-threshold snippets may still complete
            cut = lo + int(newer[0]) if newer.size else sev.size
            if cut > lo:
                out.append(self.sorter.process(sev[lo:cut], wf[lo:cut], now).copy())
            self.sorter.set_detect_threshold(k)
            self._sort_k.popleft()
            lo = cut
        out.append(self.sorter.process(sev[lo:], wf[lo:], now).copy())
        return np.concatenate(out) if len(out) > 1 else out[0]

    def noise_counts(self) -> npt.NDArray[np.float32]:
        return self.detector.noise()


def reference_halves(groups: npt.NDArray[Any],
                     positions_um: npt.NDArray[np.float64] | None) -> npt.NDArray[np.int32] | None:
    """For the robust reference: each group split in two along its longer side (upper and lower
    half of the probe), so that what the halves share is common mode, not one neuron or local
    noise; None (each group's first and second half in channel order) without positions."""
    if positions_um is None:
        return None
    halves = np.zeros(groups.size, np.int32)
    for g in np.unique(groups[groups >= 0]):
        idx = np.flatnonzero(groups == g)
        p = positions_um[idx]
        axis = int(np.argmax(np.ptp(p, axis=0))) if idx.size > 1 else 0
        order = idx[np.lexsort((idx, p[:, axis]))]
        halves[order[idx.size // 2:]] = 1
    return halves


def empty_events() -> npt.NDArray[Any]:
    return np.zeros(0, dtype=EVENT_DTYPE)
