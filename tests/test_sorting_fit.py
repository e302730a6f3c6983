"""Calibration that says when it cannot: per-unit fit of loaded templates, units that do not fit
are reported; drift successions keep ids through a probe step; the generalisation families."""

from __future__ import annotations

import numpy as np

from hub.dsp.sorting import unfit_units
from tests.test_sorting import PRE, C, Stream, majority, make_sorter, neuron


def test_fit_reports_a_template_that_does_not_match() -> None:
    """A calibrated template three times too large takes none of its channel's spikes: the fit
    says so (and unfit_units names it); the right templates fit at δ ≈ 1."""
    pop = [(2, neuron(2, 150)), (5, neuron(5, 100))]
    good = np.stack([t for _, t in pop])
    bad = good.copy()
    bad[0] *= 3.0
    for templates, expect_bad in ((good, set()), (bad, {10})):
        s, st = make_sorter(), Stream(3)
        s.load_templates([10, 11], templates)
        for _ in range(20):
            ev, wf, _ = st.block(pop, 50)
            s.process(ev, wf, st.t + 1)
        fit = {r["unit"]: r for r in s.fit()}
        assert set(fit) == {10, 11}
        assert fit[11]["spikes"] > 300 and 0.5 < fit[11]["mean_delta"] < 2.0
        assert abs(fit[11]["snr"] - 100 / 10.0) < 1.0      # template peak / σ of channel 5
        assert {r["unit"] for r in unfit_units(list(fit.values()))} == expect_bad
    assert fit[10]["spikes"] == 0 and fit[10]["channel_spikes"] > 300


def test_unfit_units_waits_for_spikes_and_flags_loose_matches() -> None:
    rows = [{"unit": 1, "channel": 0, "spikes": 0, "channel_spikes": 0, "mean_delta": 0.0,
             "snr": 0.0},
            {"unit": 2, "channel": 1, "spikes": 50, "channel_spikes": 60, "mean_delta": 5.0,
             "snr": 8.0},
            {"unit": 3, "channel": 2, "spikes": 50, "channel_spikes": 60, "mean_delta": 1.1,
             "snr": 8.0}]
    assert [r["unit"] for r in unfit_units(rows)] == [2]


def test_step_of_the_probe_keeps_unit_ids() -> None:
    """Every neuron's footprint moves by one channel at once (a step of the probe): the new
    clusters continue the silent units (successions) instead of being born as new units."""
    before = [(2, neuron(2, 150)), (5, neuron(5, 100))]
    after = [(3, np.roll(neuron(2, 150), 1, axis=0)), (6, np.roll(neuron(5, 100), 1, axis=0))]
    s, st = make_sorter(), Stream(5)
    labs, truths = [], []
    for pop in (before, after):
        for _ in range(30):
            ev, wf, which = st.block(pop, 40)
            s.process(ev, wf, st.t + 1)
            labs.append(ev["unit"].copy())
            truths.append(which)
    lab, tru = np.concatenate(labs), np.concatenate(truths)
    n = lab.size // 2
    ids_before = [majority(lab[200:n], tru[200:n], k) for k in range(2)]
    ids_after = [majority(lab[n + 200:], tru[n + 200:], k) for k in range(2)]
    stats = s.stats()
    assert ids_before == ids_after, (ids_before, ids_after)
    assert stats["successions"] >= 2 and stats["births"] == 2


def test_families_cover_the_axes() -> None:
    """The harness's matrix: ≥ 8 families, 16–128 channels, every probe kind and drift mode,
    an explicit tune/report seed split, and recording keys that change with the seed."""
    from bench import sorting_families as sf

    assert len(sf.FAMILIES) >= 8 and len(sf.SEEDS) >= 5
    assert set(sf.TUNE_SEEDS).isdisjoint(sf.REPORT_SEEDS)
    assert set(sf.TUNE_SEEDS) | set(sf.REPORT_SEEDS) == set(sf.SEEDS)
    assert {f.probe for f in sf.FAMILIES} == {"linear", "multicolumn", "neuropixels", "tetrodes"}
    assert {f.drift for f in sf.FAMILIES} >= {"none", "rigid", "nonrigid", "step"}
    chans = [f.num_channels for f in sf.FAMILIES]
    assert min(chans) == 16 and max(chans) == 128
    for f in sf.FAMILIES:
        assert sf.make_probe(f).get_contact_count() == f.num_channels, f.name
    f = sf.FAMILIES[0]
    assert sf.key(f, 2) == sf.key(f, 2) != sf.key(f, 3)
    assert C == 8 and PRE > 0  # the shared synthetic probe of tests/test_sorting.py
