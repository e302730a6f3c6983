"""Merges counted in fixed noise dimensions (SorterConfig.merge_dims, nk_sort.h "Merge") on a
low-SNR SpikeInterface ground truth generated here (24 channels, 12 units, 60 s, 10 µV noise, fixed
seed): the setting reaches the kernel, and neurons the whole-snippet allowance merges stay
apart. What it does to two neurons' clusters is tested in c_kernels/tests/test_sort_merge.c;
what it does to the family matrix is in the setting's comment (hub/kernels/sorter.py)."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hub.dsp.pipeline import PipelineConfig
from hub.dsp.sorting import SortResult, sort_recording
from hub.kernels.sorter import SorterConfig
from hub.sources import open_recording


@pytest.fixture(scope="module")
def low_snr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    import spikeinterface.core as si

    warnings.filterwarnings("ignore", message="The extractor is not serializable")
    rec, gt = si.generate_ground_truth_recording(
        num_channels=24, num_units=12, durations=[60.0], seed=303,
        noise_kwargs=dict(noise_levels=10.0, strategy="on_the_fly"))
    path = tmp_path_factory.mktemp("low_snr") / "rec"
    rec.save(folder=path)
    return path, gt


def _run(path: Path, dims: float) -> SortResult:
    cfg = replace(PipelineConfig(sort=True),
                  sort_settings=replace(SorterConfig(), merge_dims=dims))
    return sort_recording(open_recording(path), cfg)


def _well(res: SortResult, gt: Any) -> int:
    import spikeinterface.core as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    keep = res.final_units >= 0
    hs = si.NumpySorting.from_samples_and_labels(
        [res.samples[keep]], [res.final_units[keep]], gt.sampling_frequency)
    return int(compare_sorter_to_ground_truth(gt, hs, exhaustive_gt=True)
               .count_well_detected_units(0.8))


def test_merge_dims_reaches_the_kernel(low_snr: tuple[Path, Any]) -> None:
    path, gt = low_snr
    whole, dims = _run(path, 0.0), _run(path, 96.0)
    assert whole.stats["spikes"] == dims.stats["spikes"]           # detection is not touched
    assert not np.array_equal(whole.final_units, dims.final_units)
    print(f"merge_dims 0: {whole.stats['live_units']} units, {_well(whole, gt)} well detected; "
          f"96: {dims.stats['live_units']} units, {_well(dims, gt)} well detected")
    assert dims.stats["live_units"] > whole.stats["live_units"]
    assert _well(dims, gt) >= _well(whole, gt)


def test_merge_dims_checked() -> None:
    from hub.kernels._ffi import KernelError
    from hub.kernels.sorter import Sorter

    nb = np.array([[0, 1], [1, 0]], np.int32)
    with pytest.raises((KernelError, ValueError)):
        Sorter(nb, 10, 22, 30000.0, 5.0, replace(SorterConfig(), merge_dims=-1.0))
