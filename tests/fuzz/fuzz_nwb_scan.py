"""atheris: the NWB converter's pass over delivered envelopes (host_tools.nwb_scan.Scan) on
arbitrary protobuf bytes — a damaged or forged packet that still parses, e.g. a sample index,
clock or channel id no int64 / int32 column holds. Invariants: the scan never raises (such an
envelope is counted by the scan's receiver, out_of_range, and skipped), and the units table's
rows and the unit-events table build from what it kept.

    python tests/fuzz/fuzz_nwb_scan.py -max_total_time=15 -atheris_runs=0
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from google.protobuf.message import DecodeError

    from host_tools.nwb_scan import Scan
    from host_tools.nwb_units import UnitRows
    from hub.wire import pb

logging.disable(logging.WARNING)
TMP = Path(tempfile.mkdtemp(prefix="fuzz_nwb_scan_"))


U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


def _int(fdp: atheris.FuzzedDataProvider, hi: int) -> int:
    """Mostly small, sometimes anything up to hi (the field's range)."""
    return fdp.ConsumeIntInRange(0, hi if fdp.ConsumeBool() else min(hi, 5000))


def _envelope(fdp: atheris.FuzzedDataProvider) -> pb.Envelope:
    env = pb.Envelope(session_id=fdp.ConsumeIntInRange(0, 3), stream=fdp.ConsumeIntInRange(0, 5),
                      sample_index=_int(fdp, U64), hub_time_ns=_int(fdp, U64))
    kind = fdp.ConsumeIntInRange(0, 4)
    if kind == 0:
        sb = env.spikes
        sb.first_sample = _int(fdp, U64)
        n = fdp.ConsumeIntInRange(0, 5)
        sb.offset.extend(_int(fdp, U32) for _ in range(n))
        sb.channel.extend(_int(fdp, U32) for _ in range(n))
        sb.unit.extend(fdp.ConsumeIntInRange(-3, 5) for _ in range(fdp.ConsumeIntInRange(0, n)))
        sb.amplitude.extend(fdp.ConsumeIntInRange(-2**31, 2**31 - 1)
                            for _ in range(fdp.ConsumeIntInRange(0, n)))
        for _ in range(fdp.ConsumeIntInRange(0, 3)):
            sb.unit_events.add(sample=_int(fdp, U64), kind=fdp.ConsumeIntInRange(0, 5),
                               unit=fdp.ConsumeIntInRange(-3, 5),
                               other=fdp.ConsumeIntInRange(-3, 5), channel=_int(fdp, U32))
    elif kind == 1:
        fb = env.features
        fb.first_sample, fb.bin_samples = _int(fdp, U64), _int(fdp, U32)
        fb.n_bins, fb.n_channels = fdp.ConsumeIntInRange(0, 3), fdp.ConsumeIntInRange(0, 3)
        m = fb.n_bins * fb.n_channels + fdp.ConsumeIntInRange(-1, 1)
        fb.counts.extend(_int(fdp, U32) for _ in range(max(0, m)))
        fb.rms_q4.extend(_int(fdp, U32) for _ in range(max(0, m)))
        fb.samples_seen.extend(_int(fdp, U32) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    elif kind == 2:
        sn = env.snippets
        sn.n_samples, sn.k, sn.pre = (fdp.ConsumeIntInRange(0, 4), fdp.ConsumeIntInRange(0, 3),
                                      fdp.ConsumeIntInRange(0, 4))
        n = fdp.ConsumeIntInRange(0, 3)
        sn.sample.extend(_int(fdp, U64) for _ in range(n))
        sn.channel.extend(_int(fdp, U32) for _ in range(n))
        sn.neighbors.extend(fdp.ConsumeIntInRange(-2**31, 2**31 - 1)
                            for _ in range(fdp.ConsumeIntInRange(0, n * max(1, sn.k))))
        sn.waveforms = fdp.ConsumeBytes(2 * n * max(1, sn.k) * sn.n_samples)
    elif kind == 3:
        ts = env.time_sync
        ts.sample_index, ts.hub_time_ns = _int(fdp, U64), _int(fdp, U64)
        ts.sampling_frequency = fdp.ConsumeFloat()
    else:
        with contextlib.suppress(DecodeError):  # arbitrary bytes that happen to parse
            env = pb.Envelope.FromString(fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 120)))
    return env


def TestOneInput(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    envs = [_envelope(fdp) for _ in range(fdp.ConsumeIntInRange(1, 4))]
    shutil.rmtree(TMP / "spill", ignore_errors=True)
    scan = Scan(TMP / "none.log", TMP / "spill")
    for t, env in enumerate(envs):
        scan.rx.feed_envelope(env, t)
    UnitRows(scan, {})
    ev = [e for s in scan.session_list() for e in s.unit_events]
    if ev:
        np.array(ev, np.int64)       # as nwb_tables stores them


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
