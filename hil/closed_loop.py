"""Closed-loop BCI in the hardware-in-the-loop bench (``make hil-bci``).

    python -m hil.closed_loop [--only NAME] [--quick] [--out out/hil/bci]

Processes as on a real bench: the virtual BLE air (``hil.air``), the real hub daemon (BLE
uplink, 2M PHY / 7.5 ms), and a simulated implant in a tuned generative mode
(``hil/implant_tuned.py``) whose population fires according to the velocity the simulated user
intends. This process is the host: bleak over the Bumble backend receives the hub's packets,
the decoder turns each feature bin into a cursor step, the task judges it, and the simulated
user (``hil.closed_loop_user``: a delayed feedback controller on the *displayed* cursor) sends
its next intention to the implant. Blocks: calibration (open loop, cursor on autopilot) →
decoders fitted on it → closed-loop center-out per decoder → ReFIT (the Kalman filter refitted
on its closed-loop block with intention labels) → the grid task (bits/s) with the ReFIT filter.

The user's adapted parameters, the cursor readout (gain, smoothing) and the dwell time come
from ``python -m hil.closed_loop_calibrate`` on tuning seeds (1, 2: the simulator); the
scenarios here run populations and tasks of other seeds. Report: ``OUT/report.json`` +
``report.md`` + ``closed_loop.png``. Under load, run the whole command with ``chrt -r 10``
(every process of the chain inherits the real-time policy) and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hil.chain import PY, Chain, ChainError, ChainSpec, _tail
from hil.closed_loop_user import ControlServer, SimulatedUser, UserModel
from host_tools.decoding.base import Decoder
from host_tools.decoding.live import LiveLink
from host_tools.decoding.loop import BlockLog
from host_tools.decoding.session import CursorSession
from host_tools.decoding.task import CenterOut, GridTask, Task

log = logging.getLogger(__name__)

LINK_2M = {"phy": "2M", "interval_ms": 7.5}


@dataclass
class BciScenario:
    name: str
    #: tuned:C:FS:UNITS:SEED | ecog:C:FS:SEED (CPython, hil/implant_tuned.py), or
    #: gen:C:FS:UNITS:SEED — the MicroPython firmware's generative mode (hil.mpy_implant)
    implant: str
    features: str = "tc"                      # tc | units | hg
    #: raw broadband of one channel only: a BCI session lives on features (the link could not
    #: carry 64 × 30 kHz of raw anyway, and encoding it would cost the hub CPU for nothing)
    settings: list[str] = field(default_factory=lambda: ["bin_ms=20", "raw_channels=0",
                                                         "snippets=false"])
    calibration_s: float = 60.0
    block_s: float = 45.0
    grid_s: float = 120.0
    decoders: tuple[str, ...] = ("kalman_ss", "wiener")
    refit: bool = True
    seed: int = 11                            # tasks and the user (tuning seeds were 1, 2)
    link_model: dict[str, Any] = field(default_factory=lambda: dict(LINK_2M))
    #: the user (hil.closed_loop_user) and, chosen on the tuning seeds for this feature kind
    #: (hil.closed_loop_calibrate), the cursor readout and the grid's dwell
    user: UserModel = field(default_factory=UserModel)
    speed: float = 1.0
    smooth: float = 0.0
    dwell_s: float = 0.45
    frame_ms: float = 1.0                     # implant frame length (bin ends stay on frames)
    block_ms: float = 10.0                    # hub block (the default; a bin leaves with it)


#: best settings of ``python -m hil.closed_loop_calibrate --seeds 1,2`` per feature kind
CALIBRATED: dict[str, dict[str, float]] = {
    "units": {"speed": 2.0, "smooth": 0.0, "sat": 0.5, "forward": 1.0, "dwell": 0.6},
    "tc": {"speed": 1.5, "smooth": 0.0, "sat": 0.35, "forward": 1.0, "dwell": 0.75},
    "hg": {"speed": 3.0, "smooth": 0.0, "sat": 0.5, "forward": 1.0, "dwell": 0.45},
}


def calibrated(scn: BciScenario) -> BciScenario:
    """The scenario with its feature kind's calibrated user, readout and dwell."""
    c = CALIBRATED[scn.features]
    return replace(scn, user=replace(scn.user, sat=c["sat"], forward=c["forward"]),
                   speed=c["speed"], smooth=c["smooth"], dwell_s=c["dwell"])


SCENARIOS = [calibrated(s) for s in (
    BciScenario("spikes_tc", "tuned:32:30000:48:11", "tc", seed=11),
    BciScenario("spikes_units", "tuned:32:30000:48:12", "units", seed=12,
                settings=["bin_ms=20", "raw_channels=0", "snippets=false", "sort=true"],
                calibration_s=75.0),
    # opt-in (--only spikes_mpy): the same loop with the MicroPython implant firmware on the
    # unix port (its generative mode and control channel, hil/implant_fw)
    BciScenario("spikes_mpy", "gen:16:15000:32:14", "tc", seed=14, refit=False),
    BciScenario("ecog_hg", "ecog:64:2000:13", "hg", seed=13,
                settings=["bin_ms=20", "raw_channels=0", "snippets=false", "lfp=true",
                          "lfp_rate_hz=1000", "lfp_cutoff_hz=250"]),
)]


OPT_IN = {"spikes_mpy"}


def _frame_samples(scn: BciScenario) -> int:
    fs = float(scn.implant.split(":")[2])
    return max(1, round(scn.frame_ms * fs / 1000))


def _quick(s: BciScenario) -> BciScenario:
    return replace(s, calibration_s=30.0, block_s=20.0, grid_s=25.0, decoders=s.decoders[:1])


class Host:
    """The host: a cursor session whose steps the simulated user watches."""

    def __init__(self, scn: BciScenario, control: ControlServer) -> None:
        self.scn = scn
        self.user = SimulatedUser(control, lambda: self.session.task, scn.user,
                                  speed=scn.speed, seed=scn.seed)
        from host_tools.decoding.view import FigureView

        self.view = FigureView(interactive=False)   # off-screen: the snapshot at the end
        self.session = CursorSession(scn.features, view=self.view, on_step=self.user.on_step,
                                     seed=scn.seed)

    async def block(self, name: str, task: Task, decoder: Decoder | None,
                    seconds: float) -> BlockLog:
        # the autopilot moves at full speed 1; closed loop through the calibrated readout
        closed = decoder is not None
        self.session.set_readout(self.scn.speed if closed else 1.0,
                                 self.scn.smooth if closed else 0.0)
        self.user.open_loop = not closed
        self.user.intent.speed = self.session.loop.cursor.speed
        try:
            return await self.session.block(name, task, decoder, seconds)
        finally:
            self.user.rest()


async def host_session(scn: BciScenario, host: Host, hci: str, keystore: Path,
                       ble_name: str, out: Path) -> dict[str, Any]:
    settings = [*scn.settings, f"block_ms={scn.block_ms:g}"]
    args = argparse.Namespace(tcp=None, ble=ble_name, hci=hci, keystore=keystore, pair=True,
                              set=settings, connect_timeout=60.0)
    link = LiveLink(args, host.session.on_envelope)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    results: dict[str, Any] = {}
    s = host.session
    try:
        t0 = time.monotonic()
        while not any(r.request_id == 1 for r in link.rx.results):
            if task.done():
                task.result()
            if time.monotonic() - t0 > 90:
                raise ChainError("the hub did not answer the Configure command")
            await asyncio.sleep(0.05)
        res = next(r for r in link.rx.results if r.request_id == 1)
        if res.code != 0:
            raise ChainError(f"the hub rejected {settings}: {res.message}")
        await asyncio.sleep(3.0)                     # noise estimates settle, warm-up ends
        calib = await host.block("calibration", CenterOut(scn.seed), None, scn.calibration_s)
        for kind in scn.decoders:
            await s.fit(kind, [calib])
        closed: dict[str, BlockLog] = {}
        for i, kind in enumerate(scn.decoders):
            closed[kind] = await host.block(f"center_out/{kind}", CenterOut(scn.seed + 10 + i),
                                            s.decoders[kind], scn.block_s)
        if scn.refit and "kalman_ss" in closed:
            # ReFIT: the Kalman filter refitted with intention labels from its own closed loop
            await s.fit("kalman_ss", [calib, closed["kalman_ss"]], name="refit_kf")
            closed["refit_kf"] = await host.block("center_out/refit_kf", CenterOut(scn.seed + 20),
                                                  s.decoders["refit_kf"], scn.block_s)

        def rank(k: str) -> tuple[float, float]:
            t = closed[k].task
            return (t["success_rate"] or 0.0, -(t["time_to_target_s"]["median"] or 99.0))

        # the grid runs the decoder the calibration tuned for (ReFIT), else the best one
        best = "refit_kf" if "refit_kf" in closed else max(closed, key=rank)
        await host.block(f"grid/{best}", GridTask(scn.seed + 30, dwell_s=scn.dwell_s),
                         s.decoders[best], scn.grid_s)
        results["grid_decoder"] = best
        results["cursor_view"] = str(host.view.snapshot(out / "cursor_view.png"))
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
    results["blocks"] = s.summary()
    results["assembler"] = {"bins": s.assembler.bins_seen,
                            "missing_bins": s.assembler.missing_bins,
                            "unmodelled_spikes": s.assembler.unmodelled_spikes}
    results["receiver"] = {k: link.rx.summary()[k] for k in ("classes", "latency_ms")}
    results["time_sync"] = link.timesync.summary()
    return results


def run_bci(scn: BciScenario, out: Path) -> dict[str, Any]:
    """One scenario end to end; returns its report section (and saves the per-bin logs)."""
    out.mkdir(parents=True, exist_ok=True)
    total = scn.calibration_s + scn.block_s * (len(scn.decoders) + scn.refit) + scn.grid_s + 120
    spec = ChainSpec(recording=scn.implant, uplink="ble", link_model=scn.link_model,
                     duration_s=total, label=scn.name)
    control = ControlServer()
    with Chain(spec, out) as chain:
        chain.start_air()
        chain.start_hub()
        if scn.implant.startswith("gen:"):          # the MicroPython firmware
            cmd = [PY, "-m", "hil.mpy_implant", scn.implant, "--connect", chain.ports["implant"],
                   "--duration", str(total), "--fw-json", json.dumps({"control": control.address}),
                   "--stats", str(out / "implant.json"), "--log", str(out / "firmware.jsonl")]
        else:
            cmd = [PY, "-m", "hil.implant", scn.implant, "--connect", chain.ports["implant"],
                   "--duration", str(total), "--control", control.address, "--stats",
                   str(out / "implant.json"), "--frame-samples", str(_frame_samples(scn))]
        implant = chain._start(cmd, "implant.log")
        if not control.wait_connected(30):
            raise ChainError(f"implant never connected its control channel:\n"
                             f"{_tail(out / 'implant.log')}")
        host = Host(scn, control)
        t0 = time.monotonic()
        try:
            res = asyncio.run(host_session(scn, host, f"tcp-client:127.0.0.1:"
                                           f"{chain.air['ports']['host']}",
                                           out / "host_bonds.json", spec.ble_name, out))
        finally:
            control.close()
            implant.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                implant.wait(10)
            if chain.hub is not None:
                chain.hub.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    chain.hub.wait(20)
    res["wall_s"] = round(time.monotonic() - t0, 1)
    res["scenario"] = asdict(scn)
    res["control"] = {"sent": control.sent, "unsent": control.unsent}
    host.session.save(out / "session.npz")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.closed_loop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("out/hil/bci"))
    p.add_argument("--only", help="comma-separated scenario names")
    p.add_argument("--quick", action="store_true", help="short blocks (a smoke run)")
    p.add_argument("--frame-ms", type=float, help="implant frame length (default 1 ms)")
    p.add_argument("--spike-fs", type=float,
                   help="sampling rate of the spiking implants (default 30000; 15000 halves "
                        "the implant's and the hub's work on a loaded machine)")
    p.add_argument("--block-ms", type=float,
                   help="hub block length (default 10 ms; 20 halves the hub's per-block work "
                        "on a loaded machine)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    from hil.closed_loop_report import write_report

    names = set(args.only.split(",")) if args.only else None
    report: dict[str, Any] = {"scenarios": {}}
    for scn in SCENARIOS:
        wanted = scn.name in names if names is not None else scn.name not in OPT_IN
        if not wanted:
            continue
        if args.quick:
            scn = _quick(scn)
        if args.frame_ms:
            scn = replace(scn, frame_ms=args.frame_ms)
        if args.block_ms:
            scn = replace(scn, block_ms=args.block_ms)
        if args.spike_fs and scn.implant.startswith("tuned:"):
            parts = scn.implant.split(":")
            parts[2] = f"{args.spike_fs:g}"
            scn = replace(scn, implant=":".join(parts))
        log.info("scenario %s", scn.name)
        try:
            report["scenarios"][scn.name] = run_bci(scn, args.out / scn.name)
        except ChainError as e:
            log.error("scenario %s failed: %s", scn.name, e)
            report["scenarios"][scn.name] = {"error": str(e)}
        write_report(report, args.out)
    print(json.dumps({k: v.get("grid_decoder", v.get("error")) for k, v in
                      report["scenarios"].items()}))
    return 1 if any("error" in v for v in report["scenarios"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
