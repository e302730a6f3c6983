"""The closed loop's logic, deterministic: tasks, the achieved bitrate, ReFIT labels, the bin
assembler on hub packets, the implant's velocity control parser, and a simulated session
(tuned population → decoder → cursor → user) with fixed seeds. The full loop through the hub
and the virtual radio is ``make hil-bci`` (minutes, real time)."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.closed_loop_sim import SimSpec, session
from hil.implant_ctl import encode_velocity
from hil.implant_tuned import VelocityControl, tuned_recording
from host_tools.decoding.features import BinAssembler
from host_tools.decoding.loop import refit_label
from host_tools.decoding.task import CenterOut, GridTask, achieved_bitrate, ideal_velocity
from hub.wire import pb


def test_achieved_bitrate_formula() -> None:
    # 36 cells: log2(35) bits per net correct selection
    assert math.isclose(achieved_bitrate(36, 40, 4, 60.0), math.log2(35) * 36 / 60)
    assert achieved_bitrate(36, 3, 5, 60.0) == 0.0          # more wrong than right: nothing
    assert achieved_bitrate(2, 10, 0, 10.0) == 0.0          # log2(1): one choice carries 0 bits
    assert achieved_bitrate(36, 10, 0, 0.0) == 0.0


def test_center_out_success_timeout_and_hold() -> None:
    t = CenterOut(seed=0, hold_s=0.1, timeout_s=1.0)
    assert math.isclose(float(np.hypot(*t.target)), 0.7)    # starts outward
    goal = t.target.copy()
    assert t.update(goal, 0.05) is None                      # entered: holding …
    assert t.update(goal, 0.05) is None
    assert t.update(goal, 0.05) == "success"                 # … for hold_s
    assert np.allclose(t.target, 0)                          # back to the centre
    for _ in range(19):
        assert t.update(np.array([0.9, 0.9]), 0.05) is None  # the centre trial times out
    assert t.update(np.array([0.9, 0.9]), 0.05) == "timeout"
    s = t.summary()
    assert s["trials"] == 2 and s["successes"] == 1 and s["time_to_target_s"]["median"] == 0.05


def test_grid_selection_by_dwell() -> None:
    g = GridTask(seed=1, n=6, dwell_s=0.1)
    cued = g.target.copy()
    assert g.cell_of(cued) == g.cued
    assert g.update(cued, 0.05) is None
    assert g.update(cued, 0.05) == "correct"
    wrong = g.cells[(g.cued + 1) % 36]
    g.update(wrong, 0.05)
    assert g.update(wrong, 0.05) == "incorrect"
    s = g.summary()
    assert (s["correct"], s["incorrect"]) == (1, 1) and s["bits_per_s"] == 0.0


def test_refit_label_points_at_the_target_with_the_decoded_speed() -> None:
    lab = refit_label(np.array([0.0, -0.5]), np.zeros(2), np.array([1.0, 0.0]), False)
    assert np.allclose(lab, [0.5, 0.0])
    assert np.allclose(refit_label(np.ones(2), np.zeros(2), np.ones(2), True), 0)
    v = ideal_velocity(np.zeros(2), np.array([0.0, 0.7]), 0.1)
    assert np.allclose(v, [0, 1])


def _features_env(first_bin: int, n: int, c: int, bs: int, sample_index: int,
                  hub_ns: int, counts: list[int], hg: list[int] | None = None) -> pb.Envelope:
    env = pb.Envelope(stream=pb.STREAM_FEATURES, sample_index=sample_index, hub_time_ns=hub_ns)
    fb = env.features
    fb.first_bin, fb.n_bins, fb.n_channels, fb.bin_samples = first_bin, n, c, bs
    fb.first_sample = first_bin * bs
    fb.counts.extend(counts)
    if hg is not None:
        fb.hg_rms_q4.extend(hg)
    return env


def test_bin_assembler_tc_latency_and_gaps() -> None:
    a = BinAssembler("tc")
    a.feed(pb.Envelope(time_sync=pb.TimeSync(sampling_frequency=1000.0)))
    # bins 0-1 of 20 samples end at 20 and 40; the block ended at 45, which reached the hub
    # at t = 1 s: bin 1's last sample arrived 5 ms earlier
    out = a.feed(_features_env(0, 2, 3, 20, 45, 10**9, [1, 2, 3, 4, 5, 6]))
    assert [b.index for b in out] == [0, 1]
    assert np.allclose(out[1].x, [4, 5, 6])
    assert out[1].t_sample_ns == 10**9 - 5_000_000
    out = a.feed(_features_env(5, 1, 3, 20, 125, 2 * 10**9, [0, 0, 1]))
    assert a.missing_bins == 3 and a.bins_seen == 3


def test_bin_assembler_units_resolves_merges_and_waits_for_late_spikes() -> None:
    a = BinAssembler("units", max_units=4, margin_s=0.004)
    a.feed(pb.Envelope(time_sync=pb.TimeSync(sampling_frequency=1000.0)))
    a.feed(_features_env(0, 1, 2, 20, 20, 1, [0, 0]))      # learns the bin width; bin 0 waits
    sb = pb.Envelope(stream=pb.STREAM_SPIKES)
    sb.spikes.first_sample = 20
    sb.spikes.offset.extend([1, 2, 3, 30])
    sb.spikes.unit.extend([1, 3, -1, 9])
    sb.spikes.channel.extend([0, 0, 0, 0])
    sb.spikes.unit_events.add(kind=pb.UNIT_MERGE, unit=1, other=3)
    a.feed(sb)
    out = a.feed(_features_env(1, 1, 2, 20, 40, 2, [0, 0]))
    # bin 0 (ends 20) is complete at 40 ≥ 20 + 4; bin 1 (ends 40) still waits
    assert [b.index for b in out] == [0]
    out = a.feed(_features_env(2, 1, 2, 20, 60, 3, [0, 0]))
    assert [b.index for b in out] == [1]
    assert list(out[0].x) == [0, 2, 0, 0, 1]      # unit 3 merged into 1, one unsorted
    assert a.unmodelled_spikes == 1                  # unit 9 ≥ max_units


def test_bin_assembler_hg_needs_the_lfp_field() -> None:
    a = BinAssembler("hg")
    assert a.feed(_features_env(0, 1, 2, 20, 20, 1, [0, 0])) == []
    out = a.feed(_features_env(1, 1, 2, 20, 40, 1, [0, 0], hg=[32, 160]))
    assert np.allclose(out[0].x, [2.0, 10.0])


def test_velocity_control_parser() -> None:
    c = VelocityControl(None)
    msg = encode_velocity(250, -1500, 7)
    c.feed(b"\xc5\xc5\x3c\x09junk" + msg[:3])
    assert c.velocity == (0.0, 0.0)
    c.feed(msg[3:])
    assert c.velocity == (0.25, -1.0) and c.seq == 7     # clamped to ±1000 per-mille
    bad = bytearray(encode_velocity(1, 1, 8))
    bad[-1] ^= 0xFF
    c.feed(bytes(bad) + encode_velocity(-1000, 0, 9))
    assert c.velocity == (-1.0, 0.0) and c.bad >= 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.builds(encode_velocity, st.integers(-2000, 2000),
                                                   st.integers(-2000, 2000),
                                                   st.integers(0, 2**32 - 1)), max_size=20))
def test_velocity_control_parser_never_fails_and_stays_in_range(parts: list[bytes]) -> None:
    c = VelocityControl(None)
    for p in parts:
        c.feed(p)
        assert -1.0 <= c.velocity[0] <= 1.0 and -1.0 <= c.velocity[1] <= 1.0
    assert len(c._buf) <= 40


def test_tuned_implant_follows_the_velocity() -> None:
    rec = tuned_recording("tuned:8:10000:8:3", None, 2.0)
    gen, ctl = rec.info["generator"], rec.info["control"]
    ctl.feed(encode_velocity(1000, 0, 1))
    for k in range(200):
        rec.read(k * 10, (k + 1) * 10)
    right = gen.spikes
    ctl.feed(encode_velocity(-1000, 0, 2))
    for k in range(200, 400):
        rec.read(k * 10, (k + 1) * 10)
    left = gen.spikes - right
    expect = gen.pop.rates(np.array([[1.0, 0.0], [-1.0, 0.0]])).sum(1) * 0.2
    assert abs(right - expect[0]) < 5 * np.sqrt(expect[0]) + 3
    assert abs(left - expect[1]) < 5 * np.sqrt(expect[1]) + 3


def test_simulated_session_is_deterministic_and_controls_the_cursor() -> None:
    spec = SimSpec(n_units=48, seed=4)
    a = session(spec, calibration_s=40, block_s=30, grid_s=30)
    b = session(spec, calibration_s=40, block_s=30, grid_s=30)
    assert a == b
    co = a["center_out/kalman_ss"]
    assert co["trials"] >= 15 and co["success_rate"] >= 0.9, co
    assert a["grid"]["correct"] > 3 * a["grid"]["incorrect"], a["grid"]
    assert a["grid"]["bits_per_s"] > 1.0
    # a decoder fitted on noise does not control the cursor: the task notices
    weak = session(SimSpec(n_units=2, seed=4), calibration_s=20, block_s=20, grid_s=20)
    assert weak["center_out/kalman_ss"]["success_rate"] < co["success_rate"]
