"""The host's BLE receiver, written only against bleak's public API.

``BleReceiver`` finds the hub by name (``BleakScanner.find_device_by_name``), connects
(``BleakClient``), checks the service, subscribes to DATA once per connection
(``start_notify``) and reconnects by itself after a disconnect (``disconnected_callback``). With
``backend=None`` bleak picks the OS backend (BlueZ, CoreBluetooth, WinRT); for the virtual radio
pass ``host_tools.bleak_bumble.BumbleBackend(...)``, whose classes go to bleak's ``backend=``.

    python -m host_tools.ble_receiver --transport tcp-client:127.0.0.1:P --duration 10

Each notification goes to ``on_chunk(data, t_rx)`` (t_rx = time.monotonic_ns()). The daemon's
reassembler (host_tools.receiver) plugs in there; the CLI here decodes the synthetic chunks of
hil.ble_source (sequence number + hub send time) for link measurements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from hub.wire import gatt

log = logging.getLogger(__name__)

ChunkHandler = Callable[[bytes, int], None]


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


class BleReceiver:
    """Connects to one hub, subscribes to DATA, reconnects after every loss of the link."""

    def __init__(self, name: str, on_chunk: ChunkHandler, *, backend: Any = None,
                 pair: bool = False, reconnect: bool = True, scan_timeout: float = 10.0,
                 retry_delay: float = 0.2,
                 on_connect: Callable[[], None] | None = None) -> None:
        self.name = name
        self.on_chunk = on_chunk
        self.backend = backend
        self.pair = pair
        self.reconnect = reconnect
        self.scan_timeout = scan_timeout
        self.retry_delay = retry_delay
        self.on_connect = on_connect
        self.stats = ReceiverStats()
        self.client: BleakClient | None = None
        self._lost = asyncio.Event()
        self.subscribed = asyncio.Event()

    def _scanner_kwargs(self) -> dict[str, Any]:
        return {"backend": self.backend.scanner} if self.backend is not None else {}

    def _client_kwargs(self) -> dict[str, Any]:
        return {"backend": self.backend.client} if self.backend is not None else {}

    async def connect_once(self) -> BleakClient:
        """Finds the hub, connects and subscribes once; raises BleakError on failure."""
        device = await BleakScanner.find_device_by_name(self.name, timeout=self.scan_timeout,
                                                        **self._scanner_kwargs())
        if device is None:
            self.stats.scan_misses += 1
            raise BleakError(f"hub {self.name!r} not found")
        self._lost.clear()
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
            if self.on_connect is not None:      # a new link: partial packets are gone
                self.on_connect()
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
        self.on_chunk(bytes(data), time.monotonic_ns())

    def _on_disconnect(self, _client: BleakClient) -> None:
        self.stats.disconnects += 1
        self.stats.disconnect_times.append(time.monotonic())
        self.subscribed.clear()
        self.client = None
        log.warning("link to %s lost", self.name)
        self._lost.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Stays connected until ``stop`` is set, reconnecting after each loss."""
        while not stop.is_set():
            attempt = asyncio.ensure_future(self.connect_once())
            await _wait_first_future(stop, attempt)
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(asyncio.CancelledError, BleakError, OSError,
                                         TimeoutError):
                    await attempt
                break
            try:
                attempt.result()
            except (BleakError, TimeoutError, OSError) as e:
                self.stats.errors.append(str(e))
                log.info("connect failed: %s", e)
                if not self.reconnect:
                    raise
                await _wait_any(stop, self.retry_delay)
                continue
            await _wait_first(stop, self._lost)
            if not self.reconnect:
                break
        await self.close()

    async def write_control(self, data: bytes) -> None:
        """One CONTROL write (with response): one chunk of a framed command."""
        if self.client is None:
            raise BleakError("not connected")
        await self.client.write_gatt_char(gatt.CONTROL_UUID, data, response=True)

    async def send_command(self, payload: bytes) -> None:
        """A serialized command, framed into chunks that fit one write each."""
        from hub.wire import Chunker

        size = max(20, (self.client.mtu_size if self.client else 23) - 3)
        for chunk in Chunker(size).chunks(payload):
            await self.write_control(chunk)

    async def read_status(self) -> dict[str, Any]:
        if self.client is None:
            raise BleakError("not connected")
        raw = await self.client.read_gatt_char(gatt.STATUS_UUID)
        status: dict[str, Any] = json.loads(bytes(raw))
        return status

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(BleakError, OSError, TimeoutError):
                await client.disconnect()


async def _wait_any(ev: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ev.wait(), timeout)


async def _wait_first_future(ev: asyncio.Event, fut: asyncio.Future[Any]) -> None:
    te = asyncio.ensure_future(ev.wait())
    try:
        await asyncio.wait({te, fut}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        te.cancel()


async def _wait_first(a: asyncio.Event, b: asyncio.Event) -> None:
    ta, tb = asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())
    try:
        await asyncio.wait({ta, tb}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ta.cancel()
        tb.cancel()


# ---------------------------------------------------------------- hubctl record --ble
async def record_ble(name: str, backend: Any, *, duration: float | None, until_final: bool,
                     settings: list[str], pair: bool = False, connect_timeout: float = 30.0,
                     sink: Any = None,
                     raw_out: Path | None = None) -> dict[str, Any]:
    """Receives from a hub over BLE into the daemon's Receiver (decoding, accounting,
    latency) with the time-sync fit; the BLE twin of host_tools.record_cli.record."""
    from host_tools.receiver import Receiver
    from host_tools.record_cli import configure_command, interrupt_event, tick
    from host_tools.timesync import TimeSyncFit

    fit = TimeSyncFit()

    def on_envelope(env: Any, t_ns: int) -> None:
        if env.WhichOneof("payload") == "time_sync":
            fit.add_packet(env.time_sync, t_ns)
        if sink is not None:
            sink.on_envelope(env, t_ns)

    rx = Receiver(on_envelope, keep_raw=raw_out is not None)

    def on_chunk(chunk: bytes, t_ns: int) -> None:
        if sink is not None:
            sink.on_chunk(chunk, t_ns)
        rx.feed_chunk(chunk, t_ns)

    # No reassembler reset on reconnect: the hub re-sends the notifications its controller
    # never confirmed, so the chunk stream continues across a link loss; the chunk sequence
    # numbers tell the reassembler when it does not (a hub restart, a real loss).
    ble = BleReceiver(name, on_chunk, backend=backend, pair=pair, scan_timeout=connect_timeout,
                      on_connect=(lambda: sink.on_connect({"name": name})) if sink else None)
    stop = interrupt_event()
    task = asyncio.create_task(ble.run(stop))
    ticker = asyncio.create_task(tick(sink))
    t0 = time.monotonic()
    try:
        if settings:
            await _wait_any(ble.subscribed, connect_timeout)
            n = None
            while (n is None and any(x.startswith("raw_channels") for x in settings)
                   and time.monotonic() - t0 < connect_timeout):
                n = (rx.last_telemetry.n_channels or None) if rx.last_telemetry else None
                await asyncio.sleep(0.1)
            cmd = configure_command(settings, 1, n)
            if sink is not None:
                sink.on_command(cmd)
            await ble.send_command(cmd.SerializeToString())
        end = None if duration is None else t0 + duration
        while not task.done() and not stop.is_set():
            if end is not None and time.monotonic() >= end:
                break
            if until_final and rx.order and rx.sessions[rx.order[-1]].final:
                await asyncio.sleep(0.2)       # the last chunks in flight
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError, BleakError, OSError, TimeoutError):
            await asyncio.wait_for(task, 10)
        if backend is not None and hasattr(backend, "close"):
            await backend.close()
    s = rx.summary()
    if raw_out is not None:
        from host_tools.record_cli import save_raw

        save_raw(raw_out, rx)
    st = ble.stats
    s["connects"] = st.connects
    s["wall_s"] = round(time.monotonic() - t0, 3)
    s["ble"] = {"connects": st.connects, "disconnects": st.disconnects,
                "subscribes": st.subscribes, "mtu": st.mtu, "notifications": st.chunks,
                "bytes": st.bytes, "errors": st.errors[-5:]}
    s["time_sync"] = fit.summary()
    return s


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
