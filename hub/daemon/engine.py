"""The pipeline stage: blocks in, packets out. ``process`` runs in the worker thread (the
kernels release the GIL); configuration changes are handed over between blocks, so a block is
always processed under one whole configuration."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.daemon.config_store import HubConfig
from hub.daemon.packets import Packer
from hub.daemon.rawcodec import RawCodec
from hub.daemon.scheduler import Packet
from hub.dsp.geometry import snippet_neighbors
from hub.dsp.pipeline import Pipeline
from hub.link.blocks import Block

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Output:
    packets: list[Packet]
    first: int
    end: int
    raw_sent: list[int]
    raw_shed: list[int]
    spikes_lost: int = 0      # sorted spikes the snippet queue could not hold (reported shed)


class PipelineStage:
    def __init__(self, packer: Packer, cfg: HubConfig) -> None:
        self.packer = packer
        self.cfg = cfg
        self.fs = 0.0
        self.n_channels = 0
        self.positions: npt.NDArray[np.float64] | None = None
        self.pipeline: Pipeline | None = None
        self.neighbors = np.zeros((0, 1), np.int32)
        self.base = 0
        self._pending: tuple[HubConfig, Pipeline | None] | None = None
        self._retired_times: dict[str, float] = {}
        self.blocks = 0
        self.rebuilds = 0
        self._snippets_dropped = 0     # the installed pipeline's snippet drops already reported
        self._spikes_carry_lost = 0    # sorted spikes a replaced pipeline still held
        self.templates: Any = None
        self.raw_codec: RawCodec | None = None      # set by the daemon (lives on the loop)

    def build(self, cfg: HubConfig) -> Pipeline:
        """A pipeline for ``cfg`` (raises ValueError when the kernels refuse it)."""
        return Pipeline(cfg.pipeline, self.n_channels, self.fs, self.positions)

    def set_stream(self, fs: float, n_channels: int) -> None:
        if (fs, n_channels) != (self.fs, self.n_channels):
            self.fs, self.n_channels = fs, n_channels
            self.pipeline = None

    def hand_over(self, cfg: HubConfig, pipeline: Pipeline | None) -> None:
        """Applies at the next block; ``pipeline`` None keeps the filters (threshold-only or
        non-pipeline changes)."""
        self._pending = (cfg, pipeline)

    @property
    def block_samples(self) -> int:
        return self.pipeline.block_samples if self.pipeline else max(
            1, round(self.cfg.pipeline.block_ms * self.fs / 1000.0))

    def kernel_seconds(self) -> dict[str, float]:
        out = dict(self._retired_times)
        pipe = self.pipeline
        if pipe is not None:      # the worker may be adding a key: list() copies under the GIL
            for k, v in list(pipe.times.seconds.items()):
                out[k] = out.get(k, 0.0) + v
        return out

    def _install(self, pipeline: Pipeline, base: int) -> None:
        old = self.pipeline
        if old is not None and old.sorter is not None:   # spikes waiting for their snippet
            self._spikes_carry_lost += (old.snippets.pending + old.snippets.dropped
                                        - self._snippets_dropped)
        if self.pipeline is not None:
            for k, v in self.pipeline.times.seconds.items():
                self._retired_times[k] = self._retired_times.get(k, 0.0) + v
        self.pipeline, self.base = pipeline, base
        self._snippets_dropped = 0
        self.neighbors = snippet_neighbors(self.positions, self.n_channels,
                                           self.cfg.pipeline.snippet_channels,
                                           self.cfg.pipeline.neighbor_radius_um)
        self.rebuilds += 1

    def process(self, block: Block, t_ns: int, n_raw: int) -> Output:
        """Runs one block (worker thread)."""
        if self._pending is not None:
            (cfg, new), self._pending = self._pending, None
            self.cfg = cfg
            if new is not None:
                self._install(new, block.first_sample)
            elif self.pipeline is not None:
                self.pipeline.detector.set_threshold(cfg.pipeline.threshold)
        pipe = self.pipeline
        if pipe is None or block.first_sample != self.base + pipe.next_sample:
            if pipe is not None:
                log.info("pipeline restarts at sample %d (expected %d)", block.first_sample,
                         self.base + pipe.next_sample)
            pipe = self.build(self.cfg)
            self._install(pipe, block.first_sample)
        res = pipe.process(block.samples)
        self.blocks += 1
        first, end = block.first_sample, block.first_sample + block.samples.shape[0]
        pk, base = self.packer, self.base
        spikes, lost = res.events, 0
        if pipe.sorter is not None:
            # Sorted spikes leave when their snippet completes (≤ post samples + one block
            # later), with their unit; any the snippet queue could not hold are reported shed.
            spikes = res.snippet_events
            lost = pipe.snippets.dropped - self._snippets_dropped
            self._snippets_dropped = pipe.snippets.dropped
        lost, self._spikes_carry_lost = lost + self._spikes_carry_lost, 0
        # A spike is decided the detector's latency after its peak: the batch starts at the
        # earliest spike, which may precede this block.
        spikes_first = min(first, base + int(spikes["sample"].min())) if spikes.size else first
        packets = [p for p in (
            pk.spikes(spikes, base, spikes_first, end, t_ns, res.sort_events),
            pk.features(res.bins, base, pipe.bin_samples, t_ns, end, res.hg_power),
        ) if p is not None]
        if self.cfg.snippets:
            packets += pk.snippets(res.snippet_events, res.snippets, self.neighbors,
                                   pipe.cfg.snippet_pre, base, first, end, t_ns)
        chans = list(self.cfg.raw_channels) if self.cfg.raw_channels is not None else list(
            range(self.n_channels))
        sent, shed = chans[:n_raw], chans[n_raw:]
        if self.cfg.raw_codec and self.raw_codec is not None:
            packets += pk.raw_coded(block.samples, first, sent, t_ns, self.raw_codec)
        else:
            packets += pk.raw(block.samples, first, sent, t_ns)
        return Output(packets, first, end, sent, shed, lost)
