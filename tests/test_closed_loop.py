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
from hil.closed_loop_user import Intent, UserModel
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
                  hub_ns: int, counts: list[int], hg: list[int] | None = None,
                  base: int = 0) -> pb.Envelope:
    env = pb.Envelope(stream=pb.STREAM_FEATURES, sample_index=sample_index, hub_time_ns=hub_ns)
    fb = env.features
    fb.first_bin, fb.n_bins, fb.n_channels, fb.bin_samples = first_bin, n, c, bs
    fb.first_sample = base + first_bin * bs
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


def test_bin_assembler_units_bins_from_the_pipeline_base_and_leaves_with_the_spikes() -> None:
    """A hub configured after the stream started bins from where the configuration took
    effect (here sample 1013): a unit's spike lands in the bin the feature packets call by
    that index, not ``sample // bin_samples`` (which put every spike 50 bins late and left the
    sorted-units closed loop with nothing to decode); and a bin whose spikes are all in
    leaves with the spikes packet that says so, not a feature packet later."""
    base = 1013
    a = BinAssembler("units", max_units=4, margin_s=0.004)
    a.feed(pb.Envelope(time_sync=pb.TimeSync(sampling_frequency=1000.0)))
    assert a.feed(_features_env(0, 1, 2, 20, base + 20, 1, [0, 0], base=base)) == []
    sb = pb.Envelope(stream=pb.STREAM_SPIKES, sample_index=base + 30)
    sb.spikes.first_sample = base + 20
    sb.spikes.offset.extend([0, 5, 19])               # bin 1: samples base+20 … base+39
    sb.spikes.unit.extend([2, 2, 0])
    assert [b.index for b in a.feed(sb)] == [0]       # bin 0 ended at base+20 ≤ 30 − 4
    assert a.feed(_features_env(1, 1, 2, 20, base + 40, 2, [0, 0], base=base)) == []
    sb = pb.Envelope(stream=pb.STREAM_SPIKES, sample_index=base + 50)
    sb.spikes.first_sample = base + 40
    out = a.feed(sb)
    assert [b.index for b in out] == [1] and list(out[0].x) == [1, 0, 2, 0, 0]
    assert a.missing_bins == 0 and a.bins_seen == 2


def test_bin_assembler_units_leave_with_their_block_and_late_labels_count_next() -> None:
    """By default a unit bin leaves with the feature packet of the block that ends it (no
    extra block of latency); a spike whose label arrives after its bin left (its snippet
    completed in the next block) counts in the next bin, where it was labelled."""
    a = BinAssembler("units", max_units=4)
    a.feed(pb.Envelope(time_sync=pb.TimeSync(sampling_frequency=1000.0)))
    out = a.feed(_features_env(0, 1, 2, 20, 20, 1, [0, 0]))
    assert [b.index for b in out] == [0] and not out[0].x.any()
    sb = pb.Envelope(stream=pb.STREAM_SPIKES, sample_index=40)
    sb.spikes.first_sample = 19
    sb.spikes.offset.extend([0, 2])                  # peaks at 19 (bin 0, gone) and 21
    sb.spikes.unit.extend([1, 2])
    a.feed(sb)
    out = a.feed(_features_env(1, 1, 2, 20, 40, 2, [0, 0]))
    assert [b.index for b in out] == [1] and list(out[0].x) == [0, 1, 1, 0, 0]


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
    # the user and readout hil.closed_loop_calibrate chose for sorted units on seeds 1, 2
    spec = SimSpec(n_units=48, seed=4, user=UserModel(sat=0.5, forward=1.0), speed=2.0)
    a = session(spec, calibration_s=40, block_s=30, grid_s=30, dwell_s=0.6)
    b = session(spec, calibration_s=40, block_s=30, grid_s=30, dwell_s=0.6)
    assert a == b
    co = a["center_out/kalman_ss"]
    assert co["trials"] >= 15 and co["success_rate"] >= 0.9, co
    assert a["grid"]["correct"] > 3 * a["grid"]["incorrect"], a["grid"]
    assert a["grid"]["bits_per_s"] > 1.0
    # a decoder fitted on noise does not control the cursor: the task notices
    weak = session(SimSpec(n_units=2, seed=4), calibration_s=20, block_s=20, grid_s=20)
    assert weak["center_out/kalman_ss"]["success_rate"] < co["success_rate"]


def test_a_feature_bin_leaves_with_the_block_that_ends_it() -> None:
    """Sample → cursor latency: bin b is final once its own last sample is processed (spikes
    are counted in the bin where they were decided: peak + the detector's look-ahead), not one
    block later; the bins are the same whatever the block size."""
    from hub.dsp.pipeline import Pipeline, PipelineConfig

    fs, c = 30000.0, 4
    x = np.random.default_rng(5).normal(0, 10, (30000, c))
    for s in range(1500, 30000, 997):            # spikes everywhere, some at bin edges
        x[s, s % c] -= 400
    x[6599, 1] = x[7199, 2] = -400               # peaks on a bin's last sample (after warm-up)
    x = x.astype(np.int16)
    got: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for block_ms in (10.0, 20.0, 7.0):
        pipe = Pipeline(PipelineConfig(block_ms=block_ms, bin_ms=20.0), c, fs)
        bs, n = pipe.block_samples, pipe.bin_samples
        rows, events = [], []
        for a in range(0, len(x), bs):
            r = pipe.process(x[a:a + bs])
            assert list(r.bins.index) == list(range(a // n, (a + r.n_samples) // n))
            rows.append(r.bins.counts)
            events.append(r.events)
        got[block_ms] = np.concatenate(rows), np.concatenate(events)
    counts, ev = got[10.0]
    for k in (20.0, 7.0):
        assert np.array_equal(got[k][0], counts)
    expect = np.zeros_like(counts)
    np.add.at(expect, ((ev["sample"] + pipe.latency_samples) // n, ev["channel"]), 1)
    assert np.array_equal(expect, counts)
    edge = ev[(ev["channel"] == 1) & (np.abs(ev["sample"] - 6599) <= 2)]
    assert edge.size == 1 and (edge["sample"][0] + pipe.latency_samples) // n == 11   # not 10


def test_the_simulated_user_sees_the_cursor_late_and_pushes_harder_when_far() -> None:
    """The user model (hil.closed_loop_user): the aim is answered ``delay_s`` after it
    appears (10 bins of 20 ms), at full speed from ``sat`` away, proportionally closer in."""
    user = Intent(UserModel(delay_s=0.2, sat=0.5, noise=0.0), bin_s=0.02)
    here, east, north = np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 0.25])
    for _ in range(20):
        u = user.step(here, east)
    assert np.allclose(u, [1.0, 0.0])
    steps = [user.step(here, north) for _ in range(12)]
    assert all(np.allclose(s, [1.0, 0.0]) for s in steps[:10])      # still the old view
    assert np.allclose(steps[10], [0.0, 0.5])                        # 0.25 of sat 0.5 away
    user.reset()
    assert np.allclose(user.step(here, here), 0.0)
