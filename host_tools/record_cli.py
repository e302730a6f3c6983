"""``hubctl record --tcp HOST:PORT`` (or ``--ble NAME [--hci TRANSPORT]``, host_tools.
ble_receiver): receive from a hub's uplink, decode everything, check
continuity and accounting, optionally send commands, and write a JSON summary.

Stops after ``--duration`` seconds, or (``--until-final``) when the hub closes the link after its
final shed report (clean shutdown). Reconnects when the hub goes away (restart).
Commands: ``--set FIELD=VALUE`` (repeatable) sends one Configure with those PipelineSettings
fields (plus ``raw_channels=0,1,2`` and ``outage_buffer_s=…``) after the first connect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from host_tools import nwb_record
from host_tools.packetlog import Link
from host_tools.receiver import Receiver
from hub.argtypes import host_port, positive
from hub.wire import Chunker, pb
from hub.wire import settings as wire_settings
from hub.wire.backoff import Backoff

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tcp", metavar="HOST:PORT", type=host_port, help="the hub's TCP uplink")
    p.add_argument("--ble", metavar="NAME", help="the hub's BLE name (instead of --tcp)")
    p.add_argument("--hci", metavar="TRANSPORT",
                   help="with --ble: Bumble HCI transport (virtual radio) instead of the OS one")
    p.add_argument("--keystore", type=Path, default=Path("host_bonds.json"),
                   help="with --ble --hci: this host's bond keys")
    p.add_argument("--pair", action="store_true", help="with --ble: pair if not bonded")
    p.add_argument("--duration", type=positive, help="stop after this many seconds")
    p.add_argument("--until-final", action="store_true",
                   help="stop when the hub closes the link after its final report")
    p.add_argument("--connect-timeout", type=positive, default=30.0)
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="configure the hub after connecting (repeatable): "
                        + "; ".join(s.describe() for s in wire_settings.SETTINGS.values())
                        + "; raw_channels=0,1,2")
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--raw-out", type=Path,
                   help="decoded raw broadband (.npz: chN = samples, chN_first = block starts, "
                        "chN_len = block lengths)")
    nwb_record.add_arguments(p)


def configure_command(settings: list[str], request_id: int,
                      n_channels: int | None = None) -> pb.Command:
    """A Configure from FIELD=VALUE strings: the settings schema's parser
    (hub.wire.settings.configure_command; raises SettingError naming the field)."""
    return wire_settings.configure_command(settings, request_id, n_channels)


def frame_command(cmd: pb.Command, chunker: Chunker | None = None) -> bytes:
    """TCP bytes for one command: each chunk as u16 length + chunk (one chunker per
    connection keeps the chunk sequence numbers continuous)."""
    ch = chunker or Chunker()
    return b"".join(len(c).to_bytes(2, "little") + c
                    for c in ch.chunks(cmd.SerializeToString()))


#: The receiver's hello on the TCP uplink (an empty record): without it within a few seconds
#: the hub drops the connection as an idle squatter (hub.uplink.tcp).
HELLO = b"\x00\x00"


class TcpClient:
    """Connects (and reconnects) to a hub's TCP uplink and feeds a Receiver.

    Reconnects back off exponentially with jitter (``hub.wire.backoff``); the ladder is reset
    only by a connection that delivered data, so a hub that accepts and closes at once (another
    host holds the link, a restart loop) costs a few attempts per second, not thousands."""

    def __init__(self, host: str, port: int, receiver: Receiver,
                 sink: nwb_record.RecordingSink | None = None,
                 backoff: Backoff | None = None) -> None:
        self.host, self.port, self.rx = host, port, receiver
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0
        self.closed_after_final = False
        self.chunker = Chunker()
        self.sink = sink
        self.backoff = backoff or Backoff(base_s=0.1, cap_s=2.0)

    async def send(self, cmd: pb.Command) -> None:
        if self.writer is None:
            raise ConnectionError("not connected to the hub")
        self.writer.write(frame_command(cmd, self.chunker))
        if self.sink is not None:
            self.sink.on_command(cmd)
        await self.writer.drain()

    async def run(self, connect_timeout: float, until_final: bool) -> None:
        loop = asyncio.get_running_loop()
        while True:
            deadline = loop.time() + connect_timeout
            while True:
                try:
                    reader, self.writer = await asyncio.open_connection(self.host, self.port)
                    break
                except OSError:
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(self.backoff.next())
            self.connects += 1
            self.chunker = Chunker()
            self.rx.reset_link()
            if self.sink is not None:
                self.sink.on_connect({"address": f"{self.host}:{self.port}"})
            log.info("connected to hub %s:%d", self.host, self.port)
            chunks = 0
            try:
                self.writer.write(HELLO)
                while True:
                    head = await reader.readexactly(2)
                    chunk = await reader.readexactly(int.from_bytes(head, "little"))
                    t_ns = time.monotonic_ns()
                    if self.sink is not None:
                        self.sink.on_chunk(chunk, t_ns)
                    self.rx.feed_chunk(chunk, t_ns)
                    chunks += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            if self.sink is not None:
                self.sink.on_disconnect()
            self.writer.close()
            self.writer = None
            sessions = self.rx.sessions
            if until_final and self.rx.order and sessions[self.rx.order[-1]].final:
                self.closed_after_final = True
                return
            if chunks:
                self.backoff.reset()
            delay = self.backoff.next()
            log.info("hub closed the link after %d chunk(s); reconnecting in %.2f s", chunks,
                     delay)
            await asyncio.sleep(delay)


async def record(host: str, port: int, duration: float | None, until_final: bool,
                 settings: list[str], connect_timeout: float = 30.0,
                 sink: nwb_record.RecordingSink | None = None,
                 raw_out: Path | None = None) -> dict[str, Any]:
    rx = Receiver(sink.on_envelope if sink else None, keep_raw=raw_out is not None)
    client = TcpClient(host, port, rx, sink)
    task = asyncio.create_task(client.run(connect_timeout, until_final))
    ticker = asyncio.create_task(tick(sink))
    stop = interrupt_event()
    t0 = time.monotonic()
    if settings:
        while client.writer is None and not task.done():
            await asyncio.sleep(0.05)
        n = None
        while n is None and not task.done() and time.monotonic() - t0 < connect_timeout:
            n = rx.last_telemetry.n_channels if rx.last_telemetry else None
            n = n or None
            if n is None and not any(s.startswith("raw_channels") for s in settings):
                break
            await asyncio.sleep(0.1)
        await client.send(configure_command(settings, 1, n))
    try:
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait({task, waiter}, timeout=duration,
                           return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()              # a connect failure raises here
    finally:
        task.cancel()
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await task
    s = rx.summary()
    s["connects"] = client.connects
    if raw_out is not None:
        save_raw(raw_out, rx)
    s["wall_s"] = round(time.monotonic() - t0, 3)
    return s


async def tick(sink: nwb_record.RecordingSink | None, period_s: float = 0.2) -> None:
    """Flushes the packet log and refreshes the live status a few times a second."""
    while sink is not None:
        sink.tick()
        await asyncio.sleep(period_s)


def interrupt_event() -> asyncio.Event:
    """An event set by Ctrl-C / SIGTERM, so the recording closes (and converts) cleanly."""
    import signal

    ev = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, ev.set)
    return ev


def save_raw(path: Path, rx: Receiver) -> None:
    import numpy as np

    arrays = {}
    for ch, blocks in rx.raw_blocks.items():
        arrays[f"ch{ch}"] = np.concatenate([b for _, b in blocks])
        arrays[f"ch{ch}_first"] = np.array([f for f, _ in blocks], np.int64)
        arrays[f"ch{ch}_len"] = np.array([b.size for _, b in blocks], np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> int:
    sink = nwb_record.RecordingSink(args, Link.BLE if args.ble else Link.TCP)
    if args.ble:
        from host_tools.ble_receiver import record_ble
        from host_tools.bleak_bumble import BumbleBackend

        backend = BumbleBackend(args.hci, keystore=args.keystore) if args.hci else None
        s = asyncio.run(record_ble(args.ble, backend, duration=args.duration,
                                   until_final=args.until_final, settings=args.set,
                                   pair=args.pair, connect_timeout=args.connect_timeout,
                                   sink=sink, raw_out=args.raw_out))
    elif args.tcp:
        host, port = args.tcp
        s = asyncio.run(record(host, port, args.duration,
                               args.until_final, args.set, args.connect_timeout,
                               sink, args.raw_out))
    else:
        raise ValueError("give --tcp HOST:PORT or --ble NAME")
    nwb = sink.finish(s)
    if nwb is not None:
        s["nwb"] = nwb
    text = json.dumps(s, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(json.dumps({k: s[k] for k in ("sessions", "classes", "latency_ms", "link")}, indent=1))
    bad = [k for k, v in s["classes"].items() if v["unaccounted"] != 0]
    if bad and s["final_report_seen"]:
        log.error("unaccounted items in: %s", ", ".join(bad))
        return 1
    return 1 if nwb is not None and "error" in nwb else 0
