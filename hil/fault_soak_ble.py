"""The fault soak's BLE phase: the chain over the virtual air (implant → ``hub run --uplink
ble:`` → ``hubctl record --ble``) while intruder centrals come and go: each connects without
a bond, reads STATUS, tries to subscribe to DATA and to write CONTROL, and then idles. The
bonded host must keep receiving, every intruder must be refused and dropped at its deadline,
and the accounting must balance as in the TCP phase."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from hil.chain import PY, Chain, ChainSpec, _tail
from hil.soak_report import accounting, invented, read_packet_log
from host_tools.bleak_bumble import BumbleBackend
from hub.wire import gatt

INTRUDERS = ("intruder1", "intruder2")


async def _intrude(port: int, work: Path, name: str, out: dict[str, int]) -> None:
    """One intruder visit: connect, look, try, idle until the hub drops it."""
    be = BumbleBackend(f"tcp-client:127.0.0.1:{port}", keystore=work / f"{name}.json")
    try:
        dev = await BleakScanner.find_device_by_name("ihub-01", timeout=10.0,
                                                     backend=be.scanner)
        if dev is None:
            out["hub_not_found"] += 1
            return
        client = BleakClient(dev, backend=be.client)
        await client.connect()
        out["connected"] += 1
        status = json.loads(bytes(await client.read_gatt_char(gatt.STATUS_UUID)))
        out["status_said_bonded"] += bool(status.get("bonded"))
        for attempt in (client.start_notify(gatt.DATA_UUID, lambda *_: None),
                        client.write_gatt_char(gatt.CONTROL_UUID, b"\x00", response=True)):
            try:
                await attempt
                out["accepted"] += 1
            except BleakError:
                out["refused"] += 1
        t0 = time.monotonic()
        while client.is_connected and time.monotonic() - t0 < 30:
            await asyncio.sleep(0.2)
        out["dropped_by_hub"] += not client.is_connected
    except (BleakError, OSError, TimeoutError, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():     # we are being cancelled: go
            raise
        # Bumble cancels a pending ATT request when the link drops (the hub dropping the
        # intruder mid-setup, say): an error of this visit, not of the soak
        out["errors"] += 1
    finally:
        await be.close()


def ble_phase(work: Path, seconds: float, seed: int) -> dict[str, Any]:
    """Runs the phase; returns its figures and pass/fail."""
    spec = ChainSpec("noise:16:30000:10", uplink="ble",
                     link_model={"phy": "2M", "interval_ms": 7.5},
                     air_extra_devices=list(INTRUDERS))
    with Chain(spec, work) as chain:
        try:
            return asyncio.run(_run(chain, work, seconds, random.Random(seed)))
        except Exception as e:
            return {"duration_s": 0.0, "passed": False,
                    "failed": [f"{type(e).__name__}: {str(e)[:300]}"]}


async def _run(chain: Chain, work: Path, seconds: float, rng: random.Random) -> dict[str, Any]:
    chain.start_air()
    hub = chain.start_hub()
    ports = chain.air["ports"]
    rx_json, log = work / "receiver.json", work / "packets.log"
    rx = chain._start([PY, "-m", "host_tools.cli", "record", "--ble", "ihub-01", "--hci",
                       f"tcp-client:127.0.0.1:{ports['host']}", "--pair", "--keystore",
                       str(work / "host_bonds.json"), "--until-final", "--json", str(rx_json),
                       "--packets-out", str(log)], "rx.log")
    await asyncio.sleep(3.0)
    implant = chain._start([PY, "-m", "hil.implant", chain.spec.recording, "--connect",
                            chain.ports["implant"], "--duration", str(seconds + 60),
                            "--drop", "0.002"], "implant.log")
    out: dict[str, int] = dict.fromkeys(("visits", "connected", "hub_not_found", "refused",
                                         "accepted", "status_said_bonded", "dropped_by_hub",
                                         "errors"), 0)
    t0 = time.monotonic()
    busy: dict[str, asyncio.Task[None]] = {}     # one visit at a time per intruder radio
    while time.monotonic() - t0 < seconds - 15:
        name = INTRUDERS[out["visits"] % len(INTRUDERS)]
        if name in busy and not busy[name].done():
            await asyncio.sleep(0.5)
            continue
        out["visits"] += 1
        busy[name] = asyncio.create_task(_intrude(ports[name], work,
                                                  f"{name}_{out['visits']}", out))
        await asyncio.sleep(rng.uniform(3.0, 6.0))
    await asyncio.gather(*busy.values())
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - t0)))
    duration = time.monotonic() - t0
    implant.send_signal(signal.SIGTERM)
    implant.wait(10)
    hub.send_signal(signal.SIGTERM)
    loop = asyncio.get_running_loop()
    hub_rc = await loop.run_in_executor(None, hub.wait, 60)
    with contextlib.suppress(Exception):
        await loop.run_in_executor(None, rx.wait, 60)
    if not rx_json.exists():
        raise RuntimeError(f"BLE receiver wrote no summary:\n{_tail(work / 'rx.log')}")
    summary = json.loads(rx_json.read_text())
    sessions = read_packet_log(log)
    classes = accounting(sessions)
    inv = invented(sessions)
    unacc = sum(r["unaccounted"] for r in classes.values())
    failed = []
    if unacc:
        failed.append(f"{unacc} unaccounted items")
    if out["accepted"] or out["status_said_bonded"]:
        failed.append("an intruder was obeyed or told it was bonded")
    if out["dropped_by_hub"] < out["connected"]:
        failed.append("an intruder was not dropped at its deadline")
    if out["hub_not_found"]:
        failed.append("an intruder could not find the hub (it stopped advertising)")
    if not summary.get("final_report_seen") or hub_rc != 0:
        failed.append(f"no clean end (final report {summary.get('final_report_seen')}, "
                      f"hub exit {hub_rc})")
    if inv["spikes_inside_gaps"] or inv["raw_samples_inside_gaps"]:
        failed.append("spikes or raw samples inside reported gaps")
    delivered = classes.get("events", {}).get("delivered", 0) + classes.get(
        "feature_bins", {}).get("delivered", 0)
    if not delivered:
        failed.append("the bonded host received nothing")
    return {"duration_s": round(duration, 1), "intruders": out, "classes": classes,
            "unaccounted": unacc, "invented": inv,
            "host_connects": summary.get("connects"), "passed": not failed,
            "failed": failed}
