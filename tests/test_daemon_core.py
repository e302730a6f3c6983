"""The daemon's core in process: commands never block the event loop, a restarted pipeline
stage is a fresh object, every command gets exactly one result."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hil.implant import synth_recording
from hub.daemon.supervisor import Daemon, DaemonOptions
from hub.link import encode_frame
from hub.uplink.tcp import TcpUplink
from hub.wire import SCHEMA_VERSION, Chunker, pb

REC = synth_recording("synth:16:30000:3")
TEMPLATES = pb.LoadTemplates(n_units=2, n_channels=1, n_samples=48, waveforms=[-50.0] * 96,
                             channels=[0, 5], unit_ids=[7, 9])


def chunks(rid: int, **kw: Any) -> list[bytes]:
    cmd = pb.Command(request_id=rid, schema_version=SCHEMA_VERSION, **kw)
    return Chunker().chunks(cmd.SerializeToString())


class Harness:
    """A daemon with an implant link fed from here and the results it queues captured."""

    def __init__(self, tmp_path: Path, **opts: Any) -> None:
        self.daemon = Daemon(DaemonOptions(implant="tcp:127.0.0.1:0", state_dir=tmp_path,
                                           **opts), TcpUplink(rate_bps=None))
        self.results: list[pb.CommandResult] = []
        submit = self.daemon.scheduler.submit

        def capture(pkt: Any) -> None:
            if pkt.stream == pb.STREAM_COMMAND_RESULT:
                self.results.append(pb.Envelope.FromString(pkt.body).result)
            submit(pkt)

        self.daemon.scheduler.submit = capture  # type: ignore[method-assign]
        self.k = 0

    async def start(self) -> None:
        self.run = asyncio.create_task(self.daemon.run())
        while self.daemon.transport.address.endswith(":0"):
            await asyncio.sleep(0.01)
        host, port = self.daemon.transport.address[4:].rsplit(":", 1)
        _, self.w = await asyncio.open_connection(host, int(port))

    async def stream(self, n: int, settle: float = 0.3) -> None:
        for _ in range(n):
            a = (self.k * 30) % (REC.num_samples - 30)
            self.w.write(encode_frame(self.k, np.ascontiguousarray(REC.read(a, a + 30)), 30000))
            self.k += 1
        await self.w.drain()
        await asyncio.sleep(settle)

    async def command(self, rid: int, **kw: Any) -> None:
        for c in chunks(rid, **kw):
            self.daemon._on_command(c)

    async def wait_results(self, n: int, limit: float = 20.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + limit
        while len(self.results) < n and loop.time() < end:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.daemon._stop.set()
        await self.run
        self.w.close()


@pytest.mark.slow
def test_load_templates_does_not_block_the_loop(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The sorter takes long to load templates: the command handler returns at once (the loop
    keeps serving), the result comes when the worker is done, and it is OK (it used to block
    the loop up to 5 s, then answer INTERNAL while the load still completed later)."""
    from hub.kernels.sorter import Sorter

    release = threading.Event()
    original = Sorter.load_templates

    def slow(self: Sorter, *a: Any, **kw: Any) -> None:
        release.wait(30)
        original(self, *a, **kw)

    monkeypatch.setattr(Sorter, "load_templates", slow)
    order: list[str] = []

    async def go() -> None:
        h = Harness(tmp_path)
        await h.start()
        await h.stream(100)
        await h.command(1, configure=pb.Configure(pipeline=pb.PipelineSettings(sort=True)))
        await h.stream(100)
        await h.wait_results(1)
        await h.command(2, load_templates=TEMPLATES)
        order.append("handler returned")
        await h.stream(100)                      # the loop still reads the implant link
        order.append(f"results before release: {len(h.results)}")
        release.set()
        await h.wait_results(2)
        await h.stream(50)
        await h.stop()
        order.append(",".join(pb.ResultCode.Name(r.code) for r in h.results))
        assert h.daemon.stage_counters().blocks >= 34     # 350 frames of 1 ms

    asyncio.run(go())
    assert order == ["handler returned", "results before release: 1", "RESULT_OK,RESULT_OK"]


@pytest.mark.slow
def test_wedged_worker_gives_a_fresh_stage_and_one_result(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """A worker wedged inside a kernel: the watchdog restarts the stage as a new object on a
    new thread (the wedged one keeps the old object), the stream goes on, and a command that
    was waiting on the wedged worker gets exactly one (error) result."""
    from hub.daemon.engine import PipelineStage

    wedge = threading.Event()
    original = PipelineStage.process
    seen: list[int] = []
    calls = [0]

    def process(self: PipelineStage, *a: Any) -> Any:
        calls[0] += 1
        if id(self) not in seen:
            seen.append(id(self))
        if calls[0] == 20:
            wedge.wait(60)                         # stuck in a kernel
        return original(self, *a)

    monkeypatch.setattr(PipelineStage, "process", process)

    async def go() -> list[pb.CommandResult]:
        h = Harness(tmp_path, stage_timeout_s=1.0)
        await h.start()
        await h.stream(250, settle=0.5)            # block 20 wedges the worker
        await h.command(5, configure=pb.Configure(pipeline=pb.PipelineSettings(threshold=6.0)))
        await h.wait_results(1, limit=10.0)
        await h.stream(300, settle=0.8)
        assert h.daemon.stage_restarts >= 1
        wedge.set()
        await h.stop()
        return h.results

    results = asyncio.run(go())
    assert len(seen) >= 2, "the restarted stage is a new object"
    assert [r.request_id for r in results] == [5]
    assert results[0].code == pb.RESULT_INTERNAL
