"""BLE over the virtual air: three processes (air, hub with the real BLE uplink, this host).

Bounded durations; every child runs in its own process group and is killed on exit.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from host_tools.bench import bench_ble

pytestmark = pytest.mark.slow


def test_throughput_2m_saturated(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.throughput(tmp_path, "2M/7.5", 3.0))
    assert r["mtu"] == 247
    assert r["missing"] == 0
    assert r["measured_mbps"] == pytest.approx(1.30, rel=0.05)
    assert r["fill_of_model"] >= 0.90


def test_throughput_1m_without_dle(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.throughput(tmp_path, "1M/7.5/noDLE", 3.0))
    assert r["measured_mbps"] == pytest.approx(0.26, rel=0.05)


def test_latency_unsaturated(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.latency(tmp_path, 400, 3.0))
    assert r["missing"] == 0
    assert r["latency_ms"]["p99"] < 30


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
    assert r["max_latency_ms"] >= 700


def test_security(tmp_path: Path) -> None:
    r = asyncio.run(bench_ble.security(tmp_path))
    assert r["unbonded_subscribe"] == "ATT error 0x05"
    assert r["unbonded_control_write"] == "ATT error 0x05"
    assert r["pairing_with_window_closed"].startswith("refused")
    assert r["unbonded_data_chunks"] == 0
    assert r["bonded_data_chunks"] > 0 and r["bonded_control_writes_seen_by_hub"] == 1
    assert r["after_hub_restart_data_chunks"] > 0
    assert r["after_hub_restart_control_writes"] == 1
