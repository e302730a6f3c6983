"""Secrets on disk (issue 10 item 8): bond keys 0600 from their first byte, an existing
world-readable keystore narrowed, the state directory 0700, and a BLE address of its own for
every install (the old default made every hub — and every host — the same device)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from bumble.keys import PairingKeys

from hub.wire.bonds import SecretKeyStore, device_address, secure_dir


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_keystore_is_owner_only_and_narrowed_when_found_open(tmp_path: Path) -> None:
    old = os.umask(0o022)                      # a typical umask: files would be 0644
    try:
        path = tmp_path / "ble_bonds.json"
        ks = SecretKeyStore(namespace="F0:00:00:00:00:01", filename=str(path))
        keys = PairingKeys()
        keys.ltk = PairingKeys.Key(value=bytes(range(16)), authenticated=False)
        asyncio.run(ks.update("C0:11:22:33:44:55", keys))
        assert mode(path) == 0o600
        assert [n for n, _ in asyncio.run(ks.get_all())] == ["C0:11:22:33:44:55"]
        path.chmod(0o644)                       # as the old hub left it
        SecretKeyStore(namespace="F0:00:00:00:00:01", filename=str(path))
        assert mode(path) == 0o600
    finally:
        os.umask(old)


def test_state_dir_is_owner_only(tmp_path: Path) -> None:
    d = tmp_path / "hub-state"
    d.mkdir(mode=0o755)
    d.chmod(0o755)
    secure_dir(d)
    assert mode(d) == 0o700
    secure_dir(tmp_path / "fresh")
    assert mode(tmp_path / "fresh") == 0o700


def test_each_install_has_its_own_persisted_address(tmp_path: Path) -> None:
    a1 = device_address(tmp_path / "one" / "ble_address")
    a2 = device_address(tmp_path / "two" / "ble_address")
    assert a1 != a2
    assert device_address(tmp_path / "one" / "ble_address") == a1       # kept
    assert int(a1[:2], 16) & 0xC0 == 0xC0                                # random static
    assert mode(tmp_path / "one" / "ble_address") == 0o600
    (tmp_path / "one" / "ble_address").write_text("not an address")
    assert device_address(tmp_path / "one" / "ble_address") != a1       # replaced, logged
