"""Fault-injection soak (``make hil-faults``): the real chain (simulated implant → ``hub run``
→ TCP uplink → ``hubctl record``) for minutes while faults are injected one after another:

- ``rst_owner``      the host's uplink connection is reset (SO_LINGER 0) five times in a row
                     while data flows (a proxy between hub and host splices a new connection);
- ``rst_strangers``  twenty strangers connect to the uplink port, half say hello, all reset;
- ``uplink_squatter`` an idle client holds a connection to the uplink port;
- ``implant_squatter`` an idle client holds the implant port while the implant reconnects;
- ``implant_format`` the implant comes back with another channel count or frame size;
- ``corrupt_state``  the hub is SIGKILLed, its config.json or state.json is damaged, and it
                     is started again.
The implant also drops, corrupts and pads frames throughout (gaps), on spike-free noise, so
every spike after a gap that the noise does not explain would be invented. At the end the
report (out/hil/faults.{json,md}) has the duration, the faults injected by kind, unaccounted
items (must be 0), invented spikes and raw samples (must be 0) and the hub's RSS growth.

    python -m hil.fault_soak [--duration 300] [--period 6] [--seed 1] [--out out/hil]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from hil.chain import PY, Chain, ChainSpec, _tail
from hil.soak_report import accounting, invented, markdown, read_packet_log

REPO = Path(__file__).resolve().parent.parent
KINDS = ("rst_owner", "rst_strangers", "uplink_squatter", "implant_squatter", "implant_format",
         "corrupt_state")
CORRUPTIONS = [("config.json", "[]"), ("config.json", "null"), ("state.json", '{"fs":[1]}'),
               ("config.json", '{"schema": 1, "config": {"pipeline": {"threshold": "abc"}}}'),
               ("state.json", "[]"), ("config.json", '{"schema": 1, "conf')]
FORMATS = [(16, 30), (24, 30), (16, 10)]          # (channels, samples per frame)
HELLO = b"\x00\x00"


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class Proxy:
    """Host ⇄ hub; the hub side can be reset and is re-spliced (the host never notices, except
    for what the reset destroyed in flight)."""

    def __init__(self, hub_port: int) -> None:
        self.hub_port, self.port, self.stopping = hub_port, 0, False
        self.hub_w: asyncio.StreamWriter | None = None
        self.host_w: asyncio.StreamWriter | None = None
        self.splices = 0

    async def start(self) -> None:
        srv = await asyncio.start_server(self._host, "127.0.0.1", 0)
        self.port = srv.sockets[0].getsockname()[1]

    async def _host(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.host_w = w
        pump_up = asyncio.create_task(self._upstream(r))
        while not self.stopping or self.hub_w is not None:
            hub_r = await self._connect_hub()
            with contextlib.suppress(ConnectionError, OSError):
                while data := await hub_r.read(1 << 16):
                    w.write(data)
                    await w.drain()
            self.hub_w = None
            if self.stopping:
                break
        pump_up.cancel()
        w.close()

    async def _connect_hub(self) -> asyncio.StreamReader:
        while True:
            try:
                r, self.hub_w = await asyncio.open_connection("127.0.0.1", self.hub_port)
                self.splices += 1
                if self.splices > 1:        # the host said hello on the first one itself
                    self.hub_w.write(HELLO)
                return r
            except OSError:
                await asyncio.sleep(0.1)

    async def _upstream(self, r: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await r.read(1 << 16):
                while self.hub_w is None:
                    await asyncio.sleep(0.01)
                self.hub_w.write(data)

    def reset_hub_side(self) -> None:
        w = self.hub_w
        if w is not None:
            sock = w.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, args.out / "faults"
        self.rng = random.Random(args.seed)
        self.faults: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.refusals: list[str] = []
        self.fmt = 0
        self.rss: list[tuple[int, float, int]] = []       # (hub pid, t, kB)
        spec = ChainSpec("noise:16:30000:10", uplink="tcp", rate_bps=1.3e6)
        self.chain = Chain(spec, self.out)
        self.implant: Any = None

    def start_implant(self) -> None:
        c, spf = FORMATS[self.fmt]
        self.implant = self.chain._start(
            [PY, "-m", "hil.implant", self.chain.spec.recording, "--connect",
             self.chain.ports["implant"], "--duration", str(self.args.duration + 120),
             "--channels", str(c), "--frame-samples", str(spf), "--drop", "0.002",
             "--corrupt", "0.001", "--garbage", "0.001", "--seed", str(self.rng.randrange(1000))],
            "implant.log")

    def stop_implant(self) -> None:
        if self.implant is not None and self.implant.poll() is None:
            self.implant.send_signal(signal.SIGTERM)
            self.implant.wait(10)

    def start_hub(self) -> None:
        try:
            self.chain.start_hub()
        except Exception as e:
            self.refusals.append(str(e).splitlines()[-1][:200])
            for name in ("config.json", "state.json"):
                (self.chain.state / name).unlink(missing_ok=True)
            self.chain.start_hub()

    # ------------------------------------------------------------ faults
    async def inject(self, kind: str, proxy: Proxy) -> None:
        self.faults[kind] += 1
        up = int(self.chain.ports["uplink"].rsplit(":", 1)[1])
        imp = int(self.chain.ports["implant"].rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        if kind == "rst_owner":
            for _ in range(5):
                proxy.reset_hub_side()
                await asyncio.sleep(0.2)
        elif kind == "rst_strangers":
            for i in range(20):
                s = await loop.run_in_executor(None, socket.create_connection, ("127.0.0.1", up))
                if i % 2:
                    s.sendall(HELLO)
                _reset(s)
        elif kind == "uplink_squatter":
            s = await loop.run_in_executor(None, socket.create_connection, ("127.0.0.1", up))
            await asyncio.sleep(4.0)
            s.close()
        elif kind == "implant_squatter":
            s = await loop.run_in_executor(None, socket.create_connection, ("127.0.0.1", imp))
            await asyncio.sleep(0.3)
            self.stop_implant()
            self.start_implant()
            await asyncio.sleep(3.0)
            s.close()
        elif kind == "implant_format":
            self.stop_implant()
            self.fmt = (self.fmt + 1) % len(FORMATS)
            self.start_implant()
        elif kind == "corrupt_state":
            hub = self.chain.hub
            assert hub is not None
            hub.send_signal(signal.SIGKILL)
            hub.wait(10)
            name, text = CORRUPTIONS[self.faults[kind] % len(CORRUPTIONS)]
            (self.chain.state / name).write_text(text)
            await loop.run_in_executor(None, self.start_hub)

    async def sample_rss(self) -> None:
        t0 = time.monotonic()
        while True:
            hub = self.chain.hub
            if hub is not None and hub.poll() is None:
                self.rss.append((hub.pid, time.monotonic() - t0, _rss_kb(hub.pid)))
            await asyncio.sleep(1.0)

    async def run(self) -> dict[str, Any]:
        a = self.args
        self.start_hub()
        proxy = Proxy(int(self.chain.ports["uplink"].rsplit(":", 1)[1]))
        await proxy.start()
        rx_json, log = self.out / "receiver.json", self.out / "packets.log"
        rx = self.chain._start([PY, "-m", "host_tools.cli", "record", "--tcp",
                                f"127.0.0.1:{proxy.port}", "--until-final", "--json",
                                str(rx_json), "--packets-out", str(log), "--set",
                                "threshold=6"], "rx.log")
        await asyncio.sleep(1.0)
        self.start_implant()
        sampler = asyncio.create_task(self.sample_rss())
        t0 = time.monotonic()
        kinds = list(KINDS)
        i = 0
        while time.monotonic() - t0 < a.duration - a.period:
            await asyncio.sleep(a.period)
            if i % len(kinds) == 0:
                self.rng.shuffle(kinds)
            kind = kinds[i % len(kinds)]
            print(f"   t={time.monotonic() - t0:5.0f} s  fault {kind}", file=sys.stderr,
                  flush=True)
            await self.inject(kind, proxy)
            i += 1
        await asyncio.sleep(max(0.0, a.duration - (time.monotonic() - t0)))
        duration = time.monotonic() - t0
        self.stop_implant()
        proxy.stopping = True
        hub = self.chain.hub
        assert hub is not None
        t_stop = time.monotonic()
        hub.send_signal(signal.SIGTERM)
        hub_rc = await asyncio.get_running_loop().run_in_executor(None, hub.wait, 60)
        stop_s = time.monotonic() - t_stop
        sampler.cancel()
        await asyncio.get_running_loop().run_in_executor(None, rx.wait, 60)
        if not rx_json.exists():
            raise RuntimeError(f"receiver wrote no summary:\n{_tail(self.out / 'rx.log')}")
        return self.report(json.loads(rx_json.read_text()), log, duration, hub_rc, stop_s)

    def report(self, summary: dict[str, Any], log: Path, duration: float, hub_rc: int,
               stop_s: float) -> dict[str, Any]:
        sessions = read_packet_log(log)
        classes = accounting(sessions)
        inv = invented(sessions)
        by_pid: dict[int, list[tuple[float, int]]] = {}
        for pid, t, kb in self.rss:
            by_pid.setdefault(pid, []).append((t, kb))
        longest = max(by_pid.values(), key=len) if by_pid else []
        warm = [kb for t, kb in longest if t - longest[0][0] >= 20] or [kb for _, kb in longest]
        rss = {"longest_session_s": round(longest[-1][0] - longest[0][0]) if longest else 0,
               "after_warmup_MB": round(warm[0] / 1024, 1) if warm else None,
               "end_MB": round(warm[-1] / 1024, 1) if warm else None,
               "growth_MB": round((warm[-1] - warm[0]) / 1024, 1) if warm else None,
               "max_MB": round(max(kb for _, _, kb in self.rss) / 1024, 1) if self.rss else None}
        unacc = sum(r["unaccounted"] for r in classes.values())
        failed = []
        if unacc:
            failed.append(f"{unacc} unaccounted items")
        if inv["spikes_inside_gaps"] or inv["raw_samples_inside_gaps"]:
            failed.append("spikes or raw samples inside reported gaps")
        if inv["spikes_after_gaps"] > max(5.0, 3 * inv["spikes_after_gaps_expected"]):
            failed.append("a burst of spikes after gaps")
        if not summary.get("final_report_seen"):
            failed.append("the hub's final report never arrived")
        if hub_rc != 0:
            failed.append(f"hub exit code {hub_rc} on SIGTERM")
        if self.refusals:
            failed.append(f"the hub refused to start on corrupt state {len(self.refusals)}×")
        if any(n == 0 for n in self.faults.values()):
            failed.append("not every fault kind was injected (run longer)")
        health = [s.health for s in sessions.values() if s.health]
        return {"duration_s": round(duration, 1), "faults": self.faults,
                "classes": classes, "unaccounted": unacc,
                "lost_items": sum(r["lost_items"] for r in classes.values()),
                "lost_packets": sum(r["lost_packets"] for r in classes.values()),
                "invented": inv, "rss": rss, "sessions": len(sessions),
                "corrupt_state_refusals": self.refusals, "hub_stop_s": round(stop_s, 2),
                "link_health_last_session": health[-1] if health else {},
                "passed": not failed, "failed": failed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.fault_soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--period", type=float, default=6.0, help="seconds between faults")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "out" / "hil")
    p.add_argument("--ble-seconds", type=float, default=60.0,
                   help="length of the BLE phase (intruder centrals); 0: skip")
    args = p.parse_args(argv)
    if args.duration < len(KINDS) * args.period + args.period:
        p.error(f"--duration must leave room for every fault kind "
                f"(≥ {(len(KINDS) + 1) * args.period:g} s at --period {args.period:g})")
    print(f"== fault soak, TCP phase: {args.duration:.0f} s", file=sys.stderr, flush=True)
    soak = Soak(args)
    with soak.chain:
        report = asyncio.run(soak.run())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=1))   # before the BLE phase
    if args.ble_seconds > 0:
        from hil.fault_soak_ble import ble_phase

        print(f"== fault soak, BLE phase: {args.ble_seconds:.0f} s", file=sys.stderr,
              flush=True)
        report["ble"] = ble_phase(args.out / "faults" / "ble", args.ble_seconds, args.seed)
        if not report["ble"]["passed"]:
            report["failed"] += [f"BLE: {f}" for f in report["ble"]["failed"]]
            report["passed"] = False
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=1))
    md = markdown(report)
    (args.out / "faults.md").write_text(md)
    print(md)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
