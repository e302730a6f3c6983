"""``make flash-emulator PORT=/dev/ttyACM0``: deploy the implant firmware to a MicroPython board.

    python -m hil.flash --port /dev/ttyACM0 [--config implant_cfg.json] [--no-reset]

1. compiles the firmware (``mpy-cross``, bytecode ``.mpy``: portable across boards);
2. asks the board what it runs (``mpremote … exec``): MicroPython ≥ 1.22 and the same ``.mpy``
   major version as this mpy-cross, else it refuses (with the board's and our versions);
3. copies the ``.mpy`` files, ``main.py`` (the boot stub), ``implant_cfg.json`` (default: the
   frames on the board's USB-CDC, 32 channels at 30 kHz, no log) and the manifest;
4. checks the board imports the firmware and reports its version; then soft-resets it
   (``machine.soft_reset()``), so it boots into the firmware.

Every ``mpremote`` call uses ``resume`` (no soft reset on connect), so the same commands work
on a board and on the unix port over ``socket://`` (``hil/mpy_board.py``, how it is tested).
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

from hil.mpy_runtime import FW_MODULES, compile_firmware, mpy_cross_version, tool

log = logging.getLogger(__name__)
BOARD_CONFIG: dict[str, Any] = {"mode": "gen", "channels": 32, "fs": 30000, "link": "usbcdc",
                                "log": False}
MIN_VERSION = (1, 22)


class FlashError(RuntimeError):
    pass


def mpremote(port: str, *args: str, timeout: float = 60.0) -> str:
    """One ``mpremote connect PORT resume …`` call; its stdout."""
    cmd = [tool("mpremote"), "connect", port, "resume", *args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise FlashError(f"mpremote {' '.join(args[:2])}: no answer in {timeout:.0f} s") from e
    if r.returncode != 0:
        raise FlashError(f"mpremote {' '.join(args[:2])} failed: "
                         f"{(r.stderr or r.stdout).strip()[-500:]}")
    return r.stdout


def board_info(port: str) -> dict[str, Any]:
    """What the board runs: implementation, version, .mpy ABI, deployed firmware manifest."""
    out = mpremote(port, "exec",
                   "import sys\n"
                   "try:\n m=open('implant_fw_manifest.json').read()\n"
                   "except OSError:\n m=''\n"
                   "print(repr((sys.implementation.name, tuple(sys.implementation.version[:3]),"
                   " getattr(sys.implementation, '_mpy', 0), sys.platform, m)))")
    name, version, mpy, platform, manifest = ast.literal_eval(out.strip().splitlines()[-1])
    return {"implementation": name, "version": list(version), "mpy_major": mpy & 0xFF,
            "mpy_minor": (mpy >> 8) & 3, "platform": platform,
            "deployed": json.loads(manifest) if manifest else None}


def check_compatible(info: dict[str, Any], abi: str) -> None:
    """Raises FlashError when the board cannot load our .mpy files."""
    major = int(abi.split(".")[0])
    if info["implementation"] != "micropython":
        raise FlashError(f"the board runs {info['implementation']}, not MicroPython")
    if tuple(info["version"][:2]) < MIN_VERSION:
        raise FlashError(f"the board runs MicroPython {info['version']}; the firmware needs "
                         f"≥ {'.'.join(map(str, MIN_VERSION))}")
    if info["mpy_major"] != major:
        raise FlashError(f"the board loads .mpy v{info['mpy_major']}, mpy-cross makes v{abi}: "
                         "update the board or pin mpy-cross to its version")


def soft_reset(port: str) -> None:
    """``machine.soft_reset()`` on the board. The board may reset before mpremote reads the
    raw-paste acknowledgement (the code was wholly sent: only the final ack is missing; a USB
    board also drops its serial port): that outcome is the reset, not a failure."""
    try:
        mpremote(port, "exec", "import machine; machine.soft_reset()", timeout=20)
    except FlashError as e:
        if "could not complete raw paste" not in str(e) and "disconnected" not in str(e):
            raise
        log.info("the board reset before mpremote read its acknowledgement (%s)", e)


def flash(port: str, config: dict[str, Any] | None = None, reset: bool = True) -> dict[str, Any]:
    """Deploys the firmware; returns what was found and done."""
    fw = compile_firmware()
    version, abi = mpy_cross_version()
    info = board_info(port)
    log.info("board: %s %s on %s (mpy v%d.%d); deployed before: %s", info["implementation"],
             ".".join(map(str, info["version"])), info["platform"], info["mpy_major"],
             info["mpy_minor"], (info["deployed"] or {}).get("firmware"))
    check_compatible(info, abi)
    cfg_path = fw / "implant_cfg.json"
    cfg_path.write_text(json.dumps(config or BOARD_CONFIG))
    manifest = json.loads((fw / "manifest.json").read_text())
    (fw / "implant_fw_manifest.json").write_text(json.dumps(manifest))
    files = [str(fw / f"{m}.mpy") for m in FW_MODULES] + [
        str(fw / n) for n in ("main.py", "implant_cfg.json", "implant_fw_manifest.json")]
    cps: list[str] = []
    for f in files:                  # one `fs cp SRC :NAME` per file, chained with "+"
        cps += [*(["+"] if cps else []), "fs", "cp", f, f":{Path(f).name}"]
    mpremote(port, *cps, timeout=120)
    got = mpremote(port, "exec", "import fw_main; print(fw_main.VERSION)").strip()
    if got.splitlines()[-1:] != [manifest["firmware"]]:
        raise FlashError(f"the board reports firmware {got!r}, expected {manifest['firmware']}")
    if reset:
        soft_reset(port)
    return {"board": info, "firmware": manifest["firmware"], "mpy_cross": version,
            "mpy_abi": abi, "files": [Path(f).name for f in files], "reset": reset}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", required=True,
                   help="the board: /dev/ttyACM0, COM3, socket://HOST:PORT (unix port)")
    p.add_argument("--config", type=Path, help="implant_cfg.json for the board")
    p.add_argument("--no-reset", action="store_true", help="do not soft-reset afterwards")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = json.loads(args.config.read_text()) if args.config else None
    try:
        out = flash(args.port, cfg, reset=not args.no_reset)
    except FlashError as e:
        log.error("flash-emulator: %s", e)
        return 1
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
