"""The calibration sorter's randomness is seeded: the same recording gives the same templates
(`hubctl calibrate`, the batch's calibrate step and the harness's offline sorts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def test_unseeded_sorter_parameters_get_a_seed() -> None:
    from host_tools.calibrate import SORTER_SEED, seeded_params

    assert seeded_params("mountainsort5")["whitening_seed"] == SORTER_SEED
    assert seeded_params("mountainsort5", {"whitening_seed": 7})["whitening_seed"] == 7
    assert seeded_params("tridesclous2")["seed"] == SORTER_SEED
    assert "seed" not in seeded_params("spykingcircus2")        # seeded by default (42)
    assert seeded_params("mountainsort5", {"detect_threshold": 6})["detect_threshold"] == 6


def test_batch_and_harness_use_the_seeded_parameters() -> None:
    from bench.sorting_eval import sorter_params as harness
    from host_tools.batch_steps import sorter_params as batch

    assert harness("mountainsort5")["whitening_seed"] == 0
    assert batch("mountainsort5", {}, 1)["whitening_seed"] == 0


@pytest.mark.slow
def test_mountainsort5_calibration_sort_is_reproducible(tmp_path: Path) -> None:
    """MountainSort5 whitens with a matrix from randomly chosen chunks; seeded, two sorts of
    the same segment are the same sort."""
    import spikeinterface.core as si

    from host_tools.calibrate import run_offline_sorter

    rec, _ = si.generate_ground_truth_recording(durations=[20.0], num_channels=16, num_units=8,
                                                seed=3)
    rec.save(folder=tmp_path / "rec")
    a, _ = run_offline_sorter(tmp_path / "rec", 0.0, 20.0, "mountainsort5")
    b, _ = run_offline_sorter(tmp_path / "rec", 0.0, 20.0, "mountainsort5")
    assert len(a.unit_ids) > 0 and list(a.unit_ids) == list(b.unit_ids)
    for u in a.unit_ids:
        assert np.array_equal(a.get_unit_spike_train(u), b.get_unit_spike_train(u))
