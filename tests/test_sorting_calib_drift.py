"""Calibration on a drifting recording: units the calibration listed stay apart when the
probe moves (generated zigzag drift, fixed seed; ground-truth spike trains through the same
template path as `hubctl calibrate`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("spikeinterface")


def test_loaded_units_never_merge_when_the_probe_moves(tmp_path: Path) -> None:
    """drift_zigzag32 (quick, seed 1): with ground-truth templates of the first half, two
    loaded neighbours (ground-truth units 4 and 17) met after the probe moved and the hub
    merged them, taking an unlisted neuron along (three neurons in one unit, accuracy 0)."""
    import spikeinterface.core as si

    from bench import sorting_eval as ev
    from bench.sorting_families import family, materialise, quick
    from host_tools.calibrate import templates_from_sorting
    from hub.sources import open_recording

    m = materialise(quick(family("drift_zigzag32")), 1, cache=tmp_path)
    rec = open_recording(m.recording)
    last = round(ev.calibration_seconds(m.family) * rec.sampling_frequency)
    gt = si.load(m.sorting)
    ts, info = templates_from_sorting(rec, si.NumpySorting.from_sorting(gt.frame_slice(0, last)),
                                      ev.pipeline_config(), 0, last, sorter="gt")
    sorting, _ = ev.hub_sort(m, ts)
    assert info["units"] >= 19
    # no loaded unit merged into another: every loaded id still labels spikes
    assert {int(u) for u in ts.unit_ids} <= {int(u) for u in sorting.unit_ids}
    scores = ev.score_run(m, sorting, ev.snr(m))
    assert float(np.median(scores["accuracies"])) > 0.9
    assert min(scores["accuracies"]) > 0.3
