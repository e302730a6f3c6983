"""BleUplink without a radio: pairing window and provisioning file, refusals, options."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import pytest

from hub.uplink.ble import BleConfig, BleUplink, uplink_from_args
from hub.uplink.gatt import add_ble_arguments


def test_pairing_window_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]                    # the window in simulated seconds, not the machine's
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    flag = tmp_path / "pair-now"
    up = BleUplink(BleConfig(pairing_file=flag))
    assert not up.pairing_open
    flag.touch()
    assert up.pairing_open
    flag.unlink()
    up.open_pairing_window(30)
    clock[0] += 29.9
    assert up.pairing_open
    clock[0] += 0.2
    assert not up.pairing_open


def test_refuses_without_a_subscribed_central() -> None:
    up = BleUplink(BleConfig())
    assert up.payload_size == 244 and not up.connected and up.nominal_bps is None
    assert asyncio.run(up.send(b"x")) is False
    assert up.stats.send_refused == 1
    assert asyncio.run(up.wait_connected(0.01)) is False


def test_hub_run_options(tmp_path: Path) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--payload-size", type=int, default=244)
    add_ble_arguments(p)
    args = p.parse_args(["--state-dir", str(tmp_path), "--ble-name", "hubX",
                         "--ble-pairing-window", "30"])
    up = uplink_from_args("serial:/dev/ttyS1,3000000,rtscts", args)
    assert up.config.keystore == tmp_path / "ble_bonds.json"
    assert up.config.name == "hubX" and up.config.pairing_window_s == 30
    assert up.address == "ble:serial:/dev/ttyS1,3000000,rtscts"
