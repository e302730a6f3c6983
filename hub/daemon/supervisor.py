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
import concurrent.futures
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

from hub.daemon.config_store import ConfigStore, HubConfig, atomic_write
from hub.daemon.control import Control, Templates, UnsupportedError
from hub.daemon.engine import PipelineStage
from hub.daemon.packets import Packer
from hub.daemon.rawcodec import RawCodec
from hub.daemon.scheduler import RAW, SPIKES, Scheduler, SchedulerConfig
from hub.daemon.telemetry import CpuMeter, battery_pct, sd_notify, temperature_c, watchdog_interval
from hub.dsp.pipeline import ConfigError
from hub.link import BlockAssembler, FrameParser, Gap
from hub.link.blocks import Block
from hub.link.transport import LinkTransport
from hub.uplink.base import Uplink
from hub.wire import Reassembler, pb

log = logging.getLogger(__name__)


@dataclass
class DaemonOptions:
    implant: str                         # implant link address (hub.link.transport)
    state_dir: Path
    telemetry_s: float = 1.0
    stage_timeout_s: float = 5.0         # a stage silent this long is restarted
    drain_s: float = 3.0                 # SIGTERM: time to send what is queued
    ready_file: Path | None = None       # JSON with the bound addresses, once listening
    block_queue: int = 100               # blocks waiting for the worker (1 s at 10 ms)
    #: Contact positions (µm) of the implant's channels: spatial de-duplication and
    #: multi-channel snippets need them; None: every channel stands alone.
    probe_positions: npt.NDArray[np.float64] | None = None
    #: The kernels' start-up self-test, reported in every telemetry packet.
    selftest: pb.KernelSelfTest | None = None


class Daemon:
    """Implements :class:`hub.daemon.control.HubApi` for the control plane."""

    def __init__(self, opts: DaemonOptions, uplink: Uplink) -> None:
        self.opts, self.uplink = opts, uplink
        self.store = ConfigStore(opts.state_dir)
        self.session_id = random.getrandbits(32)
        self._config = self.store.load_config() or HubConfig()
        self.prev_state = self.store.load_state()
        self.packer = Packer(self.session_id)
        self.scheduler = Scheduler(uplink, fs=float(self.prev_state.get("fs", 30000.0)),
                                   session_id=self.session_id,
                                   cfg=SchedulerConfig(outage_buffer_s=self._config.outage_buffer_s))
        self.control = Control(self)
        self.cmd_reassembler = Reassembler()
        self.parser = FrameParser()
        self.assembler = BlockAssembler(block_samples=300)
        self.transport = LinkTransport(opts.implant)
        self.stage = PipelineStage(self.packer, self._config)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kernels")
        self.blocks: asyncio.Queue[tuple[Block | Gap, int]] = asyncio.Queue(opts.block_queue)
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
        self._first_block = True
        self._busy = False
        self.stage_seconds: dict[str, float] = {}

    # ------------------------------------------------------------ HubApi
    @property
    def config(self) -> HubConfig:
        return self._config

    @property
    def sampling_frequency(self) -> float:
        return self.stage.fs or float(self.prev_state.get("fs", 30000.0))

    @property
    def n_channels(self) -> int | None:
        return self.stage.n_channels or None

    def apply_config(self, cfg: HubConfig) -> None:
        rebuild = None
        same_filters = dataclasses.replace(cfg.pipeline, threshold=self._config.pipeline.threshold)
        if self.stage.n_channels and same_filters != self._config.pipeline:
            rebuild = self.stage.build(cfg)          # raises: nothing changes
        self.store.save_config(cfg)
        self._config = cfg
        self.scheduler.cfg.outage_buffer_s = cfg.outage_buffer_s
        if self.stage.n_channels:
            self.stage.hand_over(cfg, rebuild)
            if rebuild is not None:
                self.assembler.set_block_samples(rebuild.block_samples)
        else:
            self.stage.cfg = cfg
        log.info("configuration applied: %s", json.dumps(cfg.to_dict()))

    def set_running(self, running: bool) -> None:
        self.apply_config(dataclasses.replace(self._config, running=running))

    def load_templates(self, templates: Templates) -> None:
        """Hands validated templates to the online sorter, in the worker thread (serialised
        with the blocks it sorts); raises ValueError and changes nothing when it refuses."""
        sorter = getattr(self.stage.pipeline, "sorter", None)
        if sorter is None or not hasattr(sorter, "load_templates"):
            raise UnsupportedError("no online sorter is running (Configure sort=true first, "
                                   "with the implant streaming)")
        dense = templates.dense(self.stage.n_channels)
        fut = self.executor.submit(sorter.load_templates, templates.unit_ids, dense)
        fut.result(timeout=5.0)

    def status(self) -> pb.Telemetry:
        return self._telemetry()

    def time_sync(self, host_time_ns: int) -> pb.TimeSync:
        return pb.TimeSync(sample_index=self.last_sample, hub_time_ns=self.last_t_ns,
                           sampling_frequency=self.stage.fs, host_time_ns=host_time_ns)

    # ------------------------------------------------------------ inputs
    def _on_command(self, chunk: bytes) -> None:
        for payload in self.cmd_reassembler.feed(chunk):
            self.scheduler.submit(self.packer.result(self.control.handle(payload)))

    def _on_link_data(self, data: bytes) -> None:
        t_ns = time.monotonic_ns()
        for frame in self.parser.feed(data):
            for item in self.assembler.push(frame):
                self._queue_block(item, t_ns)

    def _queue_block(self, item: Block | Gap, t_ns: int) -> None:
        try:
            self.blocks.put_nowait((item, t_ns))
        except asyncio.QueueFull:          # the worker fell behind: the block becomes a gap
            self.overruns += 1
            if isinstance(item, Block):
                end = item.first_sample + item.samples.shape[0]
                self.scheduler.report_gap(item.first_sample, end, pb.SHED_QUEUE_FULL)

    # ------------------------------------------------------------ stages
    async def _pipeline_stage(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._beats["pipeline"] = time.monotonic()
            try:
                item, t_ns = await asyncio.wait_for(self.blocks.get(), 1.0)
            except TimeoutError:
                continue
            if isinstance(item, Gap):
                self.scheduler.report_gap(item.start, item.end, pb.SHED_IMPLANT_GAP,
                                          item.end - item.start)
                continue
            self._busy = True
            try:
                await self._process(loop, item, t_ns)
            finally:
                self._busy = False

    async def _process(self, loop: asyncio.AbstractEventLoop, block: Block, t_ns: int) -> None:
        first, n = block.first_sample, block.samples.shape[0]
        if self._first_block:
            self._first_block = False
            self._on_first_block(first)
        self.last_sample, self.last_t_ns = first + n, t_ns
        if not self._config.running:
            self.scheduler.report_gap(first, first + n, pb.SHED_STOPPED)
            return
        n_avail = (len(self._config.raw_channels) if self._config.raw_channels is not None
                   else self.stage.n_channels)
        rc = self.stage.raw_codec
        self.scheduler.raw_bits_per_sample = (16.0 / rc.ratio if rc is not None
                                              and self._config.raw_codec else 16.0)
        n_raw = self.scheduler.raw_channels_fit(n_avail)
        t0 = time.perf_counter()
        try:
            out = await loop.run_in_executor(self.executor, self.stage.process, block, t_ns,
                                             n_raw)
        except Exception:
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
        if out.raw_shed:
            reason = pb.SHED_BUDGET if self.uplink.connected else pb.SHED_OUTAGE
            self.scheduler.account_at_source(RAW, len(out.raw_shed) * n, out.first, out.end,
                                             reason, tuple(out.raw_shed))

    def _on_first_block(self, first: int) -> None:
        fs, c = float(self.assembler.sampling_rate), self.assembler.n_channels
        self.stage.set_stream(fs, c)
        pos = self.opts.probe_positions
        if pos is not None and pos.shape[0] != c:
            log.error("the probe has %d contacts but the implant sends %d channels: running "
                      "without geometry (no spatial de-duplication)", pos.shape[0], c)
            pos = None
        self.stage.positions = pos
        self.stage.raw_codec = RawCodec(fs)
        self.scheduler.fs = fs
        try:
            self._config.validate(fs, c)
        except ConfigError as e:
            log.error("persisted configuration does not fit this implant (%s): defaults", e)
            self._config = HubConfig()
            self.stage.cfg = self._config
        self.assembler.set_block_samples(self.stage.block_samples)
        prev = self.prev_state.get("last_sample")
        if isinstance(prev, int) and prev < first and self.prev_state.get("n_channels") == c:
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
            self.scheduler.submit(self.packer.telemetry(self._telemetry(), self.last_sample))
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
        if self.stage.n_channels:
            self.store.save_state({"last_sample": self.last_sample, "fs": self.stage.fs,
                                   "n_channels": self.stage.n_channels,
                                   "session_id": self.session_id})

    def _telemetry(self) -> pb.Telemetry:
        sch, ls, us = self.scheduler, self.parser.stats, self.uplink.stats
        return pb.Telemetry(
            selftest=self.opts.selftest,
            cpu_load=self.cpu_load, kernel_seconds=self.stage.kernel_seconds(),
            classes=sch.counters(), link_frames=ls.frames, link_corrupt=ls.corrupt,
            link_missing_frames=self.assembler.missing_frames, link_bytes=ls.bytes,
            link_garbage_bytes=ls.garbage_bytes, budget_bps=sch.budget_bps,
            uplink_bps=sch.throughput_bps, uplink_chunks=us.chunks_sent,
            uplink_connects=us.connects, raw_channels_sent=sch.raw_channels,
            temperature_c=temperature_c(), battery_pct=battery_pct(),
            stage_restarts=self.stage_restarts, stage_seconds=self.stage_seconds,
            blocks=self.stage.blocks, overruns=self.overruns, running=self._config.running,
            config_json=json.dumps(self._config.to_dict()), n_channels=self.stage.n_channels,
            sampling_frequency=self.stage.fs)

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
                if task.done() or (stuck and name != "sender"):
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        log.error("stage %s failed: %r; restarting", name, task.exception())
                    else:
                        log.error("stage %s stopped beating; restarting", name)
                        task.cancel()
                    if name == "pipeline":          # a wedged worker: give it a fresh thread
                        self.executor.shutdown(wait=False, cancel_futures=True)
                        self.executor = concurrent.futures.ThreadPoolExecutor(
                            1, thread_name_prefix="kernels")
                    self.stage_restarts += 1
                    self._spawn(name)

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.uplink.start(self._on_command)
        await self.transport.start(self._on_link_data, self.parser.reset)
        self._write_ready()
        self._factories = {"pipeline": self._pipeline_stage, "telemetry": self._telemetry_stage,
                           "sender": self._sender_stage}
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
        while ((not self.blocks.empty() or self._busy)
               and not self._tasks["pipeline"].done()):
            await asyncio.sleep(0.02)
        watchdog.cancel()
        self._tasks["pipeline"].cancel()
        self._tasks["telemetry"].cancel()
        self.cpu_load = self.cpu.read()
        self.scheduler.submit(self.packer.telemetry(self._telemetry(), self.last_sample))
        if not await self.scheduler.drain(self.opts.drain_s):
            self.scheduler.shed_all(pb.SHED_STOPPED)
        self.scheduler.request_report(final=True)
        await self.scheduler.drain(1.0)
        self._tasks["sender"].cancel()
        self._save_state()
        await self.uplink.stop()
        self.executor.shutdown(wait=True)
        log.info("hub stopped: %s", {c: (s.produced, s.sent, s.shed)
                                     for c, s in self.scheduler.classes.items()})
        return 0

    def _write_ready(self) -> None:
        if self.opts.ready_file is None:
            return
        info = {"pid": os.getpid(), "implant": self.transport.address,
                "uplink": getattr(self.uplink, "address", ""), "session_id": self.session_id}
        atomic_write(self.opts.ready_file, json.dumps(info))

