"""Merges and links counted in fixed noise dimensions (SorterConfig.merge_dims and link_dims,
nk_sort.h "Merge" and "Link") on a low-SNR SpikeInterface ground truth generated here (24 channels,
12 units, 60 s, 10 µV noise, fixed seed): the settings reach the kernel, and neurons the
whole-snippet allowances lump stay apart. What they do to two neurons' clusters is tested in
c_kernels/tests/test_sort_merge.c; what they do to the family matrix and the bench's low-SNR
"hard" setting is in the settings' comments (hub/kernels/sorter.py)."""

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
def quiet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    import spikeinterface.core as si

    warnings.filterwarnings("ignore", message="The extractor is not serializable")
    rec, gt = si.generate_ground_truth_recording(
        num_channels=24, num_units=12, durations=[60.0], seed=303,
        noise_kwargs=dict(noise_levels=10.0, strategy="on_the_fly"))
    path = tmp_path_factory.mktemp("low_snr") / "rec"
    rec.save(folder=path)
    return path, gt


def _cfg(merge_dims: float, link_dims: float) -> PipelineConfig:
    return replace(PipelineConfig(sort=True),
                   sort_settings=replace(SorterConfig(), merge_dims=merge_dims,
                                         link_dims=link_dims))


def _run(path: Path, merge_dims: float, link_dims: float, templates: Any = None) -> SortResult:
    return sort_recording(open_recording(path), _cfg(merge_dims, link_dims), templates)


def _well(res: SortResult, gt: Any) -> int:
    import spikeinterface.core as si
    from spikeinterface.comparison import compare_sorter_to_ground_truth

    keep = res.final_units >= 0
    hs = si.NumpySorting.from_samples_and_labels(
        [res.samples[keep]], [res.final_units[keep]], gt.sampling_frequency)
    return int(compare_sorter_to_ground_truth(gt, hs, exhaustive_gt=True)
               .count_well_detected_units(0.8))


def test_dims_reach_the_kernel(quiet: tuple[Path, Any]) -> None:
    path, gt = quiet
    d = SorterConfig()
    assert d.merge_dims > 0 and d.link_dims > 0                       # on by default
    whole, merge, both = _run(path, 0.0, 0.0), _run(path, d.merge_dims, 0.0), \
        _run(path, d.merge_dims, d.link_dims)
    for r in (merge, both):
        assert r.stats["spikes"] == whole.stats["spikes"]           # detection is not touched
    assert not np.array_equal(whole.final_units, merge.final_units)
    assert not np.array_equal(merge.final_units, both.final_units)
    wells = [_well(r, gt) for r in (whole, merge, both)]
    print("whole snippet / merge_dims / merge_dims and link_dims: units "
          f"{[r.stats['live_units'] for r in (whole, merge, both)]}, well detected {wells}")
    assert merge.stats["live_units"] > whole.stats["live_units"]
    assert both.stats["live_units"] >= merge.stats["live_units"]
    assert wells[2] >= wells[1] >= wells[0]


@pytest.mark.parametrize("name", ["merge_dims", "link_dims"])
def test_dims_checked(name: str) -> None:
    from hub.kernels._ffi import KernelError
    from hub.kernels.sorter import Sorter

    nb = np.array([[0, 1], [1, 0]], np.int32)
    with pytest.raises((KernelError, ValueError)):
        Sorter(nb, 10, 22, 30000.0, 5.0, replace(SorterConfig(), **{name: -1.0}))


def test_dims_cold_start_only(quiet: tuple[Path, Any]) -> None:
    """With templates loaded the whole snippet's allowances hold (nk_sort.h "Merge"): a
    calibrated run labels every spike as it would with both settings at 0."""
    from host_tools.calibrate import templates_from_sorting

    path, gt = quiet
    rec = open_recording(path)
    last = rec.num_samples // 2
    half = gt.select_units(gt.unit_ids[::2]).frame_slice(0, last)   # the others are born
    ts, _ = templates_from_sorting(rec, half, _cfg(0.0, 0.0), 0, last)
    d = SorterConfig()
    whole, dims = _run(path, 0.0, 0.0, ts), _run(path, d.merge_dims, d.link_dims, ts)
    assert whole.stats["links"] > 0         # candidates join loaded units: the allowance used
    np.testing.assert_array_equal(whole.final_units, dims.final_units)
