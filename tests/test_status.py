"""Live status: renders rates, shed counts and drift from real envelopes, to any console."""

from __future__ import annotations

import io

from rich.console import Console

from host_tools.status import LiveStatus
from hub.wire import pb


def test_status_renders_rates_shed_and_drift() -> None:
    out = io.StringIO()
    st = LiveStatus("ble", Console(file=out, width=140, force_terminal=False))
    t = st.t0
    for i in range(20):
        env = pb.Envelope(stream=pb.STREAM_SPIKES, session_id=7, sample_index=300 * i)
        env.spikes.offset.extend([1, 2, 3])
        st.on_chunk(b"x" * 244, t + i * 10_000_000)
        st.on_envelope(env, t + i * 10_000_000)
        ts = pb.Envelope(stream=pb.STREAM_TELEMETRY, session_id=7)
        ts.time_sync.sample_index, ts.time_sync.sampling_frequency = 30000 * i, 30000.0
        st.on_envelope(ts, t + i * 1_000_000_000)
    tel = pb.Envelope(stream=pb.STREAM_TELEMETRY, session_id=7)
    tel.telemetry.cpu_load = 0.25
    tel.telemetry.classes.add(stream=pb.STREAM_RAW, produced=1000, shed=600, queued_bytes=2048)
    st.on_envelope(tel, t)
    st.stop()
    text = out.getvalue()
    assert "events/s" in text and "600" in text and "2.0 kB" in text
    assert "hub CPU 25 %" in text
    assert "drift -0.0 ppm (19 points, settling)" in text.replace("+0.0", "-0.0")
    assert "00000007" in text
