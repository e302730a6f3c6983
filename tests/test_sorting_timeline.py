"""bench.sorting_timeline's loss bookkeeping on hand-made spike trains (no recording)."""

from __future__ import annotations

import numpy as np

from bench.sorting_timeline import KINDS, unit_losses


def test_every_lost_spike_is_counted_once_in_its_kind_and_window() -> None:
    # a ground-truth unit's spikes at 100 … 900; its hub unit found 100, 300 (4 samples late)
    # and 950 (on nothing); 500 went to a loaded unit, 600 to a born one, 700 stayed unsorted,
    # 800 (a neighbour's spike, not this unit's) was taken by the hub unit; 900 was not detected
    train = np.array([100, 300, 500, 600, 700, 900], np.int64)
    mine = np.array([100, 304, 800, 950], np.int64)
    ev_t = np.array([100, 304, 500, 600, 700, 800, 950], np.int64)
    ev_unit = np.array([7, 7, 3, 40, -1, 7, 7], np.int64)
    gt_all = np.array([100, 300, 500, 600, 700, 801, 900], np.int64)
    edges = np.array([0.0, 550.0, 1000.0])
    lo = unit_losses(train, mine, ev_t, ev_unit, gt_all, {3, 7}, edges)
    assert lo.spikes == 6
    assert lo.row("other_loaded") == [1, 0]
    assert lo.row("other_born") == [0, 1]
    assert lo.row("unsorted") == [0, 1]
    assert lo.row("not_detected") == [0, 1]
    assert lo.row("false_on_gt") == [0, 1]
    assert lo.row("false_none") == [0, 1]
    assert sum(sum(lo.row(k)) for k in KINDS) == 6
