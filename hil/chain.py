"""The bench chain as separate processes: simulated implant → hub daemon → uplink → host
receiver (``hubctl record``). Used by ``make run``, ``make hil``, the integration tests and the
daemon benchmark. Every child is killed when the chain ends, whatever happened.

The uplink is a parameter (``ChainSpec.uplink``): "tcp" (capped loopback TCP) or "ble" — the
virtual radio: a fourth process, ``hil.air``, holds the link model (``ChainSpec.link_model``);
the hub runs ``--uplink ble:tcp-client:…`` (Bumble GATT peripheral) and the receiver is
``hubctl record --ble NAME --hci tcp-client:…`` (bleak over the Bumble backend).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hub.daemon.config_store import ConfigStore, HubConfig
from hub.sources import open_recording

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def probe_file(recording: str, out: Path) -> Path | None:
    """The recording's contact positions as a probe file for ``hub run --probe`` (a real hub
    is installed with its implant's geometry); None for synthetic or position-less recordings
    (a folder of WAVs, say), which are read without opening their samples."""
    p = Path(recording)
    if recording.startswith("synth:") or not (
            (p.is_dir() and (p / "binary.json").exists()) or p.suffix in (".bin", ".json")):
        return None
    rec = open_recording(p)
    pos = rec.channel_positions_um
    if pos is None:
        return None
    d: dict[str, Any] = {"channel_positions_um": pos.tolist(), "name": rec.name}
    gains = rec.gain_to_uV
    if gains.size and bool((gains == gains[0]).all()):
        d["uv_per_count"] = float(gains[0])       # the ADC gain the recordings will carry
    f = out / "probe.json"
    f.write_text(json.dumps(d))
    return f


class ChainError(RuntimeError):
    """A process of the chain failed to start or finish; the message has its log's tail."""


@dataclass
class ChainSpec:
    recording: str                         # path, or synth:C:FS[:S[:SEED]]
    duration_s: float = 10.0
    channels: int | None = None
    uplink: str = "tcp"
    rate_bps: float | None = 1.3e6
    link_schedule: str = ""                # TCP link model: "10:rate=260e3,20:outage=5"
    speed: float = 1.0
    drop: float = 0.0                      # implant-link faults
    corrupt: float = 0.0
    garbage: float = 0.0
    config: HubConfig | None = None        # provisioned into the hub's state dir
    settings: list[str] = field(default_factory=list)   # Configure sent by the receiver
    kill_hub_at: float | None = None       # SIGKILL the hub this many s into the stream …
    restart_after: float = 1.0             # … and restart it this much later
    label: str = "chain"
    raw_out: bool = False                  # the receiver saves decoded raw in OUT/raw.npz
    link_model: dict[str, Any] | None = None   # ble: hil.radio_model.LinkModel fields
    ble_name: str = "ihub-01"
    implant_runtime: str = "cpython"       # "micropython": hil.mpy_implant (the firmware) …
    implant_fw: dict[str, Any] | None = None   # … with these firmware keys (clock, faults)
    packets_out: bool = False              # the receiver's packet log: OUT/packets.bin
    intruder_s: float = 0.0                # ble: an unbonded central tries the hub this long
    air_extra_devices: list[str] = field(default_factory=list)   # more centrals on the air
    #: The hub command (default: this tree's ``python -m hub``); e.g. an installed hub run in
    #: a foreign-architecture root: ["chroot", ROOT, "/opt/implant-hub/bin/hub"] (make hil-arm)
    hub_cmd: list[str] | None = None
    hub_root: Path | None = None           # that root: the hub's files live inside it
    hub_start_s: float = 60.0              # time allowed until the hub is ready (a hang guard)
    nwb: Path | None = None                # the receiver writes this NWB file on close
    record_args: list[str] = field(default_factory=list)   # more hubctl record options
    kill_receiver_at: float | None = None  # SIGKILL hubctl record this many s into the stream


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _cpu_seconds(pid: int) -> float:
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class Chain:
    """Starts and supervises the processes; a context manager that always cleans up."""

    def __init__(self, spec: ChainSpec, out: Path) -> None:
        if spec.uplink not in ("tcp", "ble"):
            raise ChainError(f"uplink {spec.uplink!r}: this chain drives 'tcp' and 'ble'")
        self.spec, self.out = spec, out
        self.procs: list[subprocess.Popen[bytes]] = []
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
                    "PYTHONFAULTHANDLER": "1"}
        out.mkdir(parents=True, exist_ok=True)
        self.state = out / "hub-state"
        self.hub: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, str] = {}
        self.air: dict[str, Any] = {}
        self.receiver_killed_ns = 0

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)

    def _start(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        logf = (self.out / log_name).open("ab")
        p = subprocess.Popen(args, stdout=logf if "rx" not in log_name else subprocess.DEVNULL,
                             stderr=logf, env=self.env, cwd=REPO)
        self.procs.append(p)
        return p

    def start_air(self) -> dict[str, Any]:
        """The virtual radio (uplink "ble"): ports of its hub and host controllers."""
        ports = self.out / "air.json"
        ports.unlink(missing_ok=True)
        devices = ",".join(["hub", "host", *(["intruder"] if self.spec.intruder_s else []),
                            *self.spec.air_extra_devices])
        air = self._start([PY, "-m", "hil.air", "--devices", devices, "--ports-file",
                           str(ports), "--model-json", json.dumps(self.spec.link_model or {})],
                          "air.log")
        deadline = time.monotonic() + 60
        while True:         # the file may exist before it is whole: read until it parses
            if air.poll() is not None or time.monotonic() > deadline:
                raise ChainError(f"air did not start:\n{_tail(self.out / 'air.log')}")
            with contextlib.suppress(OSError, ValueError):
                info: dict[str, Any] = json.loads(ports.read_text())
                break
            time.sleep(0.05)
        self.air = info
        return info

    def start_hub(self) -> subprocess.Popen[bytes]:
        s = self.spec
        ready = self.out / "hub-ready.json"
        state, ready_arg = str(self.state), str(ready)
        if s.hub_root is not None:         # paths as the hub inside the root sees them
            ready, ready_arg = s.hub_root / "tmp" / "hub-ready.json", "/tmp/hub-ready.json"
            state = "/var/lib/implant-hub-hil"
        ready.unlink(missing_ok=True)
        uplink = self.ports.get("uplink", "tcp:127.0.0.1:0")
        if s.uplink == "ble":
            uplink = f"ble:tcp-client:127.0.0.1:{self.air['ports']['hub']}"
        args = [*(s.hub_cmd or [PY, "-m", "hub"]), "run", "--state-dir", state, "--ready-file",
                ready_arg, "--implant", self.ports.get("implant", "tcp:127.0.0.1:0"),
                "--uplink", uplink]
        if s.uplink == "ble":
            args += ["--ble-name", s.ble_name, "--ble-pairing-window", "60"]
        probe = probe_file(s.recording, self.out)
        if probe is not None:
            args += ["--probe", str(probe)]
        if s.rate_bps and s.uplink == "tcp":
            args += ["--rate-bps", str(s.rate_bps)]
        if s.link_schedule and s.uplink == "tcp":
            args += ["--link-schedule", s.link_schedule]
        hub = self._start(args, "hub.log")
        deadline = time.monotonic() + s.hub_start_s
        while not ready.exists():
            if hub.poll() is not None or time.monotonic() > deadline:
                raise ChainError(f"hub did not start:\n{_tail(self.out / 'hub.log')}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.ports = {"implant": info["implant"], "uplink": info["uplink"]}
        self.hub = hub
        return hub

    def _hub_saved_progress(self) -> bool:
        """The hub has persisted a sample position (a kill after this is a restart it can
        report as a gap, however slowly the machine runs)."""
        try:
            state = json.loads((self.state / "state.json").read_text())
        except (OSError, ValueError):
            return False
        return isinstance(state, dict) and bool(state.get("last_sample"))

    def run(self) -> dict[str, Any]:
        s = self.spec
        if s.config is not None:
            ConfigStore(self.state).save_config(s.config)
        if s.uplink == "ble":
            self.start_air()
        hub = self.start_hub()
        intruder = self.run_intruder() if s.uplink == "ble" and s.intruder_s else None
        rx_json = self.out / "receiver.json"
        rx_json.unlink(missing_ok=True)
        if s.uplink == "ble":
            link = ["--ble", s.ble_name, "--hci",
                    f"tcp-client:127.0.0.1:{self.air['ports']['host']}", "--pair",
                    "--keystore", str(self.out / "host_bonds.json")]
        else:
            link = ["--tcp", self.ports["uplink"].removeprefix("tcp:")]
        rx_ready = self.out / "receiver-ready.json"
        rx_ready.unlink(missing_ok=True)
        rx_args = [PY, "-m", "host_tools.cli", "record", *link, "--until-final",
                   "--json", str(rx_json), "--ready-file", str(rx_ready)]
        for item in s.settings:
            rx_args += ["--set", item]
        if s.raw_out:
            rx_args += ["--raw-out", str(self.out / "raw.npz")]
        if s.packets_out:
            rx_args += ["--packets-out", str(self.out / "packets.bin")]
        if s.nwb is not None:
            rx_args += ["--nwb", str(s.nwb)]
        rx_args += s.record_args
        rx = self._start(rx_args, "rx.log")
        # the receiver has connected (and configured; BLE also scanned, paired, subscribed)
        deadline = time.monotonic() + 60
        while not rx_ready.exists():
            if rx.poll() is not None or time.monotonic() > deadline:
                raise ChainError(f"receiver did not connect:\n{_tail(self.out / 'rx.log')}")
            time.sleep(0.05)
        imp_json = self.out / "implant.json"
        mpy = s.implant_runtime == "micropython"
        imp_args = [PY, "-m", "hil.mpy_implant" if mpy else "hil.implant", s.recording,
                    "--connect", self.ports["implant"],
                    "--duration", str(s.duration_s), "--speed", str(s.speed),
                    "--stats", str(imp_json), "--drop", str(s.drop), "--corrupt",
                    str(s.corrupt), "--garbage", str(s.garbage)]
        if s.channels:
            imp_args += ["--channels", str(s.channels)]
        if mpy:
            imp_args += ["--fw-json", json.dumps(s.implant_fw or {}),
                         "--log", str(self.out / "implant_fw.jsonl")]
        implant = self._start(imp_args, "implant.log")
        t_start = time.monotonic()
        cpu0, cpu_t0 = None, 0.0
        kills: list[float] = []
        while implant.poll() is None:
            now = time.monotonic() - t_start
            if cpu0 is None and now > 2.0:    # after loading the recording and warm-up
                cpu0, cpu_t0 = _cpu_seconds(hub.pid), time.monotonic()
            if s.kill_receiver_at is not None and rx.poll() is None and now >= s.kill_receiver_at:
                rx.send_signal(signal.SIGKILL)
                rx.wait(5)
                self.receiver_killed_ns = time.monotonic_ns()
            if s.kill_hub_at is not None and not kills and now >= s.kill_hub_at \
                    and self._hub_saved_progress():
                hub.send_signal(signal.SIGKILL)
                hub.wait(5)
                kills.append(now)
                time.sleep(s.restart_after)
                hub = self.start_hub()
                cpu0 = None
            time.sleep(0.05)
        if implant.returncode != 0:
            raise ChainError(f"implant failed:\n{_tail(self.out / 'implant.log')}")
        cpu = ((_cpu_seconds(hub.pid) - cpu0) / (time.monotonic() - cpu_t0)
               if cpu0 is not None else float("nan"))
        hub.send_signal(signal.SIGTERM)
        try:
            hub_rc = hub.wait(30)
        except subprocess.TimeoutExpired as e:
            raise ChainError(f"hub did not stop on SIGTERM:\n{_tail(self.out / 'hub.log')}") from e
        try:
            rx.wait(60 + (300 if s.nwb is not None else 0))   # + NWB conversion
        except subprocess.TimeoutExpired:
            # no final report reached it (the link dropped it): SIGTERM makes it write its
            # summary (and convert), and the caller sees final_report_seen False
            rx.send_signal(signal.SIGTERM)
            try:
                rx.wait(30 + (300 if s.nwb is not None else 0))
            except subprocess.TimeoutExpired as e:
                raise ChainError("receiver did not finish after the hub's final report") from e
        if s.kill_receiver_at is not None:
            return {"receiver_killed_ns": self.receiver_killed_ns, "hub_exit_code": hub_rc}
        if not rx_json.exists():
            raise ChainError(f"receiver wrote no summary:\n{_tail(self.out / 'rx.log')}")
        summary: dict[str, Any] = json.loads(rx_json.read_text())
        summary["implant"] = json.loads(imp_json.read_text()) if imp_json.exists() else {}
        summary["hub_exit_code"] = hub_rc
        summary["hub_cpu_core_fraction"] = round(cpu, 4)
        summary["hub_kills"] = kills
        summary["spec"] = {k: v for k, v in asdict(self.spec).items() if k != "config"}
        if s.uplink == "ble":
            summary["air"] = {k: self.air.get(k) for k in ("model", "model_text")}
        if intruder is not None:
            summary["intruder"] = intruder
        return summary

    def run_intruder(self) -> dict[str, Any]:
        """An unbonded central (its own controller on the air, an empty key store) connects
        to the hub before the host, tries to subscribe to DATA and to write CONTROL, and leaves
        after ``intruder_s``: what it got (nothing, it should be refused) is returned."""
        keys = self.out / "intruder_bonds.json"
        keys.unlink(missing_ok=True)
        p = self._start([PY, "-m", "host_tools.ble_receiver", "--name", self.spec.ble_name,
                         "--transport", f"tcp-client:127.0.0.1:{self.air['ports']['intruder']}",
                         "--keystore", str(keys), "--address", "F1:5E:1F:00:0B:AD",
                         "--control", "0801", "--duration", str(self.spec.intruder_s)],
                        "intruder.log")
        try:
            p.wait(self.spec.intruder_s + 30)
        except subprocess.TimeoutExpired:
            p.kill()
            return {"error": "the intruder did not finish"}
        lines = [ln for ln in (self.out / "intruder.log").read_text(errors="replace")
                 .splitlines() if ln.startswith("{")]
        return json.loads(lines[-1]) if lines else {"error": "the intruder wrote no summary"}


def run_chain(spec: ChainSpec, out: Path) -> dict[str, Any]:
    with Chain(spec, out) as chain:
        return chain.run()
