"""The pipeline stage: blocks in, packets out, sealed behind one worker thread.

:class:`PipelineStage` owns the pipeline and everything it holds (filters, detector, sorter,
snippet queue). Its methods run in the worker, one at a time, so a block is always processed
under one whole configuration and a configuration change or a template load lands between two
blocks. :class:`StageWorker` is the daemon's handle: the worker thread and async calls into it.
Raw broadband is not the stage's business (the scheduler's raw lane sends it).

A restarted stage is a new object on a new thread: the old worker, possibly wedged inside a
kernel, keeps its own stage to itself, and every call still waiting on it fails at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from hub.daemon.config_store import HubConfig
from hub.daemon.packets import Packer
from hub.daemon.scheduler import Packet
from hub.dsp.geometry import snippet_neighbors
from hub.dsp.pipeline import Pipeline
from hub.dsp.sorting import TemplateSet, load_templates
from hub.errors import HubError
from hub.kernels import FeatureBins
from hub.link.blocks import Block

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclasses.dataclass
class Output:
    """What one block produced, tagged with the settings version it was processed under."""

    packets: list[Packet]
    first: int
    end: int
    version: int
    spikes_lost: int = 0      # sorted spikes the snippet queue could not hold (reported shed)


def _runs(bins: FeatureBins, hg: npt.NDArray[np.float32] | None = None
          ) -> list[tuple[FeatureBins, npt.NDArray[np.float32] | None]]:
    """Bins (and their high-gamma rows, ECoG mode) split into runs of consecutive indices (a
    packet holds one run; after a gap the bins inside it do not exist)."""
    cut = np.flatnonzero(np.diff(bins.index) != 1) + 1
    if not cut.size:
        return [(bins, hg)]
    return [(FeatureBins(bins.index[i:j], bins.samples[i:j], bins.counts[i:j], bins.power[i:j]),
             None if hg is None else hg[i:j])
            for i, j in zip([0, *cut.tolist()], [*cut.tolist(), bins.index.size], strict=True)]


@dataclasses.dataclass(frozen=True)
class StageCounters:
    blocks: int
    rebuilds: int
    version: int
    kernel_seconds: dict[str, float]


class PipelineStage:
    """The pipeline of one implant stream (``fs``, ``n_channels``) under a configuration."""

    def __init__(self, packer: Packer, cfg: HubConfig, fs: float = 0.0, n_channels: int = 0,
                 positions: npt.NDArray[np.float64] | None = None, version: int = 0) -> None:
        self.packer = packer
        self.cfg, self.version = cfg, version
        self.fs, self.n_channels = fs, n_channels
        self.positions = positions
        self.pipeline: Pipeline | None = None
        self.neighbors = np.zeros((0, 1), np.int32)
        self.base = 0
        self._retired_times: dict[str, float] = {}
        self.blocks = 0
        self.rebuilds = 0
        self._snippets_dropped = 0     # the installed pipeline's snippet drops already reported
        self._spikes_carry_lost = 0    # sorted spikes a replaced pipeline still held
        self.templates: TemplateSet | None = None   # loaded into every pipeline it builds

    def set_stream(self, fs: float, n_channels: int) -> None:
        if (fs, n_channels) != (self.fs, self.n_channels):
            self.fs, self.n_channels = fs, n_channels
            self.pipeline = None

    def build(self, cfg: HubConfig) -> Pipeline:
        """A pipeline for ``cfg`` (raises ValueError when the kernels refuse it)."""
        return Pipeline(cfg.pipeline, self.n_channels, self.fs, self.positions)

    @property
    def block_samples(self) -> int:
        return max(1, round(self.cfg.pipeline.block_ms * self.fs / 1000.0))

    # ------------------------------------------------------------ worker-thread calls
    def apply(self, cfg: HubConfig, version: int) -> None:
        """Takes ``cfg`` now (between two blocks): live settings in place (the threshold, for
        detector and sorter together), anything else through a new pipeline that starts with
        the next block. Raises ValueError and changes nothing when it is refused."""
        pipe = self.pipeline
        if pipe is not None and cfg.pipeline != pipe.cfg and not pipe.apply(cfg.pipeline):
            self._install(self.build(cfg), None)
        self.cfg, self.version = cfg, version

    def load_templates(self, ts: TemplateSet) -> None:
        """Templates for the online sorter, loaded as from a templates file
        (hub.dsp.sorting.load_templates: a pipeline that has not run a block yet also starts
        from the set's noise σ). ValueError, nothing changed, when they are refused. Every
        pipeline built later under this stream (a configuration that rebuilds it) starts with
        them too. With the stream known but no block run yet, the pipeline that takes the next
        block is built now."""
        pipe = self.pipeline
        if pipe is None and self.n_channels and self.cfg.pipeline.sort:
            pipe = self._install(self.build(self.cfg), None)
        if pipe is None or pipe.sorter is None:
            raise LookupError("no online sorter is running")
        load_templates(pipe, ts)
        self.templates = ts

    def process(self, block: Block, t_ns: int) -> Output:
        """Runs one block."""
        pipe = self.pipeline
        if pipe is not None and self.base < 0:
            self.base = block.first_sample               # a rebuilt pipeline starts here
        if pipe is None or block.first_sample < self.base + pipe.next_sample:
            if pipe is not None:
                log.info("pipeline restarts at sample %d (expected %d)", block.first_sample,
                         self.base + pipe.next_sample)
            pipe = self._install(self.build(self.cfg), block.first_sample)
        # after a gap (or blocks the queue could not hold) the pipeline resumes: it never
        # filters across, keeps σ and the sorter's units, and invents nothing
        skipped = block.first_sample - (self.base + pipe.next_sample)
        res = pipe.process(block.samples, resume=block.resume, skipped=skipped)
        self.blocks += 1
        first, end = block.first_sample, block.first_sample + block.samples.shape[0]
        pk, base = self.packer, self.base
        spikes, lost = res.events, 0
        if pipe.sorter is not None:
            # Sorted spikes leave when their snippet completes (≤ post samples + one block
            # later), with their unit; any the snippet queue could not hold are reported shed.
            spikes = res.snippet_events
            if res.peeled is not None and res.peeled.size:
                # spikes found under another spike's snippet: in the batch, no snippet of their own
                both = np.concatenate([spikes, res.peeled])
                spikes = both[np.argsort(both["sample"], kind="stable")]
            lost = pipe.snippets.dropped - self._snippets_dropped
            self._snippets_dropped = pipe.snippets.dropped
        lost, self._spikes_carry_lost = lost + self._spikes_carry_lost, 0
        # A spike is decided the detector's latency after its peak: the batch starts at the
        # earliest spike, which may precede this block.
        spikes_first = min(first, base + int(spikes["sample"].min())) if spikes.size else first
        packets = [p for p in (
            pk.spikes(spikes, base, spikes_first, end, t_ns, res.sort_events),
            *(pk.features(run, base, pipe.bin_samples, t_ns, end, hg)
              for run, hg in _runs(res.bins, res.hg_power)),
        ) if p is not None]
        if self.cfg.snippets:
            packets += pk.snippets(res.snippet_events, res.snippets, self.neighbors,
                                   pipe.cfg.snippet_pre, base, first, end, t_ns)
        return Output(packets, first, end, self.version, lost)

    # ------------------------------------------------------------ any thread
    def counters(self) -> StageCounters:
        out = dict(self._retired_times)
        pipe = self.pipeline
        if pipe is not None:      # the worker may be adding a key: list() copies under the GIL
            for k, v in list(pipe.times.seconds.items()):
                out[k] = out.get(k, 0.0) + v
        return StageCounters(self.blocks, self.rebuilds, self.version, out)

    def _install(self, pipeline: Pipeline, base: int | None) -> Pipeline:
        """``base`` None: the pipeline starts with the next block."""
        old = self.pipeline
        if old is not None:
            if old.sorter is not None:                 # spikes waiting for their snippet
                self._spikes_carry_lost += (old.snippets.pending + old.snippets.dropped
                                            - self._snippets_dropped)
            for k, v in old.times.seconds.items():
                self._retired_times[k] = self._retired_times.get(k, 0.0) + v
        self.pipeline, self.base = pipeline, -1 if base is None else base
        self._snippets_dropped = 0
        if self.templates is not None and pipeline.sorter is not None:
            try:                      # a rebuilt pipeline keeps the loaded units
                load_templates(pipeline, self.templates)
            except ValueError as e:
                log.error("the loaded templates do not fit the new pipeline, dropped: %s", e)
                self.templates = None
        self.neighbors = snippet_neighbors(self.positions, self.n_channels,
                                           pipeline.cfg.snippet_channels,
                                           pipeline.cfg.neighbor_radius_um)
        self.rebuilds += 1
        return pipeline


class StageRestarted(HubError, RuntimeError):
    """The stage a call was waiting for was replaced (its worker stopped answering)."""


class StageWorker:
    """One stage on its own thread; the event loop awaits its calls and never blocks."""

    def __init__(self, stage: PipelineStage) -> None:
        self.stage = stage
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kernels")
        self._waiting: set[asyncio.Future[Any]] = set()
        self.abandoned = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in the worker, after every call submitted before it."""
        if self.abandoned:
            raise StageRestarted("the pipeline stage was restarted")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def done(cf: concurrent.futures.Future[T]) -> None:
            with contextlib.suppress(RuntimeError):      # the loop closed meanwhile
                loop.call_soon_threadsafe(_settle, fut, cf)

        self._executor.submit(fn, *args).add_done_callback(done)
        self._waiting.add(fut)
        try:
            return await fut
        finally:
            self._waiting.discard(fut)

    async def process(self, block: Block, t_ns: int) -> Output:
        return await self.call(self.stage.process, block, t_ns)

    async def apply(self, cfg: HubConfig, version: int) -> None:
        await self.call(self.stage.apply, cfg, version)

    async def load_templates(self, ts: TemplateSet) -> None:
        await self.call(self.stage.load_templates, ts)

    def abandon(self) -> None:
        """Leaves the thread to finish (or hang) on its own; every waiting call fails now."""
        self.abandoned = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        for fut in list(self._waiting):
            if not fut.done():
                fut.set_exception(StageRestarted("the pipeline stage was restarted while "
                                                 "this call waited; not applied"))

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _settle(fut: asyncio.Future[Any], cf: concurrent.futures.Future[Any]) -> None:
    """The worker's outcome into the loop's future (unless abandon() settled it already)."""
    if fut.done():
        return
    if cf.cancelled():
        fut.set_exception(StageRestarted("the pipeline stage was restarted; not run"))
    elif (e := cf.exception()) is not None:
        fut.set_exception(e)
    else:
        fut.set_result(cf.result())
