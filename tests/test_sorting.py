"""Online sorting: determinism, latency, bounded state, stable ids, templates from the host."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hub.dsp.pipeline import Pipeline, PipelineConfig
from hub.dsp.sorting import (
    TemplateError,
    TemplateSet,
    apply_late_labels,
    load_templates,
    sort_recording,
)
from hub.kernels import EVENT_DTYPE, KernelError
from hub.kernels.sorter import BIRTH, LABEL, MERGE, RETIRE, Sorter, SorterConfig
from hub.sources import open_recording

C, K, PRE, POST = 8, 3, 16, 32
L = PRE + POST
SIGMA = 10.0
NEIGHBORS = np.array([[c, c - 1 if c else -1, c + 1 if c + 1 < C else -1] for c in range(C)],
                     np.int32)
SHAPE = np.zeros(L, np.float32)
SHAPE[PRE - 3: PRE + 12] = [-0.2, -0.6, -0.9, -1.0, -0.7, -0.3, 0.0, 0.2, 0.3, 0.32, 0.3, 0.25,
                            0.15, 0.08, 0.03]


def neuron(peak_channel: int, amp: float, spread: float = 0.4) -> npt.NDArray[np.float32]:
    """Full-probe template (C, L): amplitude falls off by `spread` per channel."""
    gains = np.array([amp * spread ** abs(c - peak_channel) for c in range(C)], np.float32)
    return np.ascontiguousarray(gains[:, None] * SHAPE[None, :])


class Stream:
    """Synthetic snippet blocks from a changing population of neurons (seeded)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.t = 0

    def block(self, neurons: list[tuple[int, npt.NDArray[np.float32]]], n: int
              ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        ev = np.zeros(n, EVENT_DTYPE)
        wf = np.zeros((n, K, L), np.float32)
        which = self.rng.integers(0, len(neurons), n)
        for i, w in enumerate(which):
            ch, tpl = neurons[w]
            self.t += 300
            ev[i] = (self.t, ch, -1, tpl[ch, PRE], 5 * SIGMA)
            for p, nc in enumerate(NEIGHBORS[ch]):
                if nc >= 0:
                    wf[i, p] = tpl[nc] + self.rng.normal(0, SIGMA, L).astype(np.float32)
        return ev, wf, which.astype(np.int64)


def make_sorter(**kw: object) -> Sorter:
    return Sorter(NEIGHBORS, PRE, POST, 30000.0, 5.0, SorterConfig(**kw))  # type: ignore[arg-type]


def majority(labels: npt.NDArray[np.int32], truth: npt.NDArray[np.int64], k: int) -> int:
    lab = labels[(truth == k) & (labels >= 0)]
    vals, counts = np.unique(lab, return_counts=True)
    return int(vals[counts.argmax()])


def test_cold_start_sorts_and_keeps_ids() -> None:
    pop = [(2, neuron(2, 150)), (2, neuron(2, 70, 0.8)), (5, neuron(5, 100))]
    s, st = make_sorter(), Stream(1)
    labels, truth = [], []
    for _ in range(60):
        ev, wf, which = st.block(pop, 50)
        s.process(ev, wf, st.t + 1)
        labels.append(ev["unit"].copy())
        truth.append(which)
    lab, tru = np.concatenate(labels), np.concatenate(truth)
    first = [majority(lab[300:1500], tru[300:1500], k) for k in range(3)]
    last = [majority(lab[-1500:], tru[-1500:], k) for k in range(3)]
    assert len(set(first)) == 3, first
    assert first == last  # an id stays with its neuron while it lives
    for k in range(3):
        m = tru[300:] == k
        assert (lab[300:][m] == first[k]).mean() > 0.97
    assert s.stats()["live_units"] == 3


def test_deterministic_and_events_reported() -> None:
    pop = [(1, neuron(1, 120)), (6, neuron(6, 90))]
    runs = []
    for _ in range(2):
        s, st = make_sorter(), Stream(5)
        labels, kinds = [], []
        for _ in range(20):
            ev, wf, _ = st.block(pop, 40)
            out = s.process(ev, wf, st.t + 1)
            labels.append(ev["unit"].copy())
            kinds.extend(out["kind"].tolist())
        runs.append((np.concatenate(labels), kinds))
    assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    assert runs[0][1].count(BIRTH) == 2


def test_late_labels_name_a_new_units_founding_spikes() -> None:
    """A candidate's first members leave the sorter unlabelled; with late_labels its birth
    reports them (LABEL: sample, channel, unit) and apply_late_labels labels them, touching
    no other spike; the online labels are those of a sorter without late labels."""
    pop = [(2, neuron(2, 150)), (5, neuron(5, 110))]
    runs = {}
    for late in (False, True):
        s, st = make_sorter(late_labels=late), Stream(3)
        evs, sevs, truth = [], [], []
        for _ in range(6):
            ev, wf, which = st.block(pop, 8)
            sevs.append(s.process(ev, wf, st.t + 1).copy())
            evs.append(ev)
            truth.append(which)
        runs[late] = (np.concatenate(evs), np.concatenate(sevs), np.concatenate(truth))
    (off, off_se, _), (ev, se, tru) = runs[False], runs[True]
    assert not (off_se["kind"] == LABEL).any()
    assert np.array_equal(off["unit"], ev["unit"])
    units = ev["unit"].astype(np.int32)
    lab = se[se["kind"] == LABEL]
    assert lab.size == 2 * (SorterConfig().birth_spikes - 1)      # every founder, per neuron
    late = apply_late_labels(ev["sample"].astype(np.int64), ev["channel"].astype(np.int32),
                             units, se)
    changed = late != units
    assert changed.sum() == lab.size and (units[changed] == -1).all()
    for k in range(2):
        assert (late[tru == k] == majority(units, tru, k)).all()


def test_bounded_state_over_a_long_run_with_turnover() -> None:
    """Neurons come and go for a long time: clusters, live ids and memory stay bounded, silent
    units retire, and ids are never reused."""
    s, st = make_sorter(max_clusters=4, max_units=12, retire_s=2.0, candidate_s=1.0), Stream(9)
    mem = s.memory_bytes
    born: list[int] = []
    retired = 0
    tracemalloc.start()
    base = tracemalloc.take_snapshot()
    for epoch in range(40):
        pop = [((epoch + j) % C, neuron((epoch + j) % C, 80 + 20 * j)) for j in range(3)]
        for _ in range(6):
            ev, wf, _ = st.block(pop, 50)
            out = s.process(ev, wf, st.t + 1)
            born += out["unit"][out["kind"] == BIRTH].tolist()
            retired += int((out["kind"] == RETIRE).sum())
            stats = s.stats()
            assert stats["active_clusters"] <= C * 4
            assert stats["live_units"] <= 12
    grown = sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(base, "filename"))
    tracemalloc.stop()
    assert s.memory_bytes == mem
    assert len(born) == len(set(born)) and len(born) > 12  # many births, no id reused
    assert retired > 0
    assert grown < 200_000


def test_spikes_labelled_in_the_block_that_completes_their_snippet(
        gt_tiny: tuple[Path, Path]) -> None:
    rec = open_recording(gt_tiny[0])
    cfg = PipelineConfig(sort=True)
    pipe = Pipeline(cfg, rec.num_channels, rec.sampling_frequency, rec.channel_positions_um)
    n = int(8 * rec.sampling_frequency)
    labelled = total = 0
    for start in range(0, n, pipe.block_samples):
        r = pipe.process(rec.read(start, min(start + pipe.block_samples, n)))
        assert r.sort_events is not None
        ends = r.snippet_events["sample"] + cfg.snippet_post  # one past the snippet's last sample
        assert np.all((ends > r.first_sample) & (ends <= r.first_sample + r.n_samples))
        labelled += int((r.snippet_events["unit"] >= 0).sum())
        total += r.snippet_events.size
    assert total > 100 and labelled / total > 0.7
    no_sort = Pipeline(PipelineConfig(), rec.num_channels, rec.sampling_frequency,
                       rec.channel_positions_um)
    assert no_sort.process(rec.read(0, 300)).sort_events is None


def test_sorter_sees_more_channels_than_the_uplink(gt_tiny: tuple[Path, Path]) -> None:
    """The sorter's snippet has SorterConfig.channels (6) channels; the snippets a block
    result carries (the uplink's) keep snippet_channels and are the same as without sorting."""
    rec = open_recording(gt_tiny[0])
    args = (rec.num_channels, rec.sampling_frequency, rec.channel_positions_um)
    # with the detector's exclusion as without sorting (by default sorting narrows it, so that
    # the near-simultaneous spikes of neurons > 50 µm apart are both detected)
    same = PipelineConfig(sort=True, sort_settings=SorterConfig(exclusion_radius_um=0.0))
    sort, plain = Pipeline(same, *args), Pipeline(PipelineConfig(), *args)
    assert sort.sorter is not None and sort.sorter.k == 6 and sort.snippet_k == 4
    n = int(2 * rec.sampling_frequency)
    seen = 0
    for start in range(0, n, sort.block_samples):
        block = rec.read(start, min(start + sort.block_samples, n))
        a, b = sort.process(block), plain.process(block)
        assert a.snippets.shape[1] == 4 and a.snippets.flags.c_contiguous
        assert np.array_equal(a.snippet_events["sample"], b.snippet_events["sample"])
        assert np.array_equal(a.snippets, b.snippets)
        seen += a.snippets.shape[0]
    assert seen > 10
    two = Pipeline(PipelineConfig(sort=True, sort_settings=SorterConfig(channels=2)), *args)
    assert two.sorter is not None and two.sorter.k == 4     # never fewer than the uplink's


def test_recording_sort_is_deterministic(gt_tiny: tuple[Path, Path]) -> None:
    rec = open_recording(gt_tiny[0])
    a = sort_recording(rec, max_seconds=10.0)
    b = sort_recording(rec, max_seconds=10.0)
    assert np.array_equal(a.units, b.units) and np.array_equal(a.samples, b.samples)
    assert np.array_equal(a.sort_events, b.sort_events)
    assert (a.final_units >= 0).mean() > 0.8


def templates_for(pipe: Pipeline, n_units: int = 3) -> TemplateSet:
    rng = np.random.default_rng(0)
    t = rng.normal(0, 1, (n_units, pipe.n_channels, L)).astype(np.float32)
    t[:, :, PRE] -= 80
    return TemplateSet(pipe.fs, PRE, POST, np.arange(n_units, dtype=np.int32) + 10, t,
                       np.zeros((0, L), np.float32))


@pytest.mark.parametrize("damage,match", [
    (lambda ts: setattr(ts, "templates", ts.templates[:, :, :40]), "shape"),
    (lambda ts: ts.templates.__setitem__((1, 2, 3), np.nan), "NaN"),
    (lambda ts: setattr(ts, "templates", ts.templates[:, :-1]), "channels"),
    (lambda ts: setattr(ts, "unit_ids", np.array([1, 1, 2], np.int32)), "unique"),
    (lambda ts: setattr(ts, "basis", np.full((3, L), np.inf, np.float32)), "basis"),
])
def test_bad_templates_rejected_whole(damage: object, match: str) -> None:
    pipe = Pipeline(PipelineConfig(sort=True), 4, 30000.0)
    assert pipe.sorter is not None
    load_templates(pipe, templates_for(pipe))
    before = pipe.sorter.clusters()
    ts = templates_for(pipe)
    ts.unit_ids = ts.unit_ids + 100
    damage(ts)  # type: ignore[operator]
    with pytest.raises(TemplateError, match=match):
        load_templates(pipe, ts)
    after = pipe.sorter.clusters()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_too_many_units_rejected() -> None:
    cfg = PipelineConfig(sort=True, sort_settings=SorterConfig(max_units=4))
    pipe = Pipeline(cfg, 4, 30000.0)
    with pytest.raises(TemplateError, match="too many units"):
        load_templates(pipe, templates_for(pipe, 5))
    # the C kernel refuses too, whole, when it is called directly
    assert pipe.sorter is not None
    ts = templates_for(pipe, 3)
    bad = ts.templates.copy()
    bad[2, 0, 0] = np.nan
    with pytest.raises(KernelError):
        pipe.sorter.load_templates(ts.unit_ids, bad)
    with pytest.raises(ValueError, match="too many units"):
        pipe.sorter.load_templates(np.arange(9), np.repeat(ts.templates, 3, axis=0))


def test_templates_file_round_trip_and_version(tmp_path: Path) -> None:
    pipe = Pipeline(PipelineConfig(sort=True), 4, 30000.0)
    ts = templates_for(pipe)
    path = tmp_path / "t.npz"
    ts.save(path)
    back = TemplateSet.load(path)
    assert np.array_equal(back.templates, ts.templates)
    assert np.array_equal(back.unit_ids, ts.unit_ids)
    load_templates(pipe, back)
    assert pipe.sorter is not None and pipe.sorter.stats()["live_units"] == 3
    z = dict(np.load(path))
    z["version"] = np.int32(99)
    np.savez(tmp_path / "v99.npz", **z)
    with pytest.raises(TemplateError, match="version 99"):
        TemplateSet.load(tmp_path / "v99.npz")


def test_calibrated_ids_and_new_units() -> None:
    """Given templates keep their ids; a neuron that was not given is born with a new id."""
    given = [neuron(2, 150), neuron(5, 100)]
    s, st = make_sorter(), Stream(3)
    s.load_templates([40, 41], np.stack(given))
    pop = [(2, given[0]), (5, given[1]), (7, neuron(7, 120))]
    labels, truth, births = [], [], []
    for _ in range(30):
        ev, wf, which = st.block(pop, 50)
        out = s.process(ev, wf, st.t + 1)
        labels.append(ev["unit"].copy())
        truth.append(which)
        births += out["unit"][out["kind"] == BIRTH].tolist()
        assert not (out["kind"] == MERGE).any()
    lab, tru = np.concatenate(labels), np.concatenate(truth)
    assert (lab[tru == 0] == 40).mean() > 0.97 and (lab[tru == 1] == 41).mean() > 0.97
    assert births and births[0] > 41 and majority(lab, tru, 2) == births[0]


def test_calibration_folds_over_split_units() -> None:
    from host_tools.calibrate import merge_duplicates

    a, b = neuron(2, 150), neuron(5, 100)
    jitter = np.random.default_rng(2).normal(0, 1.0, a.shape).astype(np.float32)
    keep, counts = merge_duplicates(np.stack([a, b, a + jitter]), np.array([50, 40, 80]),
                                    np.full(C, SIGMA))
    assert keep == [1, 2] and counts[2] == 130 and counts[1] == 40


def test_calibration_folds_a_neuron_split_by_drift() -> None:
    """An offline sorter without motion correction splits a neuron the probe moved past into
    two units with similar templates that fire in turn: folded into one (kept apart otherwise,
    and when the two fire together — two neurons)."""
    from host_tools.calibrate import merge_duplicates

    a, b = neuron(2, 150), neuron(5, 100)
    moved = 1.4 * (0.85 * a + 0.15 * np.roll(a, 1, axis=0))   # nearer, a little further up
    t = np.stack([a, b, moved])
    counts = np.array([60, 40, 50])
    sig = np.full(C, SIGMA)
    assert merge_duplicates(t, counts, sig)[0] == [0, 1, 2]          # not a duplicate
    first = np.r_[np.full(10, 6.0), np.zeros(10)]                     # spikes per second
    apart = np.stack([first, np.full(20, 2.0) + np.arange(20) % 2, first[::-1]])
    keep, merged = merge_duplicates(t, counts, sig, rates=apart)
    assert keep == [0, 1] and merged[0] == 110
    together = np.stack([first, np.full(20, 2.0) + np.arange(20) % 2, first])
    assert merge_duplicates(t, counts, sig, rates=together)[0] == [0, 1, 2]


def test_templates_file_noise_and_version_1(tmp_path: Path) -> None:
    """Version 2 carries σ per channel (TemplateSet.noise); a version 1 file (no noise) still
    loads; a wrong noise is rejected; with SorterConfig.seed_noise the loaded noise seeds the
    detector (off: the detector keeps its warm-up)."""
    pipe = Pipeline(PipelineConfig(sort=True), 4, 30000.0)
    ts = templates_for(pipe)
    ts.noise = np.array([3.0, 4.0, 5.0, 6.0], np.float32)
    ts.save(tmp_path / "v2.npz")
    back = TemplateSet.load(tmp_path / "v2.npz")
    assert np.array_equal(back.noise, ts.noise)
    z = dict(np.load(tmp_path / "v2.npz"))
    z["version"] = np.int32(1)
    del z["noise"]
    np.savez(tmp_path / "v1.npz", **z)
    old = TemplateSet.load(tmp_path / "v1.npz")
    assert old.noise.size == 0 and np.array_equal(old.templates, ts.templates)
    load_templates(pipe, old)
    bad = templates_for(pipe)
    bad.noise = np.array([3.0, 0.0, 5.0, 6.0], np.float32)
    with pytest.raises(TemplateError, match="noise"):
        bad.save(tmp_path / "bad.npz")
    bad.noise = np.ones(3, np.float32)
    with pytest.raises(TemplateError, match="noise"):
        load_templates(pipe, bad)
    off = Pipeline(PipelineConfig(sort=True, sort_settings=SorterConfig(seed_noise=False)),
                   4, 30000.0)
    load_templates(off, back)
    assert np.allclose(off.detector.noise(), 1.0 * 1.4826, rtol=1e-3)   # unseeded start
    on = Pipeline(PipelineConfig(sort=True), 4, 30000.0)          # on by default
    load_templates(on, back)
    np.testing.assert_allclose(on.detector.noise(), ts.noise, rtol=1e-5)


def test_damaged_zip_entry_is_a_template_error(tmp_path: Path) -> None:
    """Found by tests/fuzz/fuzz_templates.py: a zip entry flagged encrypted (or of an unknown
    compression method or zip version) raised RuntimeError past the reader."""
    pipe = Pipeline(PipelineConfig(sort=True), 4, 30000.0)
    templates_for(pipe).save(tmp_path / "t.npz")
    raw = bytearray((tmp_path / "t.npz").read_bytes())
    at = raw.index(b"PK\x01\x02")            # the first central directory entry
    raw[at + 8] |= 0x01                      # general purpose flag: encrypted
    (tmp_path / "enc.npz").write_bytes(bytes(raw))
    with pytest.raises(TemplateError, match="templates file"):
        TemplateSet.load(tmp_path / "enc.npz")
