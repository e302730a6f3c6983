"""The TCP uplink under a hostile or broken host: a reset never wedges the sender, a host that
never reads never blocks shutdown, and repeated failures back off."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from pathlib import Path

import pytest

from hub.daemon.scheduler import SPIKES, Packet, Scheduler
from hub.uplink.base import CommandHandler, Uplink
from hub.uplink.tcp import TcpUplink
from hub.wire import pb

MAX_FAILED_SENDS = 1000


def packet(stream: pb.Stream, first: int, size: int = 600) -> Packet:
    env = pb.Envelope(stream=stream, sample_index=first)
    env.log.message = "x" * size
    return Packet(stream, env.SerializeToString(), 1, first, first + 10)


def rst_close(sock: socket.socket) -> None:
    """Closes with a TCP reset (SO_LINGER 0), as a crashed or hostile host does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def connect_host(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"\x00\x00")          # hello: an empty record (the host is a receiver)
    return s


def _host_reads_once_then_resets(port: int) -> None:
    s = connect_host(port)
    s.recv(4096)
    rst_close(s)


def test_reset_host_does_not_wedge_the_sender() -> None:
    """Reproduces the RST wedge: a host resets the connection while the sender is busy; on the
    old code ``send`` failed without suspending and the scheduler retried at once, forever
    (100 % CPU, event loop starved, SIGTERM ignored). Now the dead peer is dropped at its first
    failure, failures back off, and the loop keeps turning."""

    async def go() -> int:
        up = TcpUplink("127.0.0.1", 0, rate_bps=None)
        await up.start(lambda _b: None)
        sch = Scheduler(up, fs=30000.0)
        failures = [0]
        send = up.send

        async def counted(chunk: bytes) -> bool:
            ok = await send(chunk)
            failures[0] = 0 if ok else failures[0] + 1
            if failures[0] >= MAX_FAILED_SENDS:
                raise AssertionError(f"{MAX_FAILED_SENDS} failed sends in a row: the sender "
                                     "retries a dead peer without backing off")
            return ok

        up.send = counted  # type: ignore[method-assign]
        for i in range(20_000):            # ~12 MB queued: the sender is busy when RST lands
            sch.submit(packet(SPIKES, i))
        loop = asyncio.get_running_loop()
        host = loop.run_in_executor(None, _host_reads_once_then_resets, up.port)
        sender = asyncio.create_task(sch.run())
        await host
        while up.connected or up.stats.connects == 0:   # the loop turns: other tasks run
            await asyncio.sleep(0.005)
            if sender.done():
                sender.result()            # re-raises the wedge assertion
        sch.submit(packet(SPIKES, 30_000))
        await asyncio.sleep(0.05)
        assert not sender.done()
        sender.cancel()
        await asyncio.wait_for(up.stop(), 10.0)
        return up.stats.disconnects

    assert asyncio.run(asyncio.wait_for(go(), 60.0)) == 1


class RefusingUplink(Uplink):
    """Claims a peer but refuses every chunk without suspending (a broken uplink)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @property
    def payload_size(self) -> int:
        return 244

    @property
    def connected(self) -> bool:
        return True

    async def start(self, on_command: CommandHandler) -> None:
        pass

    async def send(self, chunk: bytes) -> bool:
        self.calls += 1
        if self.calls >= MAX_FAILED_SENDS:
            raise AssertionError("the scheduler retries a failing uplink without backing off")
        return False

    async def stop(self) -> None:
        pass


def test_scheduler_backs_off_when_the_uplink_keeps_failing(
        caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> RefusingUplink:
        up = RefusingUplink()
        sch = Scheduler(up, fs=30000.0)
        sch.submit(packet(SPIKES, 0))
        task = asyncio.create_task(sch.run())
        for _ in range(20):                 # the loop keeps turning meanwhile
            await asyncio.sleep(0.01)
        assert not task.done() or task.result() is None
        task.cancel()
        return up

    with caplog.at_level(logging.WARNING, logger="hub.daemon.scheduler"):
        up = asyncio.run(asyncio.wait_for(go(), 30.0))
    assert 1 <= up.calls < MAX_FAILED_SENDS
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1


def test_repeated_warnings_become_a_bounded_number_of_log_packets() -> None:
    """A failure logged 10 000 times in a burst: at most the burst reaches the loop as LOG
    packets (on the old code, every record queued a callback and a packet)."""
    from types import SimpleNamespace

    from hub.cmd_run import HostLogHandler
    from hub.daemon.packets import Packer

    async def go() -> list[Packet]:
        sent: list[Packet] = []
        daemon = SimpleNamespace(packer=Packer(1), scheduler=SimpleNamespace(submit=sent.append))
        handler = HostLogHandler(daemon, asyncio.get_running_loop(),  # type: ignore[arg-type]
                                 clock=lambda: 0.0)      # frozen: the burst alone
        logger = logging.getLogger("test.flood")
        logger.addHandler(handler)
        logger.propagate = False
        try:
            for i in range(10_000):
                logger.warning("socket.send() raised exception (%d)", i)
        finally:
            logger.removeHandler(handler)
        await asyncio.sleep(0)
        return sent

    sent = asyncio.run(go())
    assert 1 <= len(sent) <= 20


@pytest.mark.slow
def test_sigterm_with_a_host_that_never_reads_is_bounded(tmp_path: Path) -> None:
    """The daemon's SIGTERM path with a host that said hello and then never reads: on the old
    code ``uplink.stop()`` awaited the socket's drain forever (> 35 s in the adversary's run,
    unbounded in fact). Now the drain has a deadline and the rest is reported shed."""
    from hub.daemon.supervisor import Daemon, DaemonOptions

    async def go() -> int:
        up = TcpUplink("127.0.0.1", 0, rate_bps=None)
        daemon = Daemon(DaemonOptions(implant="tcp:127.0.0.1:0", state_dir=tmp_path,
                                      drain_s=0.5), up)
        run = asyncio.create_task(daemon.run())
        while up.port == 0:
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        host = await loop.run_in_executor(None, connect_host, up.port)
        await up.wait_connected(10.0)
        for i in range(20_000):             # ~12 MB: far more than the sockets hold
            daemon.scheduler.submit(packet(SPIKES, i))
        for _ in range(3000):               # until the sender blocks on the full socket
            if up._sending_since is not None:
                break
            await asyncio.sleep(0.01)
        daemon._stop.set()                  # what SIGTERM does
        try:
            return await asyncio.wait_for(run, 60.0)
        finally:
            host.close()

    assert asyncio.run(go()) == 0


def test_idle_squatter_on_the_uplink_port_never_blocks_the_host() -> None:
    """An idle client connects first and says nothing: it is dropped after the hello deadline
    and, meanwhile, the real host (hello) owns the link and receives data. On the old code the
    squatter held the only slot and the host was refused."""

    async def go() -> tuple[bytes, float]:
        up = TcpUplink("127.0.0.1", 0, rate_bps=None, auth_s=0.5)
        await up.start(lambda _b: None)
        loop = asyncio.get_running_loop()
        squatter = await loop.run_in_executor(
            None, socket.create_connection, ("127.0.0.1", up.port))
        await asyncio.sleep(0.1)
        host = await loop.run_in_executor(None, connect_host, up.port)
        assert await up.wait_connected(10.0)
        assert await up.send(b"hello host")
        host.settimeout(10.0)
        got = await loop.run_in_executor(None, host.recv, 100)
        squatter.settimeout(10.0)
        gone = await loop.run_in_executor(None, squatter.recv, 100)   # b"": dropped
        assert gone == b""
        await up.stop()
        host.close()
        squatter.close()
        return got, up.stats.extra["auth_timeouts"]

    got, timeouts = asyncio.run(asyncio.wait_for(go(), 60.0))
    assert got == b"\x0a\x00hello host" and timeouts == 1


def test_a_second_host_never_displaces_a_live_owner_but_replaces_a_stalled_one() -> None:
    async def go() -> tuple[float, float]:
        up = TcpUplink("127.0.0.1", 0, rate_bps=None, stall_s=0.3)
        await up.start(lambda _b: None)
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(None, connect_host, up.port)
        await up.wait_connected(10.0)
        owner = up._owner
        second = await loop.run_in_executor(None, connect_host, up.port)
        second.settimeout(10.0)
        assert await loop.run_in_executor(None, second.recv, 10) == b""   # refused
        assert up._owner is owner
        sending = asyncio.create_task(_fill(up))     # ``first`` never reads: the owner stalls
        while up._sending_since is None or not up._owner_stalled():
            await asyncio.sleep(0.05)
        third = await loop.run_in_executor(None, connect_host, up.port)
        while up._owner is owner:
            await asyncio.sleep(0.01)
        sending.cancel()
        assert up._owner is not None
        await up.stop()
        for s in (first, second, third):
            s.close()
        return up.stats.extra["refused"], up.stats.extra["takeovers"]

    assert asyncio.run(asyncio.wait_for(go(), 60.0)) == (1, 1)


async def _fill(up: TcpUplink) -> None:
    while True:
        await up.send(b"x" * 240)
