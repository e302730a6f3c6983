"""Bursts: a neuron's smaller spikes late in a burst stay its unit (SorterConfig.burst_s);
two neurons of the same shape and different size that do not follow each other stay two."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hub.kernels import EVENT_DTYPE
from tests.test_sorting import NEIGHBORS, PRE, SIGMA, K, L, majority, make_sorter, neuron

FS = 30000


def spikes(times: list[tuple[int, int, float]], seed: int
           ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Events on channel 2 at (sample, truth, scale): the template of neuron 2 (amplitude 150)
    scaled, plus white noise σ = SIGMA on each neighbour slot."""
    rng = np.random.default_rng(seed)
    tpl = neuron(2, 150)
    ev = np.zeros(len(times), EVENT_DTYPE)
    wf = np.zeros((len(times), K, L), np.float32)
    for i, (t, _, a) in enumerate(times):
        ev[i] = (t, 2, -1, a * tpl[2, PRE], 5 * SIGMA)
        for p, nc in enumerate(NEIGHBORS[2]):
            wf[i, p] = a * tpl[nc] + rng.normal(0, SIGMA, L).astype(np.float32)
    return ev, wf, np.array([w for _, w, _ in times], np.int64)


def sort(times: list[tuple[int, int, float]], **kw: object) -> tuple[
        npt.NDArray[np.int32], npt.NDArray[np.int64], dict[str, int]]:
    """Sorted with a scale prior steep enough that a 0.62× spike does not fit the template
    (as in noisy, correlated recordings where it does not either)."""
    s = make_sorter(scale_prior=40.0, **kw)
    ev, wf, truth = spikes(times, 7)
    for a in range(0, ev.size, 40):
        s.process(ev[a:a + 40], wf[a:a + 40], int(ev["sample"][min(a + 39, ev.size - 1)]) + 1)
    return ev["unit"].copy(), truth, s.stats()


def test_burst_spikes_stay_with_their_neuron() -> None:
    """A neuron fires alone for 3 s (its unit is born), then in bursts: every 100 ms a full
    spike and two at 0.62× 4 and 8 ms later. Without the burst link (burst_s = 0) the small
    ones become a unit of their own; with it, they carry the neuron's."""
    times = [(3000 + b * FS // 10, 0, 1.0) for b in range(30)]
    for b in range(30, 150):
        t = 3000 + b * FS // 10
        times += [(t, 0, 1.0), (t + 120, 1, 0.62), (t + 240, 1, 0.62)]
    lab, tru, st = sort(times)
    assert majority(lab[30:], tru[30:], 1) == majority(lab[30:], tru[30:], 0)
    assert st["births"] == 1 and (lab[30:] >= 0).mean() > 0.95
    lab, tru, st = sort(times, burst_s=0.0)
    assert majority(lab[30:], tru[30:], 1) != majority(lab[30:], tru[30:], 0)
    assert st["births"] == 2


def test_same_shape_neurons_that_do_not_follow_stay_apart() -> None:
    """Two neurons with the same shape, one 0.62× the other, firing independently (the small
    one a uniform time after each large spike within 100 ms: a fifth of its spikes within
    20 ms) are two units."""
    rng = np.random.default_rng(3)
    times = []
    for b in range(150):
        t = 3000 + b * FS // 10
        times += [(t, 0, 1.0), (t + 60 + int(rng.integers(0, FS // 10 - 120)), 1, 0.62)]
    lab, tru, st = sort(times)
    assert majority(lab[30:], tru[30:], 1) != majority(lab[30:], tru[30:], 0)
    assert st["births"] == 2
