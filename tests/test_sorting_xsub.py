"""Neighbours' spikes subtracted from a snippet before it is matched (nk_sort_xsub.c,
SorterConfig.subtract_neighbours) on the generated 'tiny' ground truth (SpikeInterface, fixed
seed): the setting reaches the kernel (its count in the stats, none when off) and sorting stays
as good. What it does to a snippet is tested in c_kernels/tests/test_sort_xsub.c; what it does to
the family matrix is in docs/sorting.md."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from hub.dsp.pipeline import PipelineConfig
from hub.dsp.sorting import SortResult, sort_recording
from hub.kernels.sorter import SorterConfig
from hub.sources import open_recording


def _run(path: Path, on: bool) -> SortResult:
    cfg = replace(PipelineConfig(sort=True),
                  sort_settings=replace(SorterConfig(), subtract_neighbours=on))
    return sort_recording(open_recording(path), cfg)


def _median_accuracy(res: SortResult, gt: object) -> float:
    import spikeinterface.core as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    keep = res.final_units >= 0
    hs = si.NumpySorting.from_samples_and_labels(
        [res.samples[keep]], [res.final_units[keep]],
        gt.sampling_frequency)                                  # type: ignore[attr-defined]
    perf = compare_sorter_to_ground_truth(gt, hs, exhaustive_gt=True).get_performance()
    return float(np.median(perf["accuracy"]))


def test_subtract_neighbours_reaches_the_kernel(gt_tiny: tuple[Path, Path]) -> None:
    import spikeinterface.core as si

    warnings.filterwarnings("ignore", message="The extractor is not serializable")
    gt = si.load(gt_tiny[1])
    on, off = _run(gt_tiny[0], True), _run(gt_tiny[0], False)
    assert on.stats["subtracted"] > 0 and off.stats["subtracted"] == 0
    assert on.stats["spikes"] == off.stats["spikes"]            # detection is not touched
    assert _median_accuracy(on, gt) >= _median_accuracy(off, gt) - 0.01
