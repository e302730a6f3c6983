"""TCP uplink for bench use and tests: the hub listens, one host at a time.

Hub → host: each chunk as ``u16 LE length`` + chunk bytes. Host → hub: the same, one command
chunk per record (the BLE CONTROL write equivalent). A token bucket caps the throughput like a
radio would (``rate_bps``; None = uncapped), and a link-model schedule changes the cap or cuts
the link for a while (``"10:rate=260e3,20:outage=5"``: seconds after the first host connected).
During a cut the socket stays open but nothing flows and ``connected`` is False, as when a radio
is out of range.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from hub.uplink.base import CommandHandler, Uplink
from hub.wire import DEFAULT_PAYLOAD_SIZE

log = logging.getLogger(__name__)


class UplinkError(ValueError):
    """A bad uplink address or link-model schedule."""


def parse_schedule(spec: str) -> list[tuple[float, str, float]]:
    """``"T:rate=BPS,T:outage=S"`` → [(t, "rate"|"outage", value)], sorted by time."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            t, _, action = item.partition(":")
            key, _, value = action.partition("=")
            if key not in ("rate", "outage"):
                raise ValueError(f"unknown action {key!r}")
            out.append((float(t), key, float(value)))
        except ValueError as e:
            raise UplinkError(f"link schedule item {item!r}: {e} (want T:rate=BPS or "
                              "T:outage=SECONDS)") from e
    return sorted(out)


class TokenBucket:
    """Bytes may leave at ``rate_bps``/8 per second with a small burst."""

    def __init__(self, rate_bps: float | None, burst_bytes: int = 1024) -> None:
        self.burst = burst_bytes
        self.set_rate(rate_bps)
        self._tokens = float(burst_bytes)
        self._t = time.monotonic()

    def set_rate(self, rate_bps: float | None) -> None:
        if rate_bps is not None and rate_bps <= 0:
            raise UplinkError(f"rate {rate_bps} bit/s must be > 0")
        self.rate_bps = rate_bps

    async def take(self, n: int) -> None:
        if self.rate_bps is None:
            return
        while True:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate_bps / 8)
            self._t = now
            if self._tokens >= n:
                self._tokens -= n
                return
            await asyncio.sleep((n - self._tokens) * 8 / self.rate_bps)


class TcpUplink(Uplink):
    def __init__(self, host: str = "127.0.0.1", port: int = 0, rate_bps: float | None = None,
                 payload_size: int = DEFAULT_PAYLOAD_SIZE, schedule: str = "") -> None:
        super().__init__()
        self.host, self.port = host, port
        self._payload_size = payload_size
        self.bucket = TokenBucket(rate_bps, burst_bytes=max(2 * payload_size, 512))
        self.schedule = parse_schedule(schedule)
        self._server: asyncio.Server | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._schedule_task: asyncio.Task[None] | None = None
        self._outage_until = 0.0
        self._serve_task: asyncio.Task[None] | None = None
        self._on_command: CommandHandler | None = None
        self.outages = 0

    @property
    def payload_size(self) -> int:
        return self._payload_size

    @property
    def connected(self) -> bool:
        return self._writer is not None and time.monotonic() >= self._outage_until

    @property
    def nominal_bps(self) -> float | None:
        return self.bucket.rate_bps

    @property
    def address(self) -> str:
        return f"tcp:{self.host}:{self.port}"

    async def start(self, on_command: CommandHandler) -> None:
        self._on_command = on_command
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("TCP uplink listening on %s (cap %s bit/s)", self.address, self.bucket.rate_bps)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:
            log.warning("TCP uplink: a host is already connected; refusing another")
            writer.close()
            return
        self._writer = writer
        self._serve_task = asyncio.current_task()
        self.stats.connects += 1
        log.info("host connected to the TCP uplink")
        if self.schedule and self._schedule_task is None:
            self._schedule_task = asyncio.create_task(self._run_schedule())
        try:
            while True:
                head = await reader.readexactly(2)
                chunk = await reader.readexactly(int.from_bytes(head, "little"))
                if self._on_command is not None:
                    self._on_command(chunk)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
                self.stats.disconnects += 1
                log.info("host disconnected from the TCP uplink")
            writer.close()

    async def _run_schedule(self) -> None:
        t0 = time.monotonic()
        for t, key, value in self.schedule:
            await asyncio.sleep(max(0.0, t0 + t - time.monotonic()))
            if key == "rate":
                log.info("link model: cap now %.0f bit/s", value)
                self.bucket.set_rate(value)
            else:
                log.info("link model: outage for %.1f s", value)
                self.cut(value)

    def cut(self, seconds: float) -> None:
        """Nothing flows for ``seconds`` (the peer stays attached, as a radio out of range)."""
        self._outage_until = time.monotonic() + seconds
        self.outages += 1
        self.stats.disconnects += 1
        asyncio.get_running_loop().call_later(seconds, self._end_outage)

    def _end_outage(self) -> None:
        if self._writer is not None:
            self.stats.connects += 1

    async def send(self, chunk: bytes) -> bool:
        if len(chunk) > self._payload_size:
            raise ValueError(f"chunk of {len(chunk)} bytes exceeds payload_size "
                             f"{self._payload_size}")
        if not self.connected:
            self.stats.send_refused += 1
            return False
        await self.bucket.take(len(chunk))
        w = self._writer
        if w is None or not self.connected:
            self.stats.send_refused += 1
            return False
        try:
            w.write(len(chunk).to_bytes(2, "little") + chunk)
            await w.drain()
        except (ConnectionError, OSError):
            return False
        self.stats.chunks_sent += 1
        self.stats.bytes_sent += len(chunk)
        return True

    async def stop(self) -> None:
        for task in (self._schedule_task,):
            if task is not None:
                task.cancel()
        if self._writer is not None:
            w, self._writer = self._writer, None
            with contextlib.suppress(ConnectionError, OSError):
                await w.drain()
            w.close()
        if self._serve_task is not None:        # let the reader see EOF and finish
            await asyncio.wait([self._serve_task], timeout=1.0)
        if self._server is not None:
            self._server.close()
