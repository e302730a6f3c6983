"""The host's BLE link, written only against bleak's public API.

``BleLink`` (a ``host_tools.hublink.HubLink``) finds the hub by name
(``BleakScanner.find_device_by_name``), connects (``BleakClient``), checks the service and
subscribes to DATA once per connection (``start_notify``); a disconnect (``disconnected_callback``)
ends the connection, and ``host_tools.hublink.stay_connected`` reconnects — the same loop as TCP.
With ``backend=None`` bleak picks the OS backend (BlueZ, CoreBluetooth, WinRT); for the virtual
radio pass ``host_tools.bleak_bumble.BumbleBackend(...)``, whose classes go to bleak's
``backend=``. ``hubctl record --ble`` goes through ``host_tools.session`` like ``--tcp``.

``BleReceiver`` is a BleLink bound to one chunk handler (link benchmarks and tests):

    python -m host_tools.ble_receiver --transport tcp-client:127.0.0.1:P --duration 10

decodes the synthetic chunks of hil.ble_source (sequence number + hub send time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from host_tools.hublink import ChunkHandler, HubLink, LinkError, stay_connected
from hub.wire import gatt
from hub.wire.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass
class ReceiverStats:
    connects: int = 0
    disconnects: int = 0
    subscribes: int = 0
    chunks: int = 0
    bytes: int = 0
    mtu: int = 0
    scan_misses: int = 0
    errors: list[str] = field(default_factory=list)
    connect_times: list[float] = field(default_factory=list)
    disconnect_times: list[float] = field(default_factory=list)


class BleLink(HubLink):
    """One hub over BLE: DATA notifications in, CONTROL writes out."""

    kind = "ble"

    def __init__(self, name: str, *, backend: Any = None, pair: bool = False,
                 scan_timeout: float = 10.0, owns_backend: bool = False) -> None:
        self.name = name
        self.backend = backend
        self.pair = pair
        self.scan_timeout = scan_timeout
        self.owns_backend = owns_backend
        self.stats = ReceiverStats()
        self.client: BleakClient | None = None
        self._lost = asyncio.Event()
        self.subscribed = asyncio.Event()
        self._on_chunk: ChunkHandler | None = None

    def describe(self) -> str:
        return f"ble:{self.name}"

    @property
    def connected(self) -> bool:
        return self.client is not None

    @property
    def command_chunk_size(self) -> int:
        return max(20, (self.client.mtu_size if self.client else 23) - 3)

    def _scanner_kwargs(self) -> dict[str, Any]:
        return {"backend": self.backend.scanner} if self.backend is not None else {}

    def _client_kwargs(self) -> dict[str, Any]:
        return {"backend": self.backend.client} if self.backend is not None else {}

    async def connect(self, on_chunk: ChunkHandler) -> None:
        try:
            await self.connect_bleak(on_chunk)
        except (BleakError, TimeoutError, OSError) as e:
            self.stats.errors.append(str(e))
            raise LinkError(f"{self.describe()}: {e or type(e).__name__}") from e

    async def connect_bleak(self, on_chunk: ChunkHandler) -> BleakClient:
        """One attempt; bleak's own exceptions (an ATT error keeps its code)."""
        device = await BleakScanner.find_device_by_name(self.name, timeout=self.scan_timeout,
                                                        **self._scanner_kwargs())
        if device is None:
            self.stats.scan_misses += 1
            raise BleakError(f"hub {self.name!r} not found")
        self._lost.clear()
        self._on_chunk = on_chunk
        client = BleakClient(device, disconnected_callback=self._on_disconnect,
                             pair=self.pair, timeout=self.scan_timeout,
                             **self._client_kwargs())
        await client.connect()
        try:
            if client.services.get_service(gatt.SERVICE_UUID) is None:
                raise BleakError(f"{self.name!r} has no implant-hub service")
            self.stats.connects += 1
            self.stats.connect_times.append(time.monotonic())
            self.stats.mtu = client.mtu_size
            await client.start_notify(gatt.DATA_UUID, self._on_notify)
            self.stats.subscribes += 1
        except BaseException:
            await client.disconnect()
            raise
        self.client = client
        self.subscribed.set()
        log.info("receiving from %s (MTU %d)", self.name, client.mtu_size)
        return client

    def _on_notify(self, _char: Any, data: bytearray) -> None:
        self.stats.chunks += 1
        self.stats.bytes += len(data)
        if self._on_chunk is not None:
            self._on_chunk(bytes(data), time.monotonic_ns())

    def _on_disconnect(self, _client: BleakClient) -> None:
        self.stats.disconnects += 1
        self.stats.disconnect_times.append(time.monotonic())
        self.subscribed.clear()
        self.client = None
        log.warning("link to %s lost", self.name)
        self._lost.set()

    async def wait_closed(self) -> None:
        if self.client is not None:
            await self._lost.wait()

    async def send_chunk(self, chunk: bytes) -> None:
        try:
            await self.write_control(chunk)
        except (BleakError, TimeoutError, OSError) as e:
            raise LinkError(f"{self.describe()}: CONTROL write: {e}") from e

    async def write_control(self, data: bytes) -> None:
        """One CONTROL write (with response): one chunk of a framed command."""
        if self.client is None:
            raise BleakError("not connected")
        await self.client.write_gatt_char(gatt.CONTROL_UUID, data, response=True)

    async def read_status(self) -> dict[str, Any]:
        """The STATUS characteristic (JSON)."""
        if self.client is None:
            raise BleakError("not connected")
        raw = await self.client.read_gatt_char(gatt.STATUS_UUID)
        status: dict[str, Any] = json.loads(bytes(raw))
        return status

    async def disconnect(self) -> None:
        client, self.client = self.client, None
        self.subscribed.clear()
        if client is not None:
            with contextlib.suppress(BleakError, OSError, TimeoutError):
                await client.disconnect()
        self._lost.set()

    async def aclose(self) -> None:
        await self.disconnect()
        if self.owns_backend and self.backend is not None and hasattr(self.backend, "close"):
            await self.backend.close()

    def counters(self) -> dict[str, Any]:
        st = self.stats
        return {"transport": "ble", "connects": st.connects, "disconnects": st.disconnects,
                "subscribes": st.subscribes, "mtu": st.mtu, "notifications": st.chunks,
                "bytes": st.bytes, "scan_misses": st.scan_misses, "errors": st.errors[-5:]}


class BleReceiver(BleLink):
    """A BleLink bound to one chunk handler: ``connect_once`` or ``run(stop)`` (reconnecting
    through ``stay_connected`` unless ``reconnect=False``)."""

    def __init__(self, name: str, on_chunk: ChunkHandler, *, backend: Any = None,
                 pair: bool = False, reconnect: bool = True, scan_timeout: float = 10.0,
                 retry_delay: float = 0.2) -> None:
        super().__init__(name, backend=backend, pair=pair, scan_timeout=scan_timeout)
        self.on_chunk = on_chunk
        self.reconnect = reconnect
        self.retry_delay = retry_delay

    async def connect_once(self) -> BleakClient:
        """Finds the hub, connects and subscribes once; raises BleakError on failure."""
        return await self.connect_bleak(self.on_chunk)

    async def run(self, stop: asyncio.Event, connect_timeout: float = math.inf) -> None:
        """Stays connected until ``stop`` is set, reconnecting after each loss."""
        await stay_connected(self, self.on_chunk, stop, connect_timeout=connect_timeout,
                             backoff=Backoff(base_s=self.retry_delay,
                                             cap_s=max(2.0, self.retry_delay)),
                             reconnect=self.reconnect)

    async def close(self) -> None:
        await self.disconnect()


async def _wait_any(ev: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ev.wait(), timeout)


# ---------------------------------------------------------------- synthetic-chunk statistics
SYNTH = struct.Struct("<IQ")


class SynthStats:
    """Sequence continuity and latency of hil.ble_source chunks."""

    def __init__(self) -> None:
        self.next_seq = 0
        self.received = 0
        self.gaps: list[tuple[int, int]] = []
        self.duplicates = 0
        self.latencies_ms: list[float] = []
        self.first_rx = 0
        self.last_rx = 0
        self.rx_bytes = 0

    def __call__(self, data: bytes, t_rx: int) -> None:
        seq, t_tx = SYNTH.unpack_from(data)
        if seq < self.next_seq:
            self.duplicates += 1
            return
        if seq > self.next_seq:
            self.gaps.append((self.next_seq, seq))
        self.next_seq = seq + 1
        self.received += 1
        self.rx_bytes += len(data)
        self.latencies_ms.append((t_rx - t_tx) / 1e6)
        self.first_rx = self.first_rx or t_rx
        self.last_rx = t_rx

    def summary(self, skip_first_s: float = 0.0) -> dict[str, Any]:
        import numpy as np

        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        span = (self.last_rx - self.first_rx) / 1e9
        return {
            "received": self.received, "next_seq": self.next_seq, "gaps": self.gaps[:20],
            "missing": sum(b - a for a, b in self.gaps), "duplicates": self.duplicates,
            "throughput_mbps": (self.rx_bytes * 8 / span / 1e6) if span > 0 else 0.0,
            "latency_ms": {"p50": float(np.percentile(lat, 50)),
                           "p99": float(np.percentile(lat, 99)),
                           "max": float(lat.max())},
        }


async def _main_async(args: argparse.Namespace) -> dict[str, Any]:
    from host_tools.bleak_bumble import BumbleBackend

    backend = (BumbleBackend(args.transport, keystore=args.keystore, address=args.address)
               if args.transport else None)
    synth = SynthStats()
    rx = BleReceiver(args.name, synth, backend=backend, pair=args.pair)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = loop.create_task(rx.run(stop))
    if args.control:
        await _wait_any(rx.subscribed, args.duration or 10)
        try:
            await rx.write_control(bytes.fromhex(args.control))
            control = "ok"
        except BleakError as e:
            control = f"error: {e}"
    else:
        control = None
    await _wait_any(stop, args.duration if args.duration > 0 else 1e9)
    stop.set()
    await task
    if backend is not None:
        await backend.close()
    s = rx.stats
    return {"name": args.name, "connects": s.connects, "disconnects": s.disconnects,
            "subscribes": s.subscribes, "chunks": s.chunks, "bytes": s.bytes, "mtu": s.mtu,
            "errors": s.errors[-5:], "control": control, "synthetic": synth.summary()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m host_tools.ble_receiver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default=gatt.DEFAULT_HUB_NAME)
    p.add_argument("--transport", help="Bumble HCI transport (virtual radio); else OS backend")
    p.add_argument("--keystore", type=Path, default=Path("out/ble_host_bonds.json"))
    p.add_argument("--address", default="",
                   help="this host's random static address (default: this install's own, "
                        "kept beside the keystore)")
    p.add_argument("--pair", action="store_true", help="pair if no bond exists")
    p.add_argument("--control", help="hex bytes to write to CONTROL once subscribed")
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bumble").setLevel(logging.WARNING)
    print(json.dumps(asyncio.run(_main_async(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
