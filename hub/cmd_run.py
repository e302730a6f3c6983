"""``hub run``: the hub daemon — implant link in, pipeline, scheduler, uplink out.

Logs are JSON lines on stderr (one object per record); warnings and errors also travel to the
host as LOG packets. Stop with SIGTERM (systemd) or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hub.argtypes import bounded, positive
from hub.daemon.supervisor import Daemon, DaemonOptions
from hub.dsp.geometry import load_probe, load_probe_metadata
from hub.kernels import selftest
from hub.uplink.base import Uplink
from hub.wire import DEFAULT_PAYLOAD_SIZE, pb
from hub.wire.backoff import RateLimit


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {"t": round(record.created, 3), "level": record.levelname, "logger": record.name,
             "msg": record.getMessage(), "pid": os.getpid()}
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return json.dumps(d, ensure_ascii=False)


class HostLogHandler(logging.Handler):
    """Warnings and errors to the host as LOG packets (thread-safe: hops onto the loop).

    Rate-limited (``per_s`` on average, ``burst`` at once): a failure that repeats a thousand
    times a second must not become a thousand packets, nor a thousand callbacks queued on the
    loop. The next packet that passes says how many were left out; the JSON log on stderr
    keeps every record."""

    def __init__(self, daemon: Daemon, loop: asyncio.AbstractEventLoop, per_s: float = 5.0,
                 burst: int = 20, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(logging.WARNING)
        self.daemon, self.loop = daemon, loop
        self.limit = RateLimit(per_s, burst, clock)

    def emit(self, record: logging.LogRecord) -> None:
        with self.lock or contextlib.nullcontext():
            if not self.limit.allow():
                return
            skipped = self.limit.take_suppressed()
        msg = record.getMessage()
        if skipped:
            msg += f" ({skipped} earlier warning(s) not sent to the host: rate limit)"
        pkt = self.daemon.packer.log(record.levelno, record.name, msg)
        self.loop.call_soon_threadsafe(self.daemon.scheduler.submit, pkt)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--implant", default="tcp:127.0.0.1:7801",
                   help="implant link: tcp:HOST:PORT | unix:PATH | serial:DEV[,BAUD] | pty:DEV "
                        "(default %(default)s)")
    p.add_argument("--uplink", default="tcp:127.0.0.1:7800",
                   help="uplink to the host: tcp:HOST:PORT, or ble:HCI-TRANSPORT (ble:serial:"
                        "/dev/ttyS1,3000000,rtscts | ble:hci-socket:0 | ble:tcp-client:H:P) "
                        "(default %(default)s)")
    p.add_argument("--rate-bps", type=positive, default=None,
                   help="TCP uplink: token-bucket cap in bit/s (default: uncapped)")
    p.add_argument("--link-schedule", default="",
                   help="TCP uplink link model, e.g. '10:rate=260e3,20:outage=5' "
                        "(seconds after the host connected)")
    p.add_argument("--payload-size", type=bounded(9, 65535, integer=True),
                   default=DEFAULT_PAYLOAD_SIZE,
                   help="bytes per chunk/notification (default %(default)s)")
    p.add_argument("--state-dir", type=Path,
                   default=Path(os.environ.get("STATE_DIRECTORY", "hub-state")),
                   help="persisted configuration and state (default $STATE_DIRECTORY or "
                        "./hub-state)")
    p.add_argument("--ready-file", type=Path, help="write bound addresses here (JSON)")
    p.add_argument("--probe", type=Path,
                   help="contact positions: probeinterface JSON or "
                        '{"channel_positions_um": [[x, y], ...]} (enables spatial '
                        "de-duplication and multi-channel snippets)")
    p.add_argument("--gain-uv", type=float,
                   help="ADC gain of the implant, µV per count (overrides the probe file's "
                        "uv_per_count; default: unknown — recordings stay in counts)")
    p.add_argument("--location", help="brain area of the implant, for recordings (free text)")
    p.add_argument("--telemetry-s", type=bounded(0.01, 3600), default=1.0)
    p.add_argument("--drain-s", type=bounded(0, 600), default=3.0,
                   help="on SIGTERM, seconds to send what is queued")
    p.add_argument("--text-logs", action="store_true", help="plain-text logs instead of JSON")
    from hub.uplink.gatt import add_ble_arguments

    add_ble_arguments(p)


def make_uplink(args: argparse.Namespace) -> Uplink:
    scheme, _, rest = args.uplink.partition(":")
    if scheme == "tcp":
        from hub.uplink.tcp import TcpUplink

        host, _, port = rest.rpartition(":")
        try:
            port_n = int(port)
        except ValueError as e:
            raise ValueError(f"--uplink {args.uplink!r}: bad port {port!r}") from e
        return TcpUplink(host or "127.0.0.1", port_n, rate_bps=args.rate_bps,
                         payload_size=args.payload_size, schedule=args.link_schedule)
    if scheme == "ble":
        from hub.uplink.ble import uplink_from_args

        return uplink_from_args(rest, args)
    raise ValueError(f"--uplink {args.uplink!r}: unknown scheme {scheme!r} (tcp, ble)")


def probe_metadata(args: argparse.Namespace) -> dict[str, object]:
    """Gain, location, name and groups from --probe, overridden by --gain-uv / --location."""
    meta: dict[str, object] = load_probe_metadata(args.probe) if args.probe else {}
    if args.gain_uv is not None:
        if not args.gain_uv > 0:
            raise ValueError(f"--gain-uv {args.gain_uv}: must be a positive µV per count")
        meta["uv_per_count"] = args.gain_uv
    if args.location:
        meta["location"] = args.location
    return meta


def run(args: argparse.Namespace) -> int:
    if not args.text_logs:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        root.handlers[:] = [handler]
    logging.Formatter.converter = time.gmtime
    check = selftest.run()
    if not check.passed:
        logging.getLogger(__name__).error("kernels self-test %s: not starting", check.summary())
        return 3
    logging.getLogger(__name__).info("kernels self-test %s (%.2f s, %s)", check.summary(),
                                     check.seconds, check.library)
    opts = DaemonOptions(implant=args.implant, state_dir=args.state_dir,
                         telemetry_s=args.telemetry_s, drain_s=args.drain_s,
                         ready_file=args.ready_file,
                         probe_positions=load_probe(args.probe) if args.probe else None,
                         probe_metadata=probe_metadata(args),
                         selftest=pb.KernelSelfTest(
                             passed=check.passed, reference=check.reference,
                             library_version=check.version, kernels=len(check.hashes),
                             summary=check.summary(), machine=platform.machine()))
    uplink = make_uplink(args)

    async def main() -> int:
        daemon = Daemon(opts, uplink)
        logging.getLogger().addHandler(HostLogHandler(daemon, asyncio.get_running_loop()))
        return await daemon.run()

    return asyncio.run(main())
