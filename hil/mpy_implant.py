"""The MicroPython implant firmware as a simulated implant on the unix port (the chain's
``implant_runtime: "micropython"``); the command line mirrors ``hil.implant``'s.

    python -m hil.mpy_implant gen:CHANNELS:FS[:UNITS[:SEED]] | RECORDING
        --connect tcp:HOST:PORT|unix:PATH [--duration S] [--channels N] [--drop P]
        [--corrupt P] [--garbage P] [--seed N] [--fw-json '{"clock_ppm": 80, …}']
        [--stats OUT.json] [--log OUT.jsonl]

``gen:…`` runs the firmware's generative mode; anything else (``synth:…``, a path that
``hub replay`` reads) is served to its replay mode in chunks by a feed socket. ``--fw-json``
sets any firmware key (hil/implant_fw/fw_main.py ``DEFAULTS``: clock error and wander, stalls,
jitter, reboots, a control stream …). The firmware's log (JSON lines: clock segments, velocity,
statistics) goes to ``--log``; ``--stats`` gets the final statistics in ``hil.implant``'s
shape plus ``"implant_runtime": "micropython"``. SIGTERM ends the firmware with SIGINT (its
KeyboardInterrupt path logs the final statistics).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hil.mpy_runtime import (
    FeedServer,
    compile_firmware,
    firmware_command,
    firmware_env,
    mpy_cross_version,
    read_log,
)

log = logging.getLogger(__name__)


def parse_gen(spec: str) -> dict[str, Any]:
    """``gen:C:FS[:UNITS[:SEED]]`` → firmware keys."""
    parts = spec.split(":")[1:]
    try:
        cfg: dict[str, Any] = {"mode": "gen", "channels": int(parts[0]), "fs": int(parts[1])}
        if len(parts) > 2:
            cfg["units"] = int(parts[2])
        if len(parts) > 3:
            cfg["seed"] = int(parts[3])
    except (IndexError, ValueError) as e:
        raise ValueError(f"{spec!r}: want gen:CHANNELS:FS[:UNITS[:SEED]]") from e
    return cfg


def recording_blocks(spec: str, channels: int | None
                     ) -> tuple[Iterator[np.ndarray[Any, np.dtype[np.int16]]], int, int, str]:
    """(looping blocks of int16 rows, channels, fs, name) of a recording for replay mode."""
    from hil.implant import load

    rec = load(spec)
    c = min(channels or rec.num_channels, rec.num_channels)
    step = max(1, int(rec.sampling_frequency // 10))

    def blocks() -> Iterator[np.ndarray[Any, np.dtype[np.int16]]]:
        for _ in itertools.count():
            for a in range(0, rec.num_samples - step + 1, step):
                yield rec.read(a, a + step)[:, :c]

    return blocks(), c, round(rec.sampling_frequency), rec.name


def stats_from_log(lines: list[dict[str, Any]], spf: int) -> dict[str, Any]:
    """The firmware's final statistics, with hil.implant's key names beside its own."""
    st: dict[str, Any] = next((x for x in reversed(lines) if x.get("ev") == "stats"), {})
    return {**st, "dropped_disconnected": st.get("dropped_link", 0) + st.get("overruns", 0)
            + st.get("underruns", 0), "garbage_bytes": st.get("junk_bytes", 0),
            "samples": st.get("frames", 0) * spf}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.mpy_implant", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recording")
    p.add_argument("--connect", required=True, help="tcp:HOST:PORT | unix:PATH")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--channels", type=int)
    p.add_argument("--speed", type=float, default=1.0, help="must be 1: the firmware is real time")
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--corrupt", type=float, default=0.0)
    p.add_argument("--garbage", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--fw-json", default="{}", help="more firmware keys (JSON object)")
    p.add_argument("--stats", type=Path)
    p.add_argument("--log", type=Path, help="the firmware's JSON-lines log")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mpy-implant %(message)s",
                        stream=sys.stderr)
    if args.speed != 1.0:
        p.error("--speed: the MicroPython implant runs at its own clock (1× real time)")
    cfg: dict[str, Any] = {"seed": args.seed, "drop": args.drop, "corrupt": args.corrupt,
                           "junk": args.garbage, "duration_s": args.duration,
                           "link": args.connect, "stats_every_s": 5}
    feed = None
    if args.recording.startswith("gen:"):
        cfg.update(parse_gen(args.recording))
        if args.channels:
            cfg["channels"] = args.channels
        name = f"generated {cfg['channels']} ch {cfg['fs']} Hz (MicroPython)"
    else:
        blocks, c, fs, name = recording_blocks(args.recording, args.channels)
        feed = FeedServer(blocks, c, fs)
        cfg.update({"mode": "replay", "channels": c, "fs": fs, "feed": feed.address})
    cfg.update(json.loads(args.fw_json))
    fw_dir = compile_firmware()
    log_path = args.log or (args.stats.with_suffix(".log.jsonl") if args.stats
                            else Path("implant_fw.log.jsonl"))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as logf:
        cmd = firmware_command(cfg, log_path.with_suffix(".cfg.json").resolve())
        child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=logf, cwd=fw_dir,
                                 env=firmware_env(fw_dir))
        signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
        t0 = time.monotonic()
        rc = child.wait()
    if feed is not None:
        feed.close()
    lines = read_log(log_path)
    boot = next((x for x in lines if x.get("ev") == "boot"), {})
    st = stats_from_log(lines, int(boot.get("spf", 0)))
    version, abi = mpy_cross_version()
    out: dict[str, Any] = {"recording": name, "sampling_frequency": float(cfg["fs"]),
                           "channels": cfg["channels"], "implant_runtime": "micropython",
                           "micropython": version, "mpy_abi": abi, "exit_code": rc,
                           "wall_s": round(time.monotonic() - t0, 3), "log": str(log_path),
                           "firmware_config": cfg, **st}
    print(json.dumps(out), flush=True)
    if args.stats:
        args.stats.write_text(json.dumps(out))
    if rc != 0 and not st.get("final"):
        log.error("firmware exited %d:\n%s", rc, log_path.read_text(errors="replace")[-2000:])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
