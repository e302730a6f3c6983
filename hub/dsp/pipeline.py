"""The hub's block pipeline: band-pass → reference → noise + detection → snippets → features
(→ online sorting, optional).

One C call per kernel per block over all channels; buffers are allocated once. Times are in the
recording's samples; the configuration is in physical units (Hz, ms, µm) and converted once.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.dsp.bandpower import HighGammaBins
from hub.dsp.geometry import adjacency, snippet_neighbors
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
from hub.kernels.sorter import Sorter, SorterConfig

MAX_PENDING = 4096  # snippets waiting for their post samples (and sorted in one call)


class ConfigError(ValueError):
    """A pipeline setting is out of range; names the field."""


@dataclass(frozen=True)
class PipelineConfig:
    """Front-end settings. Validated as a whole by :meth:`validate`."""

    block_ms: float = 10.0
    band_hz: tuple[float, float] = (300.0, 6000.0)
    filter_order: int = 1                # first order: no ringing lobes after large spikes
    reference: str = "median"            # "median" | "average" | "none"
    reference_group_size: int = 0        # 0: one group of all channels
    polarity: str = "neg"
    threshold: float = 5.0               # × MAD σ
    exclude_ms: float = 0.4              # ± window for alignment and de-duplication
    refractory_ms: float = 1.0
    warmup_s: float = 0.2
    noise_tau_s: float = 2.0
    neighbor_radius_um: float = 100.0
    snippet_pre: int = 16
    snippet_post: int = 32
    snippet_channels: int = 4
    bin_ms: float = 20.0
    lfp: bool = False
    lfp_cutoff_hz: float = 250.0
    lfp_rate_hz: float = 1000.0
    sort: bool = False                   # online spike sorting of the snippets (hub/kernels/sorter)
    sort_settings: SorterConfig = field(default_factory=SorterConfig)

    def validate(self, fs: float) -> None:
        def need(ok: bool, name: str, why: str) -> None:
            if not ok:
                raise ConfigError(f"{name}={getattr(self, name)!r}: {why}")
        need(1.0 <= self.block_ms <= 50.0, "block_ms", "must be within 1–50 ms")
        lo, hi = self.band_hz
        need(0 < lo < hi, "band_hz", "needs 0 < low < high")
        need(lo < 0.45 * fs, "band_hz", f"low corner must be < 0.45·fs ({0.45 * fs:.0f} Hz)")
        need(1 <= self.filter_order <= 8, "filter_order", "must be 1–8")
        need(self.reference in ("median", "average", "none"), "reference",
             "must be median, average or none")
        need(self.reference_group_size >= 0, "reference_group_size", "must be ≥ 0")
        need(self.polarity in ("neg", "pos", "both"), "polarity", "must be neg, pos or both")
        need(1.0 <= self.threshold <= 50.0, "threshold", "must be 1–50 σ")
        need(0.0 <= self.exclude_ms <= 5.0, "exclude_ms", "must be 0–5 ms")
        need(0.0 <= self.refractory_ms <= 100.0, "refractory_ms", "must be 0–100 ms")
        need(0.0 <= self.warmup_s <= 60.0, "warmup_s", "must be 0–60 s")
        need(0.1 <= self.noise_tau_s <= 600.0, "noise_tau_s", "must be 0.1–600 s")
        need(self.neighbor_radius_um >= 0, "neighbor_radius_um", "must be ≥ 0")
        need(0 <= self.snippet_pre <= 256 and 1 <= self.snippet_post <= 256, "snippet_pre",
             "pre 0–256 and post 1–256 samples")
        need(1 <= self.snippet_channels <= 64, "snippet_channels", "must be 1–64")
        need(1.0 <= self.bin_ms <= 1000.0, "bin_ms", "must be 1–1000 ms")
        need(10.0 <= self.lfp_rate_hz <= fs / 2, "lfp_rate_hz", "must be 10 Hz – fs/2")
        need(0 < self.lfp_cutoff_hz < self.lfp_rate_hz / 2, "lfp_cutoff_hz",
             "must be below half the LFP rate")

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
        cfg.validate(fs)
        self.cfg, self.n_channels, self.fs = cfg, n_channels, fs
        self.block_samples = max(1, round(cfg.block_ms * fs / 1000.0))
        hi = min(cfg.band_hz[1], 0.45 * fs)  # clamp the top corner below Nyquist
        self.band_hz = (cfg.band_hz[0], hi)
        self.bandpass = Bandpass(n_channels, butter_sos(cfg.filter_order, "bandpass",
                                                        self.band_hz, fs))
        if cfg.reference == "none":
            self.reference: Reference | None = None
        else:
            size = cfg.reference_group_size or n_channels
            self.reference = Reference(np.arange(n_channels) // size, cfg.reference)
        ms = fs / 1000.0
        dcfg = DetectorConfig(
            polarity=cfg.polarity, threshold=cfg.threshold,
            exclude_sweep=round(cfg.exclude_ms * ms), refractory=round(cfg.refractory_ms * ms),
            warmup=round(cfg.warmup_s * fs), eta_fast=0.1,
            eta_slow=1.0 / (cfg.noise_tau_s * fs))
        self.adjacency = adjacency(positions_um, n_channels, cfg.neighbor_radius_um)
        self.detector = Detector(n_channels, dcfg, self.adjacency)
        max_block = max(self.block_samples, round(50 * ms))
        neighbors = snippet_neighbors(positions_um, n_channels, cfg.snippet_channels,
                                      cfg.neighbor_radius_um)
        self.snippets = SnippetExtractor(neighbors, cfg.snippet_pre, cfg.snippet_post,
                                         max_block=max_block, max_pending=MAX_PENDING)
        self.sorter: Sorter | None = None
        if cfg.sort:
            self.sorter = Sorter(neighbors, cfg.snippet_pre, cfg.snippet_post, fs, cfg.threshold,
                                 cfg.sort_settings, max_spikes=MAX_PENDING)
        self.bin_samples = max(1, round(cfg.bin_ms * ms))
        self.features = FeatureBinner(n_channels, self.bin_samples, self.detector.latency,
                                      max_block)
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

    @property
    def latency_samples(self) -> int:
        """Delay from a spike's peak to its decision (the detector's look-ahead)."""
        return self.detector.latency

    def process(self, block: npt.NDArray[np.int16]) -> BlockResult:
        """Processes the next consecutive block (≤ 50 ms)."""
        n = block.shape[0] if block.ndim == 2 else -1
        if n > self._filtered.shape[0]:
            raise ValueError(f"block of {n} samples exceeds the 50 ms maximum "
                             f"({self._filtered.shape[0]})")
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
        d = clock()
        self.times.add("detect", d - c)
        sev, wf = self.snippets.process(y, t0, events)
        e = clock()
        self.times.add("snippets", e - d)
        bins = self.features.process(y, t0, events)
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
        sort_events = None
        if self.sorter is not None:
            g = clock()
            sort_events = self.sorter.process(sev, wf, t0 + n).copy()
            self.times.add("sort", clock() - g)
        self.next_sample = t0 + n
        hg = self.hg.take(bins.index) if self.hg is not None and bins.index.size else None
        return BlockResult(t0, n, events, sev, wf.copy(), bins, lfp, sort_events, hg)

    def noise_counts(self) -> npt.NDArray[np.float32]:
        return self.detector.noise()


def empty_events() -> npt.NDArray[Any]:
    return np.zeros(0, dtype=EVENT_DTYPE)
