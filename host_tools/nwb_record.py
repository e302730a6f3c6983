"""What ``hubctl record`` keeps: the packet log while recording (``--packets-out``, or beside
``--nwb``), the live status on a terminal, and on close the NWB file converted from the log.

A :class:`RecordingSink` is transport-blind: the TCP and BLE receive paths call its hooks with
every chunk (and the host receive time they also gave the receiver), each new connection, each
lost one, each command sent, and each decoded envelope.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from host_tools.packetlog import Kind, Link, PacketLogWriter
from hub.wire import pb

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The recording options of ``hubctl record`` (packet log, NWB, live status)."""
    p.add_argument("--packets-out", type=Path, metavar="PACKETS.log",
                   help="crash-safe packet log: every chunk with its host receive time "
                        "(flushed every 0.25 s; `hubctl decode` turns it into NWB)")
    p.add_argument("--nwb", type=Path, metavar="SESSION.nwb",
                   help="write the session as NWB 2 on close (Ctrl-C, --duration, hub stop); "
                        "the packet log goes to --packets-out or SESSION.nwb.packets.log")
    add_subject_arguments(p, "with --nwb: ")
    p.add_argument("--status", choices=["auto", "on", "off"], default="auto",
                   help="live status (rates, link, buffers, shed, drift): auto = only on a "
                        "terminal (default %(default)s)")


def add_subject_arguments(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """NWB session and subject metadata options (``prefix``: "with --nwb: ")."""
    p.add_argument("--session-description", default=None, metavar="TEXT",
                   help=f"{prefix}NWB session_description (default: hub, link, channels)")
    p.add_argument("--subject-id", default=None, metavar="ID",
                   help=f"{prefix}NWB subject id (default 'unknown')")
    p.add_argument("--species", default=None, metavar="LATIN",
                   help=f"{prefix}subject species, Latin binomial, e.g. 'Macaca mulatta' "
                        "(NWB best practice; no default)")
    p.add_argument("--sex", choices=["M", "F", "U", "O"], default="U",
                   help=f"{prefix}subject sex (default U: unknown)")
    p.add_argument("--age", default="P0D/", metavar="ISO8601",
                   help=f"{prefix}subject age as an ISO 8601 duration, e.g. P90D, or a range "
                        "P90D/P120D (default 'P0D/': unknown)")


class RecordingSink:
    """Packet log + live status for one ``hubctl record`` run; ``finish`` converts to NWB."""

    def __init__(self, args: argparse.Namespace, link: Link) -> None:
        self.args = args
        self.nwb: Path | None = getattr(args, "nwb", None)
        path: Path | None = getattr(args, "packets_out", None)
        if path is None and self.nwb is not None:
            path = self.nwb.with_name(self.nwb.name + ".packets.log")
        if self.nwb is not None and self.nwb.suffix != ".nwb":
            raise ValueError(f"--nwb {self.nwb}: the file name must end in .nwb")
        meta = {"argv": sys.argv[1:], "tool": "hubctl record"}
        self.log_path = path
        self.writer = PacketLogWriter(path, meta, link=link) if path is not None else None
        self.status: Any = None
        mode = getattr(args, "status", "off")
        if mode == "on" or (mode == "auto" and sys.stderr.isatty()):
            from host_tools.status import LiveStatus

            self.status = LiveStatus(link=link.name.lower())

    # ------------------------------------------------------------ hooks
    def on_chunk(self, chunk: bytes, t_ns: int) -> None:
        if self.writer is not None:
            self.writer.chunk(chunk, t_ns)
        if self.status is not None:
            self.status.on_chunk(chunk, t_ns)

    def on_connect(self, info: dict[str, Any] | None = None) -> None:
        if self.writer is not None:
            self.writer.event(Kind.CONNECT, info)

    def on_disconnect(self, info: dict[str, Any] | None = None) -> None:
        if self.writer is not None:
            self.writer.event(Kind.DISCONNECT, info)

    def on_command(self, cmd: pb.Command) -> None:
        if self.writer is not None:
            self.writer.command(cmd.SerializeToString())

    def on_envelope(self, env: pb.Envelope, t_ns: int) -> None:
        if self.status is not None:
            self.status.on_envelope(env, t_ns)

    def tick(self) -> None:
        """Call a few times a second: flushes the log, refreshes the status."""
        if self.writer is not None:
            self.writer.tick()
        if self.status is not None:
            self.status.refresh()

    # ------------------------------------------------------------ close
    def finish(self, summary: dict[str, Any]) -> dict[str, Any] | None:
        """Closes the log (END record with the summary) and converts it to NWB with --nwb;
        returns the conversion report (None without --nwb)."""
        if self.status is not None:
            self.status.stop()
        if self.writer is not None:
            self.writer.close({k: summary.get(k) for k in ("sessions", "final_report_seen",
                                                            "connects", "wall_s")})
        if self.nwb is None or self.log_path is None:
            return None
        from host_tools.nwb_writer import NwbOptions, convert

        t0 = time.monotonic()
        print(f"writing {self.nwb} from {self.log_path} …", file=sys.stderr)
        try:
            report = convert(self.log_path, self.nwb, NwbOptions.from_args(self.args))
        except (ValueError, OSError) as e:
            log.error("NWB conversion failed: %s — the packet log %s is kept (hubctl decode "
                      "%s SESSION.nwb)", e, self.log_path, self.log_path)
            return {"error": str(e), "packet_log": str(self.log_path)}
        log.info("NWB written: %s (%.1f s)", self.nwb, time.monotonic() - t0)
        return report
