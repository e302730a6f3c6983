"""What the MicroPython implant firmware sustains on the unix port: channels × sampling rate.

For each format the firmware (generative mode, 1 ms frames, 8 units per 64 channels) runs for a
few seconds into a TCP sink that only counts bytes, and reports how long it was busy building
and sending frames (``busy_us``: its own ticks), how late it ever was and how many frames its
FIFO lost (overruns). A format is *sustained* when no frame was lost and the busy fraction is
below 0.7 (headroom for the control and feed streams and for GC). The CPU figures are
contended on a shared machine: the busy fraction is the firmware's own time, not wall time,
but a preempted frame still counts as busy.

The per-frame cost is split by least squares into a fixed part (interpreted work per frame:
header, units' Poisson steps, send) and a per-sample part (the noise memcpy and the CRC, both C),
which is what the board figures in hil/implant_fw/README.md are derived from.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hil.mpy_runtime import compile_firmware, firmware_command, firmware_env, read_log

FORMATS = [(4, 30000), (32, 30000), (64, 30000), (128, 30000), (256, 30000), (512, 30000),
           (1024, 30000), (256, 20000), (1024, 20000)]
QUICK = [(4, 30000), (64, 30000), (256, 30000)]


def _sink() -> tuple[socket.socket, list[int], threading.Thread]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(30)
    got = [0]

    def run() -> None:
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        with conn:
            while data := conn.recv(1 << 20):
                got[0] += len(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, got, t


def _one(fw: Path, channels: int, fs: int, seconds: float) -> dict[str, Any]:
    srv, got, t = _sink()
    cfg = {"link": f"tcp:127.0.0.1:{srv.getsockname()[1]}", "channels": channels, "fs": fs,
           "duration_s": seconds, "units": max(4, channels // 8), "stats_every_s": 3600}
    with tempfile.TemporaryDirectory(prefix="bench_mpy_") as d:
        log = Path(d) / "fw.jsonl"
        with log.open("wb") as f:
            subprocess.run(firmware_command(cfg, Path(d) / "cfg.json", heap="16M"), stderr=f,
                           stdout=subprocess.DEVNULL, env=firmware_env(fw), cwd=fw,
                           timeout=seconds * 10 + 60, check=True)
        st = read_log(log)[-1]
    t.join(10)
    srv.close()
    frames = max(1, st["frames"])
    spf = round(fs / 1000)
    wall_us = seconds * 1e6
    busy = st["busy_us"] / wall_us
    return {"channels": channels, "fs": fs, "frames": st["frames"], "sent": st["sent"],
            "overruns": st["overruns"], "max_late_ms": round(st["max_late_us"] / 1e3, 2),
            "busy_fraction": round(busy, 4), "us_per_frame": round(st["busy_us"] / frames, 2),
            "samples_per_frame": channels * spf, "bytes_received": got[0],
            "mbyte_per_s": round(got[0] / seconds / 1e6, 3),
            "sustained": st["overruns"] == 0 and busy < 0.7}


def run(quick: bool) -> dict[str, Any]:
    fw = compile_firmware()
    seconds = 2.0 if quick else 5.0
    rows = [_one(fw, c, fs, seconds) for c, fs in (QUICK if quick else FORMATS)]
    x = np.array([r["samples_per_frame"] for r in rows], dtype=np.float64)
    y = np.array([r["us_per_frame"] for r in rows], dtype=np.float64)
    per_sample, fixed = np.polyfit(x, y, 1)
    ok = [r for r in rows if r["sustained"]]
    best = max(ok, key=lambda r: r["channels"] * r["fs"]) if ok else None
    return {"formats": rows, "fixed_us_per_frame": round(float(fixed), 2),
            "ns_per_sample": round(float(per_sample) * 1e3, 2),
            "largest_sustained": (f"{best['channels']} ch × {best['fs']} Hz" if best else None),
            "note": "unix port on the shared machine (contended); busy = the firmware's own "
                    "ticks building and sending frames"}


def table(res: dict[str, Any]) -> str:
    lines = [f"{'format':>16s} {'µs/frame':>9s} {'busy':>6s} {'late ms':>8s} {'overruns':>8s} "
             f"{'MB/s':>6s}  sustained"]
    for r in res["formats"]:
        lines.append(f"{r['channels']:5d} ch × {r['fs']:5d} {r['us_per_frame']:9.1f} "
                     f"{r['busy_fraction']:6.3f} {r['max_late_ms']:8.2f} {r['overruns']:8d} "
                     f"{r['mbyte_per_s']:6.2f}  {'yes' if r['sustained'] else 'no'}")
    lines.append(f"per frame: {res['fixed_us_per_frame']} µs fixed + {res['ns_per_sample']} ns "
                 f"per sample; largest sustained: {res['largest_sustained']}")
    return "\n".join(lines)
