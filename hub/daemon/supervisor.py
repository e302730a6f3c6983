"""The hub daemon (DESIGN §3.5): an asyncio task tree around the pipeline.

Stages: the implant link (bytes → frames → blocks, on the event loop), the pipeline (blocks →
packets, kernels in a worker thread), the sender (scheduler → uplink), telemetry (every second,
with the shed report, a time-sync packet, the persisted sample index and the systemd watchdog
ping). A watchdog restarts a stage that died or stopped beating; the session (sequence numbers,
accounting) survives a stage restart. SIGTERM stops the link, processes what arrived, drains the
queues (or reports the rest shed) and exits 0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.daemon.config_store import ConfigStore, HubConfig, HubState, atomic_write, fit_to_stream
from hub.daemon.control import CommandPort, Control, Templates, UnsupportedError
from hub.daemon.engine import PipelineStage, StageCounters, StageWorker
from hub.daemon.linkclock import ArrivalClock
from hub.daemon.packets import Packer
from hub.daemon.scheduler import SPIKES, Scheduler, SchedulerConfig
from hub.daemon.telemetry import CpuMeter, battery_pct, sd_notify, temperature_c, watchdog_interval
from hub.dsp.sorting import TemplateSet
from hub.link import BlockAssembler, FrameParser, Gap
from hub.link.blocks import Block, Item, StreamStart
from hub.link.frame import Frame
from hub.link.transport import LinkTransport
from hub.uplink.base import Uplink
from hub.wire import pb

log = logging.getLogger(__name__)


def _hub_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("implant-hub")
    except PackageNotFoundError:         # a bundle without package metadata
        v = "unknown"
    return f"implant-hub {v} (schema {pb.SCHEMA_VERSION})"


HUB_VERSION = _hub_version()


@dataclass
class DaemonOptions:
    implant: str                         # implant link address (hub.link.transport)
    state_dir: Path
    telemetry_s: float = 1.0
    stage_timeout_s: float = 5.0         # a stage silent this long is restarted
    time_sync_s: float = 0.25            # a time-sync point (least delayed frame) this often
    drain_s: float = 3.0                 # SIGTERM: time to send what is queued
    ready_file: Path | None = None       # JSON with the bound addresses, once listening
    block_queue: int = 100               # blocks waiting for the worker (1 s at 10 ms)
    #: Contact positions (µm) of the implant's channels: spatial de-duplication and
    #: multi-channel snippets need them; None: every channel stands alone.
    probe_positions: npt.NDArray[np.float64] | None = None
    #: uv_per_count, location, name, groups (hub.dsp.geometry.load_probe_metadata)
    probe_metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: The kernels' start-up self-test, reported in every telemetry packet.
    selftest: pb.KernelSelfTest | None = None


class Daemon:
    """Implements :class:`hub.daemon.control.HubApi` for the control plane."""

    def __init__(self, opts: DaemonOptions, uplink: Uplink) -> None:
        self.opts, self.uplink = opts, uplink
        self.store = ConfigStore(opts.state_dir)
        self.session_id = random.getrandbits(32)
        self._config = self.store.load_config() or HubConfig()
        self._version = 0                    # settings version (tags the pipeline's output)
        self.prev_state = self.store.load_state()
        self.packer = Packer(self.session_id)
        self.scheduler = Scheduler(uplink, fs=self.prev_state.fs or 30000.0,
                                   session_id=self.session_id,
                                   cfg=SchedulerConfig(outage_buffer_s=self._config.outage_buffer_s))
        self.scheduler.raw.configure(self._config.raw_channels, self._config.raw_codec)
        self.control = Control(self)
        self.commands = CommandPort(self.control, lambda r: self.scheduler.submit(
            self.packer.result(r)))
        self.parser = FrameParser()
        self.assembler = BlockAssembler(block_samples=300,
                                        block_ms=self._config.pipeline.block_ms)
        self.link_clock = ArrivalClock()
        self._sync_ns = 0
        self.transport = LinkTransport(opts.implant)
        #: the pipeline stage on its worker; made when the implant stream starts, and made
        #: anew (a fresh object on a fresh thread) when the watchdog restarts it
        self.worker: StageWorker | None = None
        self.stream: tuple[float, int] | None = None     # (fs, channels) once known
        self.positions: npt.NDArray[np.float64] | None = None
        self._templates: Templates | None = None         # re-loaded into a restarted stage
        # unbounded for stream starts and gaps (never dropped); blocks are bounded by
        # opts.block_queue in _queue_block
        self.blocks: asyncio.Queue[tuple[Item, int]] = asyncio.Queue()
        self._queued_blocks = 0
        self.cpu = CpuMeter()
        self.cpu_load = 0.0
        self.overruns = 0
        self.stage_restarts = 0
        self.last_sample = 0
        self.last_t_ns = 0
        self._beats: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._factories: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        self._stop = asyncio.Event()
        self._busy = False
        self._retired_blocks = 0
        self._reload: asyncio.Task[None] | None = None
        self.stage_seconds: dict[str, float] = {}
        self._telemetry_count = 0
        self._probe_key: tuple[int, int] = (-1, -1)

    # ------------------------------------------------------------ HubApi
    @property
    def config(self) -> HubConfig:
        return self._config

    @property
    def sampling_frequency(self) -> float:
        return self.stream[0] if self.stream else self.prev_state.fs or 30000.0

    @property
    def n_channels(self) -> int | None:
        return self.stream[1] if self.stream else None

    async def apply_config(self, cfg: HubConfig) -> None:
        """The stage takes ``cfg`` between two blocks (raises: nothing changes), then it is
        persisted and the raw lane and scheduler follow."""
        version = self._version + 1
        if self.worker is not None:
            await self.worker.apply(cfg, version)
        try:
            self.store.save_config(cfg)
        except OSError as e:          # applied already: keep it, say it will not survive
            log.error("configuration %d applied but not persisted: %s", version, e)
        self._config, self._version = cfg, version
        self.scheduler.cfg.outage_buffer_s = cfg.outage_buffer_s
        self.scheduler.raw.configure(cfg.raw_channels, cfg.raw_codec)
        if self.stream is not None:
            self.assembler.set_block_samples(self._block_samples(cfg))
        self.assembler.block_ms = cfg.pipeline.block_ms
        log.info("configuration %d applied: %s", version, json.dumps(cfg.to_dict()))

    async def set_running(self, running: bool) -> None:
        await self.apply_config(dataclasses.replace(self._config, running=running))

    async def load_templates(self, templates: Templates) -> None:
        """Hands validated templates to the online sorter in the worker (between two blocks);
        raises ValueError and changes nothing when it refuses."""
        worker = self.worker
        if worker is None or not self._config.pipeline.sort:
            raise UnsupportedError("no online sorter is running (Configure sort=true first, "
                                   "with the implant streaming)")
        assert self.stream is not None
        try:
            await worker.load_templates(self._template_set(templates))
        except LookupError as e:
            raise UnsupportedError(str(e)) from None
        self._templates = templates

    def _template_set(self, templates: Templates) -> TemplateSet:
        """The set as a templates file holds it, on this implant's channels (ConfigError when
        a channel is not one of them)."""
        assert self.stream is not None
        fs, n_channels = self.stream
        return templates.template_set(n_channels, fs, self._config.pipeline.snippet_pre)

    def status(self) -> pb.Telemetry:
        tel = self._telemetry()
        tel.probe.CopyFrom(self._probe_info())
        return tel

    def _probe_info(self) -> pb.ProbeInfo:
        """The installed implant (positions when they match the stream, gain, location)."""
        meta, pos = self.opts.probe_metadata, self.positions
        info = pb.ProbeInfo(uv_per_count=float(meta.get("uv_per_count", 0.0)),
                            location=str(meta.get("location", "unknown")),
                            name=str(meta.get("name", "")))
        if pos is not None:
            info.x_um.extend(pos[:, 0].tolist())
            info.y_um.extend(pos[:, 1].tolist())
            groups = meta.get("groups")
            if isinstance(groups, list) and len(groups) == pos.shape[0]:
                info.group.extend(groups)
        return info

    def time_sync(self, host_time_ns: int) -> pb.TimeSync:
        """The latest complete interval's least delayed frame arrival (hub.daemon.linkclock);
        before there is one, the last block's."""
        ob = self.link_clock.last
        s, t = (ob.sample_index, ob.hub_time_ns) if ob else (self.last_sample, self.last_t_ns)
        return pb.TimeSync(sample_index=s, hub_time_ns=t,
                           sampling_frequency=self.stream[0] if self.stream else 0.0,
                           host_time_ns=host_time_ns, clock_epoch=self.link_clock.epoch,
                           sent_ns=time.monotonic_ns())

    def _block_samples(self, cfg: HubConfig) -> int:
        return max(1, round(cfg.pipeline.block_ms * self.sampling_frequency / 1000.0))

    def _new_worker(self) -> StageWorker:
        """A fresh stage for the current stream and configuration, on a fresh thread."""
        assert self.stream is not None
        fs, c = self.stream
        return StageWorker(PipelineStage(self.packer, self._config, fs, c, self.positions,
                                         self._version))

    # ------------------------------------------------------------ inputs
    def _on_command(self, chunk: bytes) -> None:
        self.commands.feed(chunk)

    def _on_link_data(self, data: bytes) -> None:
        t_ns = time.monotonic_ns()
        self._push_frames(self.parser.feed(data), t_ns)
        if t_ns - self._sync_ns >= self.opts.time_sync_s * 1e9:   # the interval's best frame
            self._sync_ns = t_ns
            if self.link_clock.roll() is not None:
                self.scheduler.submit(self.packer.time_sync(self.time_sync(0)))

    def _on_link_closed(self) -> None:
        """The implant connection ended: frames still whole in the parser go on; a frame cut
        off is counted corrupt."""
        self._push_frames(self.parser.close(), time.monotonic_ns())

    def _push_frames(self, frames: list[Frame], t_ns: int) -> None:
        for frame in frames:
            items = self.assembler.push(frame)
            self.link_clock.observe(frame.counter, self.assembler.end_sample, t_ns,
                                    frame.sampling_rate)
            if self.link_clock.new_epoch:       # the implant rebooted: tell the host now
                self.link_clock.new_epoch = False
                self.scheduler.submit(self.packer.time_sync(self.time_sync(0)))
            for item in items:
                self._queue_block(item, t_ns)

    def _queue_block(self, item: Item, t_ns: int) -> None:
        if isinstance(item, Block):
            if self._queued_blocks >= self.opts.block_queue:
                # the worker fell behind: the block becomes a reported gap (the pipeline
                # resumes after it, it never filters across)
                self.overruns += 1
                end = item.first_sample + item.samples.shape[0]
                self.scheduler.report_gap(item.first_sample, end, pb.SHED_QUEUE_FULL)
                return
            self._queued_blocks += 1
        self.blocks.put_nowait((item, t_ns))

    # ------------------------------------------------------------ stages
    async def _pipeline_stage(self) -> None:
        while True:
            self._beats["pipeline"] = time.monotonic()
            try:
                item, t_ns = await asyncio.wait_for(self.blocks.get(), 1.0)
            except TimeoutError:
                continue
            if isinstance(item, StreamStart):
                self._on_stream(item)
                continue
            if isinstance(item, Gap):
                self._on_gap(item)
                continue
            self._queued_blocks -= 1
            self._busy = True
            try:
                await self._process(item, t_ns)
            finally:
                self._busy = False

    async def _process(self, block: Block, t_ns: int) -> None:
        first, n = block.first_sample, block.samples.shape[0]
        self.last_sample, self.last_t_ns = first + n, t_ns
        if not self._config.running:
            self.scheduler.report_gap(first, first + n, pb.SHED_STOPPED)
            return
        self.scheduler.raw.push(block, t_ns)
        worker = self.worker
        assert worker is not None
        t0 = time.perf_counter()
        try:
            out = await worker.process(block, t_ns)
        except BaseException:
            # the watchdog restarts the stage; the host learns which samples were lost
            self.scheduler.report_gap(first, first + n, pb.SHED_QUEUE_FULL, n)
            raise
        self.stage_seconds["pipeline"] = self.stage_seconds.get("pipeline", 0.0) + (
            time.perf_counter() - t0)
        for p in out.packets:
            self.scheduler.submit(p)
        if out.spikes_lost:
            self.scheduler.account_at_source(SPIKES, out.spikes_lost, out.first, out.end,
                                             pb.SHED_QUEUE_FULL)

    def _on_gap(self, gap: Gap) -> None:
        """Reported once, with its exact range; the pipeline resumes after it."""
        reason = pb.SHED_IMPLANT_FORMAT if gap.kind == "format" else pb.SHED_IMPLANT_GAP
        self.scheduler.report_gap(gap.start, gap.end, reason, gap.end - gap.start)
        if gap.kind == "discontinuity":
            log.warning("implant counter discontinuity at sample %d (implant restarted?): the "
                        "stream goes on, the pipeline resumes", gap.start)

    def _on_stream(self, start: StreamStart) -> None:
        """A stream starts: the first one, or a confirmed change of the implant's format (a
        new stream: a fresh stage for it, reported to the host as a gap and in a log)."""
        first, fs, c = start.first_sample, float(start.sampling_rate), start.n_channels
        if start.change:
            was = self.stream or (0.0, 0)
            log.warning("implant format changed at sample %d: %d channels at %.0f Hz "
                        "(%d samples per frame), was %d channels at %.0f Hz: new stream", first,
                        c, fs, start.frame_samples, was[1], was[0])
        self.stream = (fs, c)
        pos = self.opts.probe_positions
        if pos is not None and pos.shape[0] != c:
            log.error("the probe has %d contacts but the implant sends %d channels: running "
                      "without geometry (no spatial de-duplication)", pos.shape[0], c)
            pos = None
        self.positions = pos
        self.scheduler.fs = fs
        self.scheduler.raw.set_stream(fs, c)
        fitted = fit_to_stream(self._config, fs, c)
        if fitted != self._config:
            self._config = fitted
            self.scheduler.raw.configure(fitted.raw_channels, fitted.raw_codec)
        old = self.worker
        if old is not None:                  # a format change: the old stage retires
            self._retired_blocks += old.stage.blocks
            old.abandon()                    # idle: the pipeline stage awaits each block
        self.worker = self._new_worker()
        self.assembler.set_block_samples(self._block_samples(self._config))
        prev = self.prev_state.last_sample
        if (not start.change and prev is not None and prev < first
                and self.prev_state.n_channels == c):
            log.warning("hub restarted: samples %d–%d were never processed", prev, first)
            self.scheduler.report_gap(prev, first, pb.SHED_HUB_RESTART, first - prev)
        log.info("implant stream: %d channels at %.0f Hz from sample %d", c, fs, first)
        self.last_sample, self.last_t_ns = first, time.monotonic_ns()
        self.scheduler.submit(self.packer.time_sync(self.time_sync(0)))

    async def _telemetry_stage(self) -> None:
        wd = watchdog_interval()
        last_wd = 0.0
        while True:
            self._beats["telemetry"] = time.monotonic()
            await asyncio.sleep(self.opts.telemetry_s)
            self.cpu_load = self.cpu.read()
            tel = self._telemetry()
            # the implant's description, for recordings: now and then, and on a new connection
            key = (self.uplink.stats.connects, self.stream[1] if self.stream else 0)
            if self._telemetry_count % 10 == 0 or key != self._probe_key:
                self._probe_key = key
                tel.probe.CopyFrom(self._probe_info())
            self._telemetry_count += 1
            self.scheduler.submit(self.packer.telemetry(tel, self.last_sample))
            if self.last_t_ns:
                self.scheduler.submit(self.packer.time_sync(self.time_sync(0)))
            self.scheduler.request_report()
            self._save_state()
            now = time.monotonic()
            if wd and now - last_wd >= wd and self._healthy():
                sd_notify("WATCHDOG=1")
                last_wd = now

    async def _sender_stage(self) -> None:
        self._beats["sender"] = time.monotonic()
        await self.scheduler.run()

    def _healthy(self) -> bool:
        now = time.monotonic()
        return all(now - self._beats.get(name, now) < self.opts.stage_timeout_s
                   for name in ("pipeline", "telemetry"))

    def _save_state(self) -> None:
        if self.stream is not None:
            self.store.save_state(HubState(self.last_sample, self.stream[0], self.stream[1],
                                           self.session_id))

    def stage_counters(self) -> StageCounters:
        """The current stage's counters, plus the blocks of stages it replaced."""
        c = (self.worker.stage.counters() if self.worker is not None
             else StageCounters(0, 0, self._version, {}))
        return dataclasses.replace(c, blocks=c.blocks + self._retired_blocks)

    def _telemetry(self) -> pb.Telemetry:
        sch, ls, us = self.scheduler, self.parser.stats, self.uplink.stats
        sc = self.stage_counters()
        fs, c = self.stream or (0.0, 0)
        return pb.Telemetry(
            selftest=self.opts.selftest,
            cpu_load=self.cpu_load, kernel_seconds=sc.kernel_seconds,
            classes=sch.counters(), link_frames=ls.frames, link_corrupt=ls.corrupt,
            link_missing_frames=self.assembler.missing_frames, link_bytes=ls.bytes,
            link_garbage_bytes=ls.garbage_bytes, budget_bps=sch.budget_bps,
            uplink_bps=sch.throughput_bps, uplink_chunks=us.chunks_sent,
            uplink_connects=us.connects, raw_channels_sent=sch.raw_channels,
            temperature_c=temperature_c(), battery_pct=battery_pct(),
            stage_restarts=self.stage_restarts, stage_seconds=self.stage_seconds,
            blocks=sc.blocks, overruns=self.overruns, running=self._config.running,
            config_json=json.dumps(self._config.to_dict()), n_channels=c,
            sampling_frequency=fs, link_health=self._link_health(),
            hub_version=HUB_VERSION)

    def _link_health(self) -> pb.LinkHealth:
        a, t, u = self.assembler.stats, self.transport, self.uplink.stats.extra
        return pb.LinkHealth(
            duplicate_frames=a.duplicates, stale_frames=a.stale, foreign_frames=a.foreign,
            discontinuities=a.discontinuities, format_changes=a.format_changes,
            implant_connections=t.connections, squatters_dropped=t.squatters_dropped,
            implants_refused=t.refused,
            uplink_auth_timeouts=int(u.get("auth_timeouts", 0)),
            uplink_refused=int(u.get("refused", 0)))

    # ------------------------------------------------------------ task tree
    def _spawn(self, name: str) -> None:
        self._beats[name] = time.monotonic()
        self._tasks[name] = asyncio.create_task(self._factories[name](), name=name)

    async def _watchdog(self) -> None:
        while not self._stop.is_set():
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for name, task in list(self._tasks.items()):
                stuck = now - self._beats.get(name, now) > self.opts.stage_timeout_s
                if task.done() or (stuck and name in ("pipeline", "telemetry")):
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        log.error("stage %s failed: %r; restarting", name, task.exception())
                    else:
                        log.error("stage %s stopped beating; restarting", name)
                        task.cancel()
                    if name == "pipeline":
                        self._restart_stage()
                    self.stage_restarts += 1
                    self._spawn(name)

    def _restart_stage(self) -> None:
        """A fresh stage object on a fresh thread; the old worker (maybe wedged in a kernel)
        keeps the old one, and the calls waiting on it fail now."""
        old = self.worker
        if old is None:
            return
        old.abandon()
        self._retired_blocks += old.stage.blocks
        self.worker = self._new_worker()
        if self._templates is not None and self._config.pipeline.sort:
            self._reload = asyncio.create_task(self._reload_templates(self.worker,
                                                                      self._templates))

    async def _reload_templates(self, worker: StageWorker, templates: Templates) -> None:
        assert self.stream is not None
        try:
            await worker.load_templates(self._template_set(templates))
            log.info("restarted stage: templates re-loaded")
        except (ValueError, LookupError, RuntimeError) as e:
            log.error("restarted stage: templates not re-loaded (%s)", e)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.uplink.start(self._on_command)
        await self.transport.start(self._on_link_data, self._on_link_closed)
        self._write_ready()
        self._factories = {"pipeline": self._pipeline_stage, "telemetry": self._telemetry_stage,
                           "sender": self._sender_stage, "commands": self.commands.run}
        for name in self._factories:
            self._spawn(name)
        watchdog = asyncio.create_task(self._watchdog())
        sd_notify("READY=1")
        log.info("hub running: session %08x, implant link %s", self.session_id,
                 self.transport.address)
        await self._stop.wait()
        sd_notify("STOPPING=1")
        log.info("SIGTERM: flushing")
        await self.transport.stop()
        for item in self.assembler.flush():
            self._queue_block(item, time.monotonic_ns())
        while ((not self.blocks.empty() or self._busy or not self.commands.idle)
               and not self._tasks["pipeline"].done()):
            await asyncio.sleep(0.02)
        watchdog.cancel()
        self._tasks["pipeline"].cancel()
        self._tasks["telemetry"].cancel()
        self._tasks["commands"].cancel()      # anything still queued gets its error result
        self.cpu_load = self.cpu.read()
        self.scheduler.submit(self.packer.telemetry(self._telemetry(), self.last_sample))
        if not await self.scheduler.drain(self.opts.drain_s):
            self.scheduler.shed_all(pb.SHED_STOPPED)
        self.scheduler.request_report(final=True)
        await self.scheduler.drain(1.0)
        self._tasks["sender"].cancel()
        self._save_state()
        await self.uplink.stop()
        if self.worker is not None:
            self.worker.close()
        log.info("hub stopped: %s", {c: (s.produced, s.sent, s.shed)
                                     for c, s in self.scheduler.classes.items()})
        return 0

    def _write_ready(self) -> None:
        if self.opts.ready_file is None:
            return
        info = {"pid": os.getpid(), "implant": self.transport.address,
                "uplink": getattr(self.uplink, "address", ""), "session_id": self.session_id}
        atomic_write(self.opts.ready_file, json.dumps(info))

