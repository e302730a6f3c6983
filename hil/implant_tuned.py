"""The CPython implant's tuned generative modes: a population whose activity follows an
intended 2-D velocity sent by the closed-loop task while the implant runs.

    python -m hil.implant tuned:C:FS[:UNITS[:SEED]] --control tcp:127.0.0.1:PORT …   # spikes
    python -m hil.implant ecog:C:FS[:SEED] --control tcp:127.0.0.1:PORT …            # ECoG

``tuned``: UNITS cosine-tuned units (rates as ``host_tools.decoding.synth.TunedPopulation``:
base 4–20 Hz, depth 60–100 % of base; the MicroPython firmware's generative mode uses the same
law), each a biphasic spike of 120–420 counts on a main channel and half/quarter on two
neighbours either side, over Gaussian noise of σ 20 counts. ``ecog``: per channel a 1/f-like
background (an AR(1) process) plus a 70–150 Hz (high-gamma) component whose amplitude is
cosine-tuned to the velocity (ECoG high-gamma tracks local population rate; Crone 1998,
Miller 2007).

The velocity arrives as control messages in the format of the MicroPython implant's control
channel (``hil/implant_fw/control.py``: magic C5 3C, type 1 VELOCITY, payload ``<hhI`` vx, vy in
per-mille of full speed and a sequence number, CRC-32); this implant connects to the task's
control server and applies each velocity from the next frame on. Bad bytes are skipped and
counted; without a control connection the velocity stays 0 (baseline activity).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt

from hil.implant_ctl import MAGIC, VELOCITY
from host_tools.decoding.synth import TunedPopulation
from hub.sources import Recording

log = logging.getLogger(__name__)

_VEL = struct.Struct("<hhI")


class VelocityControl:
    """Client side of the control channel: connects (and reconnects) to ``tcp:HOST:PORT`` and
    keeps the latest velocity (per-mille, clamped to ±1000)."""

    def __init__(self, spec: str | None) -> None:
        self.velocity = (0.0, 0.0)
        self.seq = 0
        self.messages = 0
        self.bad = 0
        self._buf = bytearray()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if spec:
            scheme, _, rest = spec.partition(":")
            host, _, port = rest.rpartition(":")
            if scheme != "tcp" or not port.isdigit():
                raise ValueError(f"--control {spec!r}: want tcp:HOST:PORT")
            self._addr = (host or "127.0.0.1", int(port))
            self._thread = threading.Thread(target=self._run, name="control", daemon=True)
            self._thread.start()

    def feed(self, data: bytes) -> None:
        """Parses control bytes; applies every valid VELOCITY message."""
        buf = self._buf
        buf.extend(data)
        while True:
            i = buf.find(MAGIC)
            if i < 0:
                del buf[:max(0, len(buf) - 1)]
                return
            if i:
                self.bad += 1
                del buf[:i]
            if len(buf) < 4:
                return
            n = buf[3]
            if n > 32:
                self.bad += 1
                del buf[:1]
                continue
            if len(buf) < 8 + n:
                return
            body = bytes(buf[2:4 + n])
            (crc,) = struct.unpack_from("<I", buf, 4 + n)
            if crc != zlib.crc32(body):
                self.bad += 1
                del buf[:1]
                continue
            del buf[:8 + n]
            self.messages += 1
            if body[0] == VELOCITY and n == _VEL.size:
                vx, vy, seq = _VEL.unpack(body[2:])
                self.velocity = (max(-1000, min(1000, vx)) / 1000.0,
                                 max(-1000, min(1000, vy)) / 1000.0)
                self.seq = seq

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(self._addr, timeout=1.0) as s:
                    s.settimeout(0.5)
                    log.info("control channel connected to %s:%d", *self._addr)
                    while not self._stop.is_set():
                        try:
                            data = s.recv(4096)
                        except TimeoutError:
                            continue
                        if not data:
                            break
                        self.feed(data)
            except OSError:
                pass
            self._stop.wait(0.2)

    def close(self) -> None:
        self._stop.set()


class _Chunked:
    """Sequential reads served from chunks of ``chunk_s`` generated at once (numpy per-call
    overhead would not keep up with 1 ms frames): the velocity is sampled once per chunk."""

    def __init__(self, fs: float, n_channels: int, chunk_s: float = 0.005) -> None:
        self.c = n_channels
        self.chunk = max(1, round(chunk_s * fs))
        self.buf = np.zeros((0, n_channels), np.int16)
        self.pos = 0                 # absolute index of buf[0]
        self.next = 0

    def _generate(self, n: int) -> npt.NDArray[np.int16]:
        raise NotImplementedError

    def read(self, a: int, b: int) -> npt.NDArray[np.int16]:
        if a != self.next:
            raise IndexError(f"generative source reads sequentially (asked {a}, at {self.next})")
        self.next = b
        while self.pos + len(self.buf) < b:
            rest = self.buf[a - self.pos:]
            self.buf = np.concatenate([rest, self._generate(self.chunk)])
            self.pos = a
        out = np.ascontiguousarray(self.buf[a - self.pos:b - self.pos])
        return out


class TunedSpikes(_Chunked):
    """The tuned spiking population (see the module docstring)."""

    def __init__(self, n_channels: int, fs: float, n_units: int, seed: int,
                 control: VelocityControl, noise: float = 20.0) -> None:
        super().__init__(fs, n_channels)
        self.fs, self.control = fs, control
        rng = np.random.default_rng(seed)
        self.pop = TunedPopulation.random(n_units, seed)
        main = rng.integers(0, n_channels, n_units)
        amp = rng.uniform(120, 420, n_units)
        t = np.arange(max(8, round(1.6e-3 * fs)))
        pre = len(t) // 3
        w = rng.choice([2, 3, 4], n_units)[:, None] * fs / 10_000
        x = (t[None, :] - pre) / w
        templates = (-np.exp(-x * x) + 0.35 * np.exp(-((x - 2.2) / 1.6) ** 2)) * amp[:, None]
        #: per unit: the channel range it reaches [lo, hi) and its waveform there (tlen, hi−lo)
        self.footprint: list[tuple[int, int, npt.NDArray[np.float32]]] = []
        gains = np.array([0.2, 0.5, 1.0, 0.5, 0.2])
        for u in range(n_units):
            lo, hi = max(0, int(main[u]) - 2), min(n_channels, int(main[u]) + 3)
            g = gains[lo - (int(main[u]) - 2):hi - (int(main[u]) - 2)]
            self.footprint.append((lo, hi, (templates[u][:, None] * g).astype(np.float32)))
        self.noise = rng.normal(0, noise, (1 << 16, n_channels)).astype(np.float32)
        self.rng = rng
        self.tlen = len(t)
        self.tail = np.zeros((self.tlen, n_channels), np.float32)
        self.spikes = 0

    def _generate(self, n: int) -> npt.NDArray[np.int16]:
        rates = self.pop.rates(np.asarray(self.control.velocity))
        k = self.rng.poisson(rates * n / self.fs)
        out = np.zeros((n + self.tlen, self.c), np.float32)
        out[:self.tlen] += self.tail
        for u in np.flatnonzero(k):
            lo, hi, wave = self.footprint[u]
            for s in self.rng.integers(0, n, k[u]):
                out[s:s + self.tlen, lo:hi] += wave
        self.spikes += int(k.sum())
        self.tail = out[n:].copy()
        off = int(self.rng.integers(0, len(self.noise) - n))
        sig = out[:n] + self.noise[off:off + n]
        q: npt.NDArray[np.int16] = np.clip(np.rint(sig), -32768, 32767).astype(np.int16)
        return q


class TunedEcog(_Chunked):
    """The ECoG-like generative model (module docstring)."""

    def __init__(self, n_channels: int, fs: float, seed: int, control: VelocityControl,
                 background: float = 40.0, hg_base: float = 12.0) -> None:
        from scipy.signal import butter

        super().__init__(fs, n_channels, chunk_s=0.01)
        self.fs, self.control = fs, control
        rng = np.random.default_rng(seed)
        self.pop = TunedPopulation.random(n_channels, seed)
        self.hg_base = hg_base * rng.uniform(0.6, 1.4, n_channels)
        self.sos = butter(4, (70.0, 150.0), "bandpass", fs=fs, output="sos")
        self.zi = np.zeros((self.sos.shape[0], 2, n_channels))
        self.ar = 0.995                        # background: AR(1), a 1/f²-like low-frequency bed
        self.bg_state = np.zeros(n_channels)
        self.bg_scale = background * np.sqrt(1 - self.ar ** 2)
        self.rng = rng

    def _generate(self, n: int) -> npt.NDArray[np.int16]:
        from scipy.signal import lfilter, sosfilt

        # amplitude ∝ the tuned "rate" relative to its base: 1 + depth/base · cos-tuning
        rates = self.pop.rates(np.asarray(self.control.velocity))
        gain = self.hg_base * rates / self.pop.base_hz
        hg, self.zi = sosfilt(self.sos, self.rng.normal(0, 1, (n, self.c)), axis=0, zi=self.zi)
        white = self.rng.normal(0, self.bg_scale, (n, self.c))
        bg, _ = lfilter([1.0], [1.0, -self.ar], white, axis=0, zi=self.ar * self.bg_state[None, :])
        self.bg_state = bg[-1]
        floor = self.rng.normal(0, 3.0, (n, self.c))             # amplifier noise
        sig = bg + floor + hg * gain * 4.0    # the band-pass keeps ~0.28 of white noise's σ
        q: npt.NDArray[np.int16] = np.clip(np.rint(sig), -32768, 32767).astype(np.int16)
        return q


def tuned_recording(spec: str, control: str | None, duration_s: float) -> Recording:
    """``tuned:C:FS[:UNITS[:SEED]]`` or ``ecog:C:FS[:SEED]`` as a sequential Recording."""
    kind, *parts = spec.split(":")
    try:
        c, fs = int(parts[0]), float(parts[1])
        if kind == "tuned":
            units = int(parts[2]) if len(parts) > 2 else c
            seed = int(parts[3]) if len(parts) > 3 else 1
        else:
            units, seed = 0, int(parts[2]) if len(parts) > 2 else 1
    except (IndexError, ValueError) as e:
        raise ValueError(f"{spec!r}: want tuned:C:FS[:UNITS[:SEED]] or ecog:C:FS[:SEED]") from e
    if c < 1 or not 100 <= fs <= 50_000:
        raise ValueError(f"{spec!r}: channels ≥ 1 and 100 ≤ FS ≤ 50000")
    ctl = VelocityControl(control)
    gen: Any = (TunedSpikes(c, fs, units, seed, ctl) if kind == "tuned"
                else TunedEcog(c, fs, seed, ctl))
    n = int((duration_s + 60.0) * fs)         # never wraps within the run
    rec = Recording(name=f"{kind} {c}ch {fs:.0f}Hz", sampling_frequency=fs, num_channels=c,
                    num_samples=n, gain_to_uV=np.full(c, 0.195), reader=gen.read)
    rec.info["generator"] = gen
    rec.info["control"] = ctl
    rec.info["started"] = time.monotonic()
    return rec
