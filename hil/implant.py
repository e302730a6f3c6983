"""A simulated implant: replays a recording over the implant link at real-time pace.

    python -m hil.implant RECORDING --connect tcp:HOST:PORT|unix:PATH|pty [--speed N]
        [--duration S] [--channels N] [--drop P] [--corrupt P] [--garbage P] [--seed N]

RECORDING is anything ``hub replay`` reads, or ``synth:CHANNELS:FS[:SECONDS[:SEED]]`` (noise
plus spikes, generated), ``noise:CHANNELS:FS[:SECONDS[:SEED]]`` (noise only), or a
closed-loop generative mode whose activity follows a velocity the task sends over ``--control``
(``tuned:C:FS[:UNITS[:SEED]]`` spikes, ``ecog:C:FS[:SEED]`` high-gamma; ``hil/implant_tuned.py``).
The recording loops until ``--duration`` (default: once). The frame clock never stops: frames
that cannot be sent (hub gone, restarting) are dropped and counted, and the implant reconnects —
exactly what a real implant does. ``pty`` creates a pseudo-terminal and prints
``{"pty": "/dev/pts/N"}`` for the hub's ``--implant pty:...``.
Faults: ``--drop`` skips frames (the counter still advances), ``--corrupt`` flips a byte,
``--garbage`` inserts random bytes between frames. Statistics go to stdout as JSON at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.argtypes import bounded, positive
from hub.link import encode_frame
from hub.sources import Recording, open_recording

log = logging.getLogger(__name__)


def synth_recording(spec: str) -> Recording:
    """``synth:C:FS[:SECONDS[:SEED]]``: Gaussian noise (σ 20 counts) and spikes of 8 units
    per 64 channels at 2–8 Hz, amplitudes 150–400 counts on a channel and (half) its two
    neighbours."""
    parts = spec.split(":")[1:]
    try:
        c, fs = int(parts[0]), float(parts[1])
        seconds = float(parts[2]) if len(parts) > 2 else 4.0
        seed = int(parts[3]) if len(parts) > 3 else 1
    except (IndexError, ValueError) as e:
        raise ValueError(f"{spec!r}: want synth:CHANNELS:FS[:SECONDS[:SEED]]") from e
    if not (1 <= c <= 1024 and 1000 <= fs <= 200_000 and 0.01 <= seconds <= 3600):
        raise ValueError(f"{spec!r}: want 1–1024 channels, 1–200 kHz, 0.01–3600 s")
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    data = rng.normal(0, 20, (n, c)).astype(np.float32)
    t = np.arange(-int(0.0005 * fs), int(0.0015 * fs))
    shape = -np.exp(-(t / (0.0002 * fs)) ** 2) + 0.3 * np.exp(-((t - 0.0005 * fs) /
                                                               (0.0004 * fs)) ** 2)
    for _ in range(max(1, c * 8 // 64)):
        ch = int(rng.integers(c))
        amp = rng.uniform(150, 400)
        times = np.cumsum(rng.exponential(fs / rng.uniform(2, 8), int(seconds * 10) + 5))
        times = times[(times > 50) & (times < n - 100)].astype(int)
        for dc, g in ((0, 1.0), (-1, 0.5), (1, 0.5)):
            if 0 <= ch + dc < c:
                for s in times:
                    data[s + t[0]:s + t[-1] + 1, ch + dc] += g * amp * shape
    q = np.clip(np.rint(data), -32768, 32767).astype(np.int16)
    return Recording(name=f"synth {c}ch {fs:.0f}Hz", sampling_frequency=fs, num_channels=c,
                     num_samples=n, gain_to_uV=np.full(c, 0.195),
                     reader=lambda a, b: np.ascontiguousarray(q[a:b]))


def noise_recording(spec: str) -> Recording:
    """``noise:C:FS[:SECONDS[:SEED]]``: Gaussian noise (σ 20 counts) on an ADC offset per
    channel, no spikes — any spike the hub reports beyond the noise's own rare threshold
    crossings is invented (the fault soak's probe)."""
    parts = spec.split(":")[1:]
    try:
        c, fs = int(parts[0]), float(parts[1])
        seconds = float(parts[2]) if len(parts) > 2 else 4.0
        seed = int(parts[3]) if len(parts) > 3 else 1
    except (IndexError, ValueError) as e:
        raise ValueError(f"{spec!r}: want noise:CHANNELS:FS[:SECONDS[:SEED]]") from e
    if not (1 <= c <= 1024 and 1000 <= fs <= 200_000 and 0.01 <= seconds <= 3600):
        raise ValueError(f"{spec!r}: want 1–1024 channels, 1–200 kHz, 0.01–3600 s")
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    q = np.rint(rng.normal(0, 20, (n, c)).astype(np.float32) + rng.normal(0, 300, c))
    data = np.clip(q, -32768, 32767).astype(np.int16)
    return Recording(name=f"noise {c}ch {fs:.0f}Hz", sampling_frequency=fs, num_channels=c,
                     num_samples=n, gain_to_uV=np.full(c, 0.195),
                     reader=lambda a, b: np.ascontiguousarray(data[a:b]))


def load(spec: str, control: str | None = None, duration: float | None = None) -> Recording:
    if spec.startswith(("tuned:", "ecog:")):     # closed-loop generative modes
        from hil.implant_tuned import tuned_recording

        return tuned_recording(spec, control, duration or 600.0)
    if spec.startswith("synth:"):
        return synth_recording(spec)
    if spec.startswith("noise:"):
        return noise_recording(spec)
    return open_recording(spec)


@dataclass
class ImplantStats:
    frames: int = 0             # frames generated by the clock
    sent: int = 0
    dropped_disconnected: int = 0
    dropped_fault: int = 0
    corrupted: int = 0
    garbage_bytes: int = 0
    connects: int = 0
    samples: int = 0


class Link:
    """The byte sink: a TCP/unix client that reconnects, or a pty master."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.sock: socket.socket | None = None
        self.fd: int | None = None
        self._next_try = 0.0
        if spec == "pty":
            master, slave = os.openpty()
            self.fd = master
            os.set_blocking(master, True)
            print(json.dumps({"pty": os.ttyname(slave)}), flush=True)
        elif not spec.startswith(("tcp:", "unix:")):
            raise ValueError(f"--connect {spec!r}: want tcp:HOST:PORT, unix:PATH or pty")

    def connect(self, stats: ImplantStats) -> bool:
        if self.fd is not None or self.sock is not None:
            return True
        now = time.monotonic()
        if now < self._next_try:
            return False
        self._next_try = now + 0.2
        scheme, _, rest = self.spec.partition(":")
        try:
            if scheme == "tcp":
                host, _, port = rest.rpartition(":")
                s = socket.create_connection((host, int(port)), timeout=1.0)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(rest)
        except OSError:
            return False
        s.settimeout(2.0)
        self.sock = s
        stats.connects += 1
        log.info("implant connected to %s", self.spec)
        return True

    def send(self, data: bytes) -> bool:
        try:
            if self.fd is not None:
                os.write(self.fd, data)
            elif self.sock is not None:
                self.sock.sendall(data)
            else:
                return False
            return True
        except OSError as e:
            log.info("implant link lost (%s); frames dropped until it is back", e)
            if self.sock is not None:
                self.sock.close()
            self.sock = None
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def run_implant(rec: Recording, link: Link, speed: float = 1.0, duration: float | None = None,
                frame_samples: int | None = None, drop: float = 0.0, corrupt: float = 0.0,
                garbage: float = 0.0, seed: int = 0, channels: int | None = None,
                start_counter: int = 0) -> ImplantStats:
    fs = rec.sampling_frequency
    spf = frame_samples or max(1, round(fs / 1000))
    c = min(channels or rec.num_channels, rec.num_channels)
    total = int((duration if duration is not None else rec.duration_s) * fs) // spf
    rng = np.random.default_rng(seed)
    st = ImplantStats()
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    t0 = time.monotonic()
    dt = spf / fs / speed
    pos = 0
    for k in range(total):
        if stop[0]:
            break
        due = t0 + k * dt
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if pos + spf > rec.num_samples:
            pos = 0
        block: npt.NDArray[np.int16] = rec.read(pos, pos + spf)[:, :c]
        pos += spf
        st.frames += 1
        st.samples += spf
        if not link.connect(st):
            st.dropped_disconnected += 1
            continue
        if drop and rng.random() < drop:
            st.dropped_fault += 1
            continue
        frame = encode_frame(start_counter + k, np.ascontiguousarray(block), round(fs))
        if corrupt and rng.random() < corrupt:
            b = bytearray(frame)
            b[int(rng.integers(len(b)))] ^= 0xFF
            frame = bytes(b)
            st.corrupted += 1
        if garbage and rng.random() < garbage:
            junk = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
            frame = junk + frame
            st.garbage_bytes += len(junk)
        if link.send(frame):
            st.sent += 1
        else:
            st.dropped_disconnected += 1
    link.close()
    return st


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hil.implant", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("recording")
    p.add_argument("--connect", required=True, help="tcp:HOST:PORT | unix:PATH | pty")
    p.add_argument("--speed", type=bounded(0.001, 1000), default=1.0, help="× real time")
    p.add_argument("--duration", type=positive, help="seconds of signal (loops the recording)")
    p.add_argument("--channels", type=bounded(1, 1024, integer=True),
                   help="send only the first N channels")
    p.add_argument("--frame-samples", type=bounded(1, 4096, integer=True),
                   help="samples per frame (default 1 ms)")
    p.add_argument("--drop", type=bounded(0, 1), default=0.0, help="probability a frame is lost")
    p.add_argument("--corrupt", type=bounded(0, 1), default=0.0,
                   help="probability a frame is damaged")
    p.add_argument("--garbage", type=bounded(0, 1), default=0.0,
                   help="probability of junk bytes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats", help="also write the statistics here (JSON)")
    p.add_argument("--control", help="tuned:/ecog: modes: the task's control server "
                   "(tcp:HOST:PORT) sending the intended velocity")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s implant %(message)s",
                        stream=sys.stderr)
    try:
        rec = load(args.recording, args.control, args.duration)
        link = Link(args.connect)
    except (ValueError, OSError) as e:     # a bad recording or address: say so, exit 2
        print(f"hil.implant: error: {e}", file=sys.stderr)
        return 2
    st = run_implant(rec, link, args.speed, args.duration, args.frame_samples, args.drop,
                     args.corrupt, args.garbage, args.seed, args.channels)
    out: dict[str, Any] = {"recording": rec.name, "sampling_frequency": rec.sampling_frequency,
                           "channels": min(args.channels or rec.num_channels, rec.num_channels),
                           **asdict(st)}
    if "control" in rec.info:
        ctl = rec.info["control"]
        out["control"] = {"messages": ctl.messages, "bad": ctl.bad, "last_seq": ctl.seq}
        out["generated_spikes"] = getattr(rec.info["generator"], "spikes", None)
    print(json.dumps(out), flush=True)
    if args.stats:
        with open(args.stats, "w") as f:
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
