"""Envelopes no hub sends (found by tests/fuzz/fuzz_nwb_scan.py), in the NWB converter's scan
and the live receiver: counted and skipped, or stored without a crash — never an exception."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from host_tools.nwb_scan import Scan
from host_tools.nwb_units import UnitRows
from hub.wire import pb


def spikes(first: int, channels: list[int], offsets: list[int] | None = None) -> pb.Envelope:
    env = pb.Envelope(session_id=1, stream=pb.STREAM_SPIKES,
                      sample_index=min(first + 100, 2**64 - 1))
    env.spikes.first_sample = first
    env.spikes.offset.extend(offsets or [0] * len(channels))
    env.spikes.channel.extend(channels)
    return env


def test_out_of_range_envelopes_are_counted_and_skipped(tmp_path: Path) -> None:
    scan = Scan(tmp_path / "none.log", tmp_path / "spill")   # its receiver's gate, as in a read
    scan.rx.feed_envelope(spikes(10, [1, 2]), 1)                   # a hub's
    scan.rx.feed_envelope(spikes(2**64 - 1, [1]), 2)               # sample past int64
    scan.rx.feed_envelope(spikes(10, [2**32 - 1]), 3)              # channel past int32
    late = spikes(20, [])
    late.spikes.unit_events.add(sample=2**64 - 1, kind=pb.UNIT_LABEL, unit=0, channel=1)
    scan.rx.feed_envelope(late, 4)
    feat = pb.Envelope(session_id=1, stream=pb.STREAM_FEATURES, sample_index=10)
    feat.features.n_bins, feat.features.n_channels, feat.features.bin_samples = 1, 1, 2**31
    feat.features.counts.append(1)
    feat.features.rms_q4.append(1)
    scan.rx.feed_envelope(feat, 5)
    assert scan.rx.out_of_range == 4 and scan.rx.bad_packets == 4 and scan.rx.packets == 1
    rows = UnitRows(scan, {})
    assert sum(r.count for r in rows.rows) == 2


def test_a_unit_born_without_delivered_spikes_is_an_empty_row(tmp_path: Path) -> None:
    scan = Scan(tmp_path / "none.log", tmp_path / "spill")
    env = spikes(10, [3])
    env.spikes.unit_events.add(sample=50, kind=pb.UNIT_BIRTH, unit=7, other=-1, channel=3)
    env.spikes.unit_events.add(sample=50, kind=pb.UNIT_LABEL, unit=7, channel=3)
    env.spikes.unit_events.add(sample=60, kind=pb.UNIT_BIRTH, unit=-3, other=-1, channel=3)
    scan.rx.feed_envelope(env, 1)
    rows = UnitRows(scan, {})
    sorted_rows = [r for r in rows.rows if r.kind == "sorted"]
    assert [(r.unit, r.count) for r in sorted_rows] == [(7, 0)]
    assert rows.labels_unmatched == 1 and rows.labels_applied == 0
    assert int(np.sum([r.count for r in rows.rows])) == 1


def test_the_live_receiver_counts_an_out_of_range_packet_as_bad() -> None:
    from host_tools.receiver import Receiver
    from hub.wire import Chunker

    rx = Receiver()
    ch = Chunker(100)
    tele = pb.Envelope(session_id=1, stream=pb.STREAM_TELEMETRY)
    tele.telemetry.sampling_frequency = 30000.0
    ok = spikes(10, [1, 2])
    bad = spikes(2**64 - 1, [1])       # without the check the latency path overflows on it
    ok.hub_time_ns = bad.hub_time_ns = 5
    for env in (tele, ok, bad):
        ch.push(env.SerializeToString())
    while (c := ch.pop(flush=True)) is not None:
        rx.feed_chunk(c, 10**9)
    assert rx.packets == 2 and rx.bad_packets == 1 and rx.out_of_range == 1
