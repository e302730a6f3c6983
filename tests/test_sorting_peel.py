"""Overlapping spikes (nk_sort_peel.c, SorterConfig.peel) on the generated 'tiny' ground
truth (SpikeInterface, fixed seed): with peeling the hub reports spikes the detector merged
into a neighbour's event, and they are mostly real (a ground-truth spike of the unit's matched
neuron within 0.4 ms); without it there are none, and fewer ground-truth spikes are found."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hub.dsp.pipeline import PipelineConfig
from hub.dsp.sorting import SortResult, sort_recording
from hub.kernels.sorter import SorterConfig
from hub.sources import open_recording


def _run(path: Path, peel: bool, refit: bool = False, joint: bool = False) -> SortResult:
    cfg = replace(PipelineConfig(sort=True),
                  sort_settings=replace(SorterConfig(), peel=peel, peel_refit=refit,
                                        peel_joint=joint))
    return sort_recording(open_recording(path), cfg)


def _found(res: SortResult, gt: object, tol: int) -> tuple[int, npt.NDArray[np.bool_]]:
    """(ground-truth spikes with a spike of their neuron's matched unit within ±tol, and per
    hub spike whether it is one of those), matching each neuron to its most frequent unit."""
    hits, real = 0, np.zeros(res.samples.size, bool)
    order = np.argsort(res.samples, kind="stable")
    s, u = res.samples[order], res.final_units[order]
    for g in gt.unit_ids:                                       # type: ignore[attr-defined]
        st = gt.get_unit_spike_train(g)                         # type: ignore[attr-defined]
        lo, hi = np.searchsorted(s, st - tol), np.searchsorted(s, st + tol, "right")
        near = np.concatenate([u[a:b] for a, b in zip(lo, hi, strict=True)])
        near = near[near >= 0]
        if not near.size:
            continue
        unit = int(np.bincount(near).argmax())
        mine = np.flatnonzero(u == unit)
        j = np.searchsorted(st, s[mine])
        d = np.minimum(np.abs(s[mine] - st[np.clip(j, 0, st.size - 1)]),
                       np.abs(s[mine] - st[np.clip(j - 1, 0, st.size - 1)]))
        real[order[mine[d <= tol]]] = True
        hits += int(sum((u[a:b] == unit).any() for a, b in zip(lo, hi, strict=True)))
    return hits, real


def test_peeled_spikes_are_real_and_add_to_the_found(gt_tiny: tuple[Path, Path]) -> None:
    import spikeinterface.core as si

    warnings.filterwarnings("ignore", message="The extractor is not serializable")
    gt = si.load(gt_tiny[1])
    on, off = _run(gt_tiny[0], True), _run(gt_tiny[0], False)
    tol = round(0.4e-3 * open_recording(gt_tiny[0]).sampling_frequency)
    n_on, n_off = on.stats["peeled"], off.stats["peeled"]
    hits_on, real_on = _found(on, gt, tol)
    hits_off, _ = _found(off, gt, tol)
    assert n_off == 0 and n_on > 0
    # the result flags exactly the peeled spikes, and carries the cluster and neighbour tables
    assert int(on.peeled.sum()) == n_on and not off.peeled.any()
    assert on.clusters["channel"].size == on.neighbors.shape[0] * SorterConfig().max_clusters
    # most peeled spikes are ground-truth spikes the detector's events did not carry
    assert hits_on - hits_off >= 0.6 * n_on
    assert real_on.sum() >= 0.95 * hits_on


@pytest.mark.parametrize("variant", ["refit", "joint"])
def test_variant_peels_real_spikes(gt_tiny: tuple[Path, Path], variant: str) -> None:
    """With the refit (SorterConfig.peel_refit, C peel = 2) or the joint fit
    (SorterConfig.peel_joint) the peeled spikes are as real, and no fewer ground-truth spikes
    are found than with the plain peel."""
    import spikeinterface.core as si

    warnings.filterwarnings("ignore", message="The extractor is not serializable")
    gt = si.load(gt_tiny[1])
    plain = _run(gt_tiny[0], True)
    other = _run(gt_tiny[0], True, **{variant: True})  # type: ignore[arg-type]
    tol = round(0.4e-3 * open_recording(gt_tiny[0]).sampling_frequency)
    hits_plain, _ = _found(plain, gt, tol)
    hits_other, real = _found(other, gt, tol)
    assert other.stats["peeled"] > 0
    assert real[other.peeled].mean() >= 0.6
    assert hits_other >= 0.99 * hits_plain


def test_peeled_spikes_carry_their_amplitude(gt_tiny: tuple[Path, Path]) -> None:
    """A peeled spike reaches the uplink with its fitted size and its channel's k·σ (not 0): of
    the detector's sign, and above threshold like any detected spike (the residual crossed it)."""
    from hub.dsp.pipeline import Pipeline

    rec = open_recording(gt_tiny[0])
    cfg = PipelineConfig(sort=True)
    pipe = Pipeline(cfg, rec.num_channels, rec.sampling_frequency, rec.channel_positions_um)
    peeled = []
    for start in range(0, rec.num_samples, pipe.block_samples):
        r = pipe.process(rec.read(start, min(start + pipe.block_samples, rec.num_samples)))
        if r.peeled is not None and r.peeled.size:
            peeled.append(r.peeled)
    p = np.concatenate(peeled)
    assert p.size > 0
    assert (p["amplitude"] < 0).all() and (p["threshold"] > 0).all()
    assert np.median(-p["amplitude"] / p["threshold"]) >= 1.0


def test_exclusion_narrows_but_keeps_the_nearest_contacts() -> None:
    """While sorting the detector excludes within 50 µm, but never less than 1.5 × a
    channel's nearest contact (a sparse probe keeps its neighbours); 0 keeps the radius."""
    from hub.dsp.geometry import adjacency, exclusion_adjacency

    dense = np.stack([np.zeros(8), np.arange(8) * 20.0], axis=1)
    sparse = np.stack([np.zeros(8), np.arange(8) * 60.0], axis=1)
    assert exclusion_adjacency(dense, 8, 100.0, 50.0)[3] == [2, 4, 1, 5]
    assert exclusion_adjacency(sparse, 8, 100.0, 50.0)[3] == [2, 4]
    assert exclusion_adjacency(dense, 8, 100.0, 0.0) == adjacency(dense, 8, 100.0)
    assert exclusion_adjacency(dense, 8, 30.0, 50.0) == adjacency(dense, 8, 30.0)
