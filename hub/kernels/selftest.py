"""The kernels' start-up self-test: every kernel on a fixed generated input, each output hashed.

The hub runs it before it starts (``hub run``; also ``hub selftest``) and reports it in
telemetry. The kernels are bit-identical on every architecture, so the hashes a build machine
records (``_selftest_ref.json``, written by ``make bundle`` from the native build) must come out
the same on the board: a mismatch means the board's library computes something else (a
miscompile, a wrong library, a broken FPU mode), and the hub refuses to start on it. Without a
reference file (a source tree) the test still proves that the library loads, passes the ABI
check, and runs every kernel without an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hub.errors import HubError

log = logging.getLogger(__name__)

REFERENCE = Path(__file__).resolve().parent / "_selftest_ref.json"


@dataclass
class SelfTestResult:
    """What the self-test found; ``passed`` is what the hub acts on."""

    passed: bool
    hashes: dict[str, str] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    reference: bool = False          # compared against recorded hashes
    error: str = ""
    library: str = ""
    version: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for logs and telemetry."""
        if self.error:
            return f"FAIL: {self.error}"
        if self.mismatches:
            return f"FAIL: {', '.join(self.mismatches)} differ from the reference"
        ref = "match the reference" if self.reference else "ran (no reference hashes)"
        return f"ok: {len(self.hashes)} kernels {ref}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _h(*arrays: object) -> str:
    d = hashlib.sha256()
    for a in arrays:
        d.update(a if isinstance(a, bytes) else np.ascontiguousarray(a).tobytes())
    return d.hexdigest()[:16]


def kernel_hashes() -> dict[str, str]:
    """Runs each kernel once on a fixed input; output hash per kernel."""
    from hub.kernels import (
        Bandpass,
        Detector,
        DetectorConfig,
        FeatureBinner,
        LfpFilter,
        Reference,
        SnippetExtractor,
        butter_sos,
    )
    from hub.kernels.codec import Decoder, Encoder, encode_events

    fs, n_ch, n_t = 30000.0, 8, 6000
    rng = np.random.default_rng(20240611)           # PCG64: the same integers everywhere
    x = rng.integers(-120, 120, size=(n_t, n_ch), dtype=np.int16)
    for t in range(700, n_t, 337):                  # spikes on a rotating channel
        c = (t // 337) % n_ch
        x[t:t + 8, c] -= np.array([200, 600, 1200, 900, 400, 100, 50, 20], dtype=np.int16)
    out: dict[str, str] = {}
    sos = butter_sos(3, "bandpass", (300.0, 6000.0), fs)
    out["butter_sos"] = _h(sos)
    y = Bandpass(n_ch, sos).process(x)
    out["bandpass"] = _h(y)
    lfp = LfpFilter(n_ch, butter_sos(2, "lowpass", (300.0,), fs), 30).process(x, 0)
    out["lfp"] = _h(lfp)
    y_robust = y.copy()
    Reference(np.zeros(n_ch, np.int32), "robust", tau_samples=600.0).process(y_robust)
    out["reference_robust"] = _h(y_robust)
    Reference(np.zeros(n_ch, np.int32), "median").process(y)
    out["reference"] = _h(y)
    det = Detector(n_ch, DetectorConfig(warmup=600))
    ev = det.process(y, 0).copy()
    out["detect"] = _h(ev, det.noise())
    nb = np.array([[c, (c + 1) % n_ch] for c in range(n_ch)], dtype=np.int32)
    sev, wf = SnippetExtractor(nb, 10, 22, n_t).process(y, 0, ev)
    out["snippet"] = _h(sev, wf)
    bins = FeatureBinner(n_ch, 600, det.latency, n_t).process(y, 0, ev)
    out["features"] = _h(bins.index, bins.samples, bins.counts, bins.power)
    enc = Encoder(n_ch, sample_rate=int(fs), resync_interval=3000)
    pkts = [enc.encode(x[i:i + 300]) for i in range(0, n_t, 300)]
    out["codec"] = _h(enc.header, *pkts)
    dec = Decoder(enc.header)
    back = np.concatenate([dec.decode(p)[0] for p in pkts])   # type: ignore[misc]
    if not np.array_equal(back, x):
        raise HubError("codec round trip is not lossless")
    out["events_codec"] = _h(encode_events(sev, wf, step=0.5))
    return out


def run(reference: Path | None = REFERENCE) -> SelfTestResult:
    """The self-test; never raises (an exception becomes a failed result)."""
    t0 = time.perf_counter()
    res = SelfTestResult(passed=False)
    try:
        from hub.kernels._ffi import library_path, load

        _, lib = load()
        res.library, res.version = str(library_path()), int(lib.nk_version())
        res.hashes = kernel_hashes()
        if reference is not None and reference.exists():
            want = json.loads(reference.read_text())
            res.reference = True
            res.mismatches = sorted(k for k in set(want) | set(res.hashes)
                                    if want.get(k) != res.hashes.get(k))
        res.passed = not res.mismatches
    except Exception as e:  # supervisor boundary: any failure is a failed self-test
        res.error = f"{type(e).__name__}: {e}"
    res.seconds = time.perf_counter() - t0
    return res


def write_reference(path: Path) -> None:
    """Records this build's hashes as the reference the board must reproduce."""
    path.write_text(json.dumps(kernel_hashes(), indent=1, sort_keys=True) + "\n")
