"""Calibration with the hub's own cold start (SorterConfig.calibration_cold_units /
calibration_cold_check, host_tools/calibrate_check.py): a neuron the offline sorter missed gets
a template from the hub's cold-start unit, and an offline unit the hub tells apart as two
neurons firing together is left out (generated static recording, fixed seed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench import sorting_families as sf
from host_tools.calibrate_check import cold_split

pytest.importorskip("spikeinterface")

FAMILY = sf.Family("cold_units16", "multicolumn", 16, 8, 24.0, alpha=(250.0, 450.0))


def test_cold_split_needs_two_pure_units_firing_together() -> None:
    n = 200
    times = np.arange(n, dtype=np.int64) * 100
    mine = np.ones(n, bool)
    together = np.where(np.arange(n) % 2 == 0, 3, 7).astype(np.int32)
    assert [u for u, _ in cold_split(mine, together, times, n * 100)] == [3, 7]
    one_after_other = np.where(np.arange(n) < n // 2, 3, 7).astype(np.int32)  # a drift step
    assert cold_split(mine, one_after_other, times, n * 100) == []
    mostly_one = np.where(np.arange(n) % 10 == 0, 7, 3).astype(np.int32)       # 10 %: noise
    assert cold_split(mine, mostly_one, times, n * 100) == []
    impure = np.concatenate([together, np.full(n, 7, np.int32)])   # unit 7 is mostly others'
    assert cold_split(np.r_[mine, np.zeros(n, bool)], impure,
                      np.r_[times, times], n * 100) == []


def test_a_neuron_the_sorter_missed_gets_a_cold_start_template(tmp_path: Path) -> None:
    import spikeinterface.core as si

    from bench import sorting_eval as ev
    from host_tools.calibrate import templates_from_sorting
    from hub.sources import open_recording

    m = sf.materialise(FAMILY, 2, cache=tmp_path)
    rec = open_recording(m.recording)
    last = round(FAMILY.duration_s / 2 * rec.sampling_frequency)
    gt = si.load(m.sorting).frame_slice(0, last)
    counts = {u: gt.get_unit_spike_train(u).size for u in gt.unit_ids}
    missed = max(counts, key=lambda u: counts[u])          # the offline sorter "missed" it
    partial = si.NumpySorting.from_sorting(
        gt.select_units([u for u in gt.unit_ids if u != missed]))
    base = ev.pipeline_config()
    cfg, on = (dataclasses.replace(base, sort_settings=dataclasses.replace(
        base.sort_settings, calibration_cold_units=flag)) for flag in (False, True))
    ts0, info0 = templates_from_sorting(rec, partial, cfg, 0, last, sorter="gt")
    ts1, info1 = templates_from_sorting(rec, partial, on, 0, last, sorter="gt")
    assert info0["cold_start_added"] == []
    assert info1["cold_start_added"], info1
    assert set(ts0.unit_ids.tolist()) <= set(ts1.unit_ids.tolist())
    # an added template is the missed neuron: its peak channel is the missed unit's
    train = np.asarray(gt.get_unit_spike_train(missed))
    x = np.stack([rec.read(max(0, t - 16), max(0, t - 16) + 48) for t in train[5:40]])
    peak = int(np.argmax(np.abs(x.astype(np.float64).mean(axis=0)).max(axis=0)))
    added = [i for i, u in enumerate(ts1.unit_ids.tolist()) if u in info1["cold_start_added"]]
    peaks = [int(np.argmax(np.abs(ts1.templates[i]).max(axis=1))) for i in added]
    assert peak in peaks, (peak, peaks)
