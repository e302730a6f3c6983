"""BLE over the virtual air: three processes (air, hub with the real BLE uplink, this host).

Bounded durations; every child runs in its own process group and is killed on exit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench import bench_ble

pytestmark = pytest.mark.slow


async def until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    """Polls ``cond`` (a hang guard, not a pass criterion: the assertions follow)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond() and loop.time() < end:
        await asyncio.sleep(0.05)


def test_saturated_2m_link_carries_the_modelled_throughput(tmp_path: Path) -> None:
    """The negotiated link (MTU 247, 251-byte PDUs, 2M PHY, encrypted) carries the reference
    1.30 Mbit/s in the air's simulated time: what every connection event that ended with
    notifications still queued carried. Wall-clock throughput (how fast these processes kept
    the radio fed) is a benchmark figure (make bench: bench_ble), not a test."""
    r = asyncio.run(bench_ble.throughput(tmp_path, "2M/7.5", 3.0))
    assert r["mtu"] == 247
    assert r["missing"] == 0
    air = r["air"]
    assert (air["phy"], air["tx_octets"], air["encrypted"]) == ("2M", 251, True)
    assert air["saturated_events"] >= 10
    assert air["saturated_mbps"] == pytest.approx(1.30, rel=0.01)
    assert air["saturated_mbps"] == pytest.approx(r["modelled_mbps"], rel=1e-3)


def test_1m_without_dle_carries_one_notification_per_event(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.throughput(tmp_path, "1M/7.5/noDLE", 3.0))
    air = r["air"]
    assert (air["phy"], air["tx_octets"]) == ("1M", 27)
    assert air["saturated_events"] >= 10
    assert air["saturated_mbps"] == pytest.approx(0.26, rel=0.01)


def test_unsaturated_stream_arrives_complete_and_in_order(tmp_path: Path) -> None:
    """400 notifications/s: nothing missing or duplicated. (Latency figures: make bench.)"""
    r = asyncio.run(bench_ble.latency(tmp_path, 400, 3.0))
    assert r["missing"] == 0 and r["received"] > 0
    assert r["duplicates"] == 0


def test_long_outage_disconnects_both_sides_and_recovers(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.outage(tmp_path, 3.0, 1.5))
    assert r["host_disconnect_reasons"] == [0x08]
    assert r["hub_disconnect_reasons"] == [0x08]
    assert r["host_connects"] == 2 and r["host_subscribes"] == 2   # re-subscribed exactly once
    assert r["missing"] == 0
    assert r["received"] + r["left_in_hub_buffer"] >= r["produced"] - 1


def test_short_outage_stalls_then_delivers(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.outage(tmp_path, 0.8, 2.0))
    assert r["host_disconnect_reasons"] == [] and r["hub_disconnect_reasons"] == []
    assert r["missing"] == 0
    assert r["air_silent_events"] > 0            # the radio was out, the link held


def test_security(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.security(tmp_path))
    assert r["unbonded_subscribe"] == "ATT error 0x05"
    assert r["unbonded_control_write"] == "ATT error 0x05"
    assert r["pairing_with_window_closed"].startswith("refused")
    assert r["unbonded_data_chunks"] == 0
    assert r["bonded_data_chunks"] > 0 and r["bonded_control_writes_seen_by_hub"] == 1
    assert r["after_hub_restart_data_chunks"] > 0
    assert r["after_hub_restart_control_writes"] == 1


def test_dead_peer_process_times_out_on_the_other_side(tmp_path: Path) -> None:
    """Hub process killed → the host sees 0x08 after the supervision timeout; host process
    killed → the hub sees 0x08 (the air notices the closed HCI connection)."""
    import os
    import signal
    import sys
    import time

    from hil.air import control_request
    from hil.ble_harness import REPO
    from host_tools.ble_receiver import BleReceiver, SynthStats

    async def go() -> tuple[list[int], list[dict[str, Any]], dict[str, object] | None]:
        model = {**bench_ble.MODELS["2M/7.5"], "supervision_timeout_s": 1.0}
        async with bench_ble.Bench(tmp_path, model) as b:
            hub = await b.start_hub("--rate", "100", "--pairing-window", "30")
            be = b.backend()
            rx = BleReceiver("ihub-01", SynthStats(), backend=be, pair=True, reconnect=False)
            await rx.connect_once()
            t0 = time.monotonic()
            hub.kill()
            while not be.disconnect_reasons and time.monotonic() - t0 < 60:   # hang guard
                await asyncio.sleep(0.02)
            reasons = list(be.disconnect_reasons)
            closed = (await control_request(b.control_port, {"cmd": "stats"}))["closed"]
            await be.close()
            hub2 = await b.start_hub("--rate", "100")        # the bond persisted on the hub
            host = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "host_tools.ble_receiver", "--transport",
                f"tcp-client:127.0.0.1:{b.ports['host']}", "--keystore",
                str(tmp_path / "host_bonds.json"), cwd=str(REPO),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True)
            try:
                for _ in range(600):                           # hang guard: 60 s
                    st = await control_request(b.control_port, {"cmd": "stats"})
                    if any(c["encrypted"] for c in st["open"]):
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)
            finally:
                os.killpg(host.pid, signal.SIGKILL)
                await host.wait()
            for _ in range(600):             # until the air timed the connection out
                if not (await control_request(b.control_port, {"cmd": "stats"}))["open"]:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)         # the hub handles its disconnection event
            return reasons, closed, await hub2.stop(timeout=60.0)

    reasons, closed, hub_stats = asyncio.run(go())
    assert reasons == [0x08]
    # in the air's simulated time: never before the supervision timeout (1 s)
    assert closed and closed[0]["silence_s"] >= 1.0
    assert hub_stats is not None and hub_stats["disconnect_reasons"] == [0x08]


def test_hubctl_pair_then_record_without_pairing(tmp_path: Path) -> None:
    from host_tools.ble_receiver import BleReceiver, SynthStats
    from host_tools.pair_cli import pair

    async def go() -> tuple[dict[str, object], int, int]:
        async with bench_ble.Bench(tmp_path, bench_ble.MODELS["2M/7.5"]) as b:
            await b.start_hub("--rate", "100", "--pairing-window", "30")
            status = await pair("ihub-01", b.backend("lab.json"), timeout=10)
            be = b.backend("lab.json")
            got = SynthStats()
            rx = BleReceiver("ihub-01", got, backend=be, pair=False, reconnect=False)
            await rx.connect_once()
            await until(lambda: got.received > 0)
            await rx.close()
            await be.close()
            # the hub loses its bonds (state wiped) and opens its window: the host re-bonds
            assert b.hub is not None
            await b.hub.stop()
            (tmp_path / "hub_bonds.json").unlink()
            await b.start_hub("--rate", "100", "--pairing-window", "30")
            be = b.backend("lab.json")
            again = SynthStats()
            rx = BleReceiver("ihub-01", again, backend=be, pair=True, reconnect=False)
            await rx.connect_once()
            await until(lambda: again.received > 0)
            await rx.close()
            await be.close()
            return status, got.received, again.received

    status, received, again = asyncio.run(go())
    assert status["bonded"] is True and status["encrypted"] is True
    assert status["mtu"] == 247 and status["phy"] == "2M" and status["data_length"] == 251
    assert received > 0 and again > 0


def test_hub_over_a_serial_port(tmp_path: Path) -> None:
    """The hardware path: the hub opens ``serial:DEVICE,3000000,rtscts`` (here the air's
    pseudo-terminal standing in for a UART-attached controller chip)."""
    from hil.ble_harness import spawned
    from host_tools.ble_receiver import BleReceiver, SynthStats
    from host_tools.bleak_bumble import BumbleBackend

    async def go() -> tuple[int, int]:
        async with spawned("air", "hil.air", "--pty", "hub",
                           log_path=tmp_path / "air.log") as air:
            pty, host_port = air.first["ptys"]["hub"], air.first["ports"]["host"]
            async with spawned("hub", "hil.ble_source", "--transport",
                               f"serial:{pty},3000000,rtscts", "--keystore",
                               str(tmp_path / "hub.json"), "--pairing-window", "30",
                               "--rate", "200", log_path=tmp_path / "hub.log"):
                be = BumbleBackend(f"tcp-client:127.0.0.1:{host_port}",
                                   keystore=tmp_path / "host.json")
                got = SynthStats()
                rx = BleReceiver("ihub-01", got, backend=be, pair=True, reconnect=False)
                await rx.connect_once()
                await until(lambda: got.received >= 100)
                mtu = rx.stats.mtu
                await rx.close()
                await be.close()
                return got.received, mtu

    received, mtu = asyncio.run(go())
    assert mtu == 247 and received >= 100
