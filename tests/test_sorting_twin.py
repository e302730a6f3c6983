"""Twins (nk_sort_twin.c, SorterConfig.twin): two units on one channel whose spikes never come
1.05–2.5 ms apart, where chance predicts several such pairs, merge. The C test
(c_kernels/tests/test_sort_twin.c) checks the decision on synthetic spike trains; here the
Python side: off by default, the window reaches the C config, its state is counted in the
sorter's fixed memory, and a twin merge is a MERGE event the host's final labels apply."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from hub.dsp.pipeline import PipelineConfig
from hub.dsp.sorting import sort_recording
from hub.kernels.sorter import MERGE, Sorter, SorterConfig
from hub.sources import open_recording


def _neighbors(c: int = 8) -> np.ndarray:
    return np.array([[ch, ch - 1 if ch else -1, ch + 1 if ch + 1 < c else -1] for ch in range(c)],
                    np.int32)


def test_twin_off_by_default_and_sized_in_memory() -> None:
    """Off by default; on, the pair counts (U² per channel) and the per-cluster label times are
    part of the state nk_sort_memory reports."""
    assert not SorterConfig().twin
    off = Sorter(_neighbors(), 10, 22, 30000.0, 5.0)
    on = Sorter(_neighbors(), 10, 22, 30000.0, 5.0, replace(SorterConfig(), twin=True))
    u = SorterConfig().max_clusters
    assert on.memory_bytes - off.memory_bytes == 8 * u * (2 * u * 4 + 3 * 8)
    assert off.stats()["twins"] == 0


def test_twin_window_must_be_ordered() -> None:
    """A window that ends where it starts is refused whole (nk_sort_new: bad argument)."""
    cfg = replace(SorterConfig(), twin=True, twin_lo_ms=2.0, twin_hi_ms=2.0)
    with pytest.raises(Exception, match="nk_sort_new"):
        Sorter(_neighbors(), 10, 22, 30000.0, 5.0, cfg)


def test_twin_merges_are_merge_events(gt_tiny: tuple[Path, Path]) -> None:
    """On the generated 'tiny' ground truth with twins on: every twin merge is one of the
    reported merges (MERGE events, applied to the final labels)."""
    cfg = replace(PipelineConfig(sort=True),
                  sort_settings=replace(SorterConfig(), twin=True))
    res = sort_recording(open_recording(gt_tiny[0]), cfg)
    merges = int(np.count_nonzero(res.sort_events["kind"] == MERGE))
    assert 0 <= res.stats["twins"] <= res.stats["merges"] == merges
    gone = set(res.sort_events["other"][res.sort_events["kind"] == MERGE].tolist())
    assert not gone & set(np.unique(res.final_units).tolist())
