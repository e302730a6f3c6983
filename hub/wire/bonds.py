"""Secrets of the BLE link on disk, for both ends: bond keys (LTKs) and this device's address.

- :class:`SecretKeyStore` is Bumble's JSON keystore, written the way secrets must be: the file
  is created 0600 (never world-readable, not even for an instant: ``mkstemp`` then ``replace``)
  and an existing file with wider permissions is narrowed, with a warning, when it is opened.
- :func:`device_address` gives each install its own random static address, persisted beside the
  keystore. A fixed default address would make every hub (or every host) the same device to a
  peer: bonds collide, and one host could pass for another.

Bumble is imported here (the keystore is a Bumble class); ``hub.wire`` does not import this
module, so only the BLE code pays for it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from bumble.keys import JsonKeyStore

log = logging.getLogger(__name__)

SECRET_MODE = 0o600
DIR_MODE = 0o700


def narrow(path: Path, mode: int) -> None:
    """Removes permission bits beyond ``mode`` from an existing file or folder (logged)."""
    try:
        have = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if have & ~mode:
        log.warning("%s was mode %o: narrowed to %o (it holds secrets)", path, have, have & mode)
        path.chmod(have & mode)


def write_secret(path: Path, text: str) -> None:
    """Atomically replaces ``path`` with ``text``, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)   # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def secure_dir(path: Path) -> None:
    """Creates ``path`` owner-only, or narrows an existing one (a hub's state directory)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    narrow(path, DIR_MODE)


class SecretKeyStore(JsonKeyStore):  # type: ignore[misc]
    """Bumble's JSON keystore, kept 0600."""

    def __init__(self, namespace: str | None = None, filename: str | None = None) -> None:
        super().__init__(namespace=namespace, filename=filename)
        narrow(Path(self.filename), SECRET_MODE)

    async def save(self, db: dict[str, dict[str, dict[str, Any]]]) -> None:
        write_secret(Path(self.filename), json.dumps(db, sort_keys=True, indent=4))


def random_static_address() -> str:
    """A fresh random static address (the two top bits set, not all ones or zeros)."""
    while True:
        b = bytearray(secrets.token_bytes(6))
        b[0] |= 0xC0
        if any(x != 0xFF for x in b[1:]) or b[0] != 0xFF:
            return ":".join(f"{x:02X}" for x in b)


def device_address(path: Path) -> str:
    """This install's address, from ``path`` (created on first use, 0600)."""
    try:
        text = path.read_text().strip()
        b = bytes.fromhex(text.replace(":", ""))
        if len(b) == 6 and b[0] & 0xC0 == 0xC0:
            return text.upper()
        log.warning("%s does not hold a random static address (%r): a new one is made",
                    path, text[:40])
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("%s unreadable (%s): a new address is made", path, e)
    addr = random_static_address()
    write_secret(path, addr + "\n")
    log.info("this device's BLE address: %s (kept in %s)", addr, path)
    return addr
