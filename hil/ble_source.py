"""A synthetic hub for link tests: the real BLE uplink (hub.uplink.ble) fed with numbered chunks.

    python -m hil.ble_source --transport tcp-client:127.0.0.1:P --rate 400 --duration 10

Each chunk starts with ``<IQ``: a sequence number and the hub's CLOCK_MONOTONIC in ns when the
chunk was produced (the host on the same machine measures latency from it), padded to
``--chunk`` bytes. ``--rate 0`` saturates the link. Chunks wait in a bounded buffer while no
central is subscribed (like the daemon's outage buffer) and are delivered in order afterwards.
At exit (SIGTERM or ``--duration``) one JSON line of statistics goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

from hub.uplink.ble import BleConfig, BleUplink

log = logging.getLogger(__name__)
HEADER = struct.Struct("<IQ")


def make_chunk(seq: int, size: int) -> bytes:
    return HEADER.pack(seq, time.monotonic_ns()).ljust(size, b"\xa5")


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    cfg = BleConfig(transport=args.transport, name=args.name, address=args.address,
                    keystore=args.keystore, pairing_file=args.pairing_file,
                    pairing_window_s=args.pairing_window, max_in_flight=args.in_flight,
                    auth_s=args.auth_timeout)
    up = BleUplink(cfg)
    commands: list[str] = []
    await up.start(lambda b: commands.append(b.hex()))
    print(json.dumps({"ready": True}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    buf: collections.deque[bytes] = collections.deque(maxlen=args.buffer)
    produced = 0
    dropped = 0
    first_send = last_send = 0.0
    cpu_first = cpu_last = 0.0
    sent_first = 0
    cpu0 = time.process_time()
    t_start = time.monotonic()

    async def producer() -> None:
        nonlocal produced, dropped
        period = 1.0 / args.rate
        while not await up.wait_connected(1.0):   # production starts with the first host
            if stop.is_set():
                return
        next_t = time.monotonic()
        while not stop.is_set():
            next_t += period
            await asyncio.sleep(max(0.0, next_t - time.monotonic()))
            if len(buf) == buf.maxlen:
                dropped += 1
            buf.append(make_chunk(produced, args.chunk))
            produced += 1

    async def sender() -> None:
        nonlocal produced, first_send, last_send, cpu_first, cpu_last, sent_first
        while not stop.is_set():
            if not await up.wait_connected(0.5):
                continue
            size = min(args.chunk, up.payload_size)
            if args.rate == 0 and not buf:
                buf.append(make_chunk(produced, size))
                produced += 1
            if not buf:
                await asyncio.sleep(0.001)
                continue
            chunk = buf[0]
            if await up.send(chunk[:size]):
                buf.popleft()
                last_send = time.monotonic()
                cpu_last = time.process_time()
                if not first_send:
                    first_send, cpu_first, sent_first = last_send, cpu_last, up.stats.chunks_sent

    tasks = [loop.create_task(sender())]
    if args.rate > 0:
        tasks.append(loop.create_task(producer()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), args.duration if args.duration > 0 else None)
    log.info("stopping")
    for t in tasks:
        t.cancel()
    await asyncio.wait(tasks, timeout=2.0)
    log.info("tasks stopped")
    wall = time.monotonic() - t_start
    cpu = time.process_time() - cpu0
    await up.stop()
    log.info("uplink stopped")
    s = up.stats
    return {
        "produced": produced, "sent": s.chunks_sent, "bytes_sent": s.bytes_sent,
        "buffered_at_exit": len(buf), "buffer_dropped": dropped,
        "refused": s.send_refused, "connects": s.connects, "disconnects": s.disconnects,
        "disconnect_reasons": up.disconnect_reasons,
        "commands": commands, "extra": s.extra, "wall_s": wall, "cpu_s": cpu,
        "send_active_s": last_send - first_send,
        "send_cpu_s": cpu_last - cpu_first,
        "cpu_us_per_chunk": (1e6 * (cpu_last - cpu_first) / (s.chunks_sent - sent_first)
                             if s.chunks_sent > sent_first else None),
        "cpu_share_while_sending": ((cpu_last - cpu_first) / (last_send - first_send)
                                    if last_send > first_send else None),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.ble_source", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--transport", required=True)
    p.add_argument("--name", default=BleConfig.name)
    p.add_argument("--address", default=BleConfig.address)
    p.add_argument("--keystore", type=Path, default=Path("out/ble_hub_bonds.json"))
    p.add_argument("--pairing-file", type=Path)
    p.add_argument("--pairing-window", type=float, default=0.0)
    p.add_argument("--in-flight", type=int, default=0, help="0: controller buffers")
    p.add_argument("--auth-timeout", type=float, default=BleConfig.auth_s,
                   help="seconds a central has to become the owner (default %(default)s)")
    p.add_argument("--rate", type=float, default=0.0, help="chunks/s (0: saturate)")
    p.add_argument("--chunk", type=int, default=244)
    p.add_argument("--buffer", type=int, default=100_000)
    p.add_argument("--duration", type=float, default=0.0, help="seconds (0: until SIGTERM)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bumble").setLevel(logging.WARNING)
    stats = asyncio.run(_run(args))
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
