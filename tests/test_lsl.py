"""``hubctl lsl``'s outlets read back by a pylsl inlet in the same test: values, XDF channel
metadata, and timestamps in local_clock() terms from the drift-corrected time-sync fit. liblsl
runs with the machine-local config (host_tools/lsl_api.cfg: ResolveScope = machine,
KnownPeers = {127.0.0.1}) set through LSLAPICFG before liblsl is first used."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from host_tools.lsl_cli import LSL_CONFIG

os.environ["LSLAPICFG"] = str(LSL_CONFIG)      # before anything in this process uses liblsl

pylsl = pytest.importorskip("pylsl")

from host_tools.decoding import WienerDecoder  # noqa: E402
from host_tools.lsl_outlets import LslPublisher, clock_offset_s  # noqa: E402
from host_tools.timesync import TimeSyncFit  # noqa: E402
from hub.wire import pb  # noqa: E402

FS = 30_000.0
DRIFT = 40e-6                 # the hub's clock runs 40 ppm fast against the host's


def _features(first_bin: int, counts: list[list[int]], sid: int) -> pb.Envelope:
    n, c = len(counts), len(counts[0])
    env = pb.Envelope(stream=pb.STREAM_FEATURES, session_id=sid,
                      sample_index=(first_bin + n) * 600 + 12)
    fb = env.features
    fb.first_bin, fb.n_bins, fb.n_channels, fb.bin_samples = first_bin, n, c, 600
    fb.first_sample = first_bin * 600
    fb.counts.extend(v for row in counts for v in row)
    fb.rms_q4.extend(16 * (v + 1) for row in counts for v in row)
    fb.samples_seen.extend([600] * n)
    return env


def _inlet(source_id: str) -> Any:
    found = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
    assert found, f"no LSL stream {source_id} on this machine"
    inlet = pylsl.StreamInlet(found[0], max_buflen=10, recover=False)
    inlet.open_stream(10.0)
    return inlet


def test_outlets_carry_features_spikes_cursor_with_fitted_timestamps() -> None:
    sid = 0x5EED0000 + os.getpid() % 0xFFFF
    prefix = f"ihubtest{os.getpid()}"
    fit = TimeSyncFit(method="envelope", same_clock=True)   # arrival times on the host's clock
    t0 = time.monotonic_ns()

    def host_ns(sample: int) -> int:        # the true hub→host clock mapping
        return t0 + round(sample / FS * 1e9 / (1 + DRIFT))

    for k in range(10):                      # periodic time-sync packets, 2–4 ms in transit
        s = k * 15_000
        fit.add(s, host_ns(s) + 2_000_000 + (k % 3) * 1_000_000, FS)
    X = np.random.default_rng(0).poisson(2.0, (400, 3)).astype(float)
    dec = WienerDecoder(lags=2).fit(X, X[:, :2] / 4 - 0.5)
    pub = LslPublisher(prefix, lambda s: int(fit.to_host_ns(s)), dec, "tc")
    pub.on_envelope(pb.Envelope(session_id=sid, time_sync=pb.TimeSync(sampling_frequency=FS)), 0)
    pub.on_envelope(_features(0, [[1, 2, 3]], sid), 0)          # creates the outlets
    spikes = pb.Envelope(stream=pb.STREAM_SPIKES, session_id=sid)
    spikes.spikes.first_sample = 1200
    spikes.spikes.offset.extend([5])
    spikes.spikes.channel.extend([2])
    spikes.spikes.unit.extend([-1])
    spikes.spikes.amplitude.extend([-140])
    pub.on_envelope(spikes, 0)
    assert set(pub.outlets) == {"features", "spikes", "cursor"}

    inlets = {k: _inlet(f"{prefix}-{k}-{sid:08x}") for k in ("features", "spikes", "cursor")}
    info = inlets["features"].info()
    assert info.nominal_srate() == pytest.approx(FS / 600)
    assert info.channel_count() == 6
    ch = info.desc().child("channels").child("channel")
    assert ch.child_value("label") == "tc-ch0" and ch.child_value("type") == "NeuralFeatures"
    assert inlets["cursor"].info().desc().child("channels").child("channel").next_sibling() \
        .child_value("label") == "y"
    time.sleep(0.5)                            # the inlets are connected: now publish

    pub.on_envelope(_features(1, [[4, 5, 6], [7, 8, 9]], sid), 0)
    spikes.spikes.first_sample = 2400
    pub.on_envelope(spikes, 0)
    got, ts = [], []
    for _ in range(2):
        s, t = inlets["features"].pull_sample(timeout=10.0)
        got.append(s)
        ts.append(t)
    assert got[0] == [4, 5, 6, 5, 6, 7] and got[1][:3] == [7, 8, 9]
    offset = clock_offset_s(pylsl.local_clock)
    for i, t in enumerate(ts):                 # bin end → host clock → local_clock terms
        expect = fit.to_host_ns((2 + i) * 600) / 1e9 + offset
        assert t == pytest.approx(expect, abs=2e-3)
        # the fit follows the lower envelope of the arrivals: within the 2 ms floor of truth
        assert t - (host_ns((2 + i) * 600) / 1e9 + offset) == pytest.approx(0.002, abs=1e-3)
    assert ts[1] - ts[0] == pytest.approx(600 / FS / (1 + DRIFT), abs=1e-6)
    s, t = inlets["spikes"].pull_sample(timeout=10.0)
    assert s == [2, -1, -140]
    assert t == pytest.approx(fit.to_host_ns(2405) / 1e9 + offset, abs=2e-3)
    cur = [inlets["cursor"].pull_sample(timeout=10.0)[0] for _ in range(2)]
    assert all(len(c) == 4 for c in cur)
    assert pub.counts["dropped_waiting"] == 0
    for inlet in inlets.values():
        inlet.close_stream()


def test_samples_wait_for_the_time_sync_fit() -> None:
    fit = TimeSyncFit(same_clock=True)
    pub = LslPublisher(f"ihubwait{os.getpid()}", lambda s: int(fit.to_host_ns(s)))
    pub.on_envelope(pb.Envelope(time_sync=pb.TimeSync(sampling_frequency=FS)), 0)
    pub.on_envelope(_features(0, [[1, 1]], 7), 0)
    assert pub.counts["features"] == 0 and len(pub.waiting) == 1
    for k in range(4):
        fit.add(k * 30_000, 10**9 + k * 10**9, FS)
    pub.on_envelope(_features(1, [[2, 2]], 7), 0)
    assert pub.counts["features"] == 2 and not pub.waiting
