"""Noise + detection: ground truth, block-size invariance, snippets and feature bins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hub.dsp.pipeline import ConfigError, Pipeline, PipelineConfig
from hub.dsp.replay import replay
from hub.kernels import EVENT_DTYPE, Detector, DetectorConfig, FeatureBinner, SnippetExtractor
from hub.sources import open_recording


def run_blocks(rec_dir: Path, block_ms: float, seconds: float = 4.0) -> dict[str, np.ndarray]:
    rec = open_recording(rec_dir)
    pipe = Pipeline(PipelineConfig(block_ms=block_ms), rec.num_channels, rec.sampling_frequency,
                    rec.channel_positions_um)
    n = int(seconds * rec.sampling_frequency)
    ev, sev, wf, bins, cnt, pw = [], [], [], [], [], []
    for start in range(0, n, pipe.block_samples):
        r = pipe.process(rec.read(start, min(start + pipe.block_samples, n)))
        ev.append(r.events)
        sev.append(r.snippet_events)
        wf.append(r.snippets)
        bins.append(r.bins.index)
        cnt.append(r.bins.counts)
        pw.append(r.bins.power)
    return {"events": np.concatenate(ev), "snippet_events": np.concatenate(sev),
            "snippets": np.concatenate(wf), "bins": np.concatenate(bins),
            "counts": np.concatenate(cnt), "power": np.concatenate(pw)}


def test_block_size_invariance(gt_tiny: tuple[Path, Path]) -> None:
    """Identical events, snippets and bins for every block size from 1 to 50 ms."""
    ref = run_blocks(gt_tiny[0], 10.0)
    assert ref["events"].size > 50
    for block_ms in (1.0, 2.0, 3.0, 7.0, 13.0, 20.0, 33.0, 50.0):
        got = run_blocks(gt_tiny[0], block_ms)
        for key in ref:
            assert np.array_equal(ref[key], got[key]), f"{key} differs at {block_ms} ms"


def test_detection_against_ground_truth(gt_tiny: tuple[Path, Path]) -> None:
    import spikeinterface.core as si

    from host_tools.scoring import score_detection, unit_info

    rec = open_recording(gt_tiny[0])
    res = replay(rec, progress=None)
    info = unit_info(si.load(gt_tiny[0]), si.load(gt_tiny[1]))
    s = score_detection(res.events, si.load(gt_tiny[1]), info, rec.channel_positions_um,
                        rec.sampling_frequency)
    assert s.units_scored >= 5
    assert s.recall >= 0.93, s
    assert s.precision >= 0.93, s


def test_noise_estimate_tracks_sigma_and_ignores_spikes() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((60000, 4)) * np.array([5, 10, 20, 40])).astype(np.float32)
    x[::300, :] -= 400  # big spikes: 0.3 % of samples
    d = Detector(4, DetectorConfig(warmup=0))
    d.process(x, 0)
    np.testing.assert_allclose(d.noise(), [5, 10, 20, 40], rtol=0.06)


def test_polarity_and_straddling_spike() -> None:
    """A spike whose window straddles a block edge is found once, at its peak."""
    x = np.zeros((4000, 2), np.float32)
    rng = np.random.default_rng(0)
    x += rng.standard_normal(x.shape).astype(np.float32)
    x[2000, 0] = 80.0
    x[2001, 0] = 60.0
    for pol, expect in (("pos", 1), ("neg", 0), ("both", 1)):
        d = Detector(2, DetectorConfig(polarity=pol, warmup=500, exclude_sweep=10))
        got = [d.process(np.ascontiguousarray(x[i:i + 1999 - 1000 * (i > 0)]), i)
               for i in (0, 1999)][0:2]
        ev = np.concatenate(got)
        big = ev[ev["amplitude"] > 40]
        assert big.size == expect
        if expect:
            assert big["sample"][0] == 2000 and big["channel"][0] == 0


def test_spatial_refractory_spares_another_neurons_spike() -> None:
    """A spike on a neighbour 20 samples after a larger one (outside the ±D window, inside the
    refractory period) is a spike of its own at 0.7 of the first's size and the first's lobe
    at 0.4 (nk_detect.c LOBE_RATIO); on the same channel the refractory period holds."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8000, 2)).astype(np.float32)
    x[3000, 0] = -100.0
    x[3020, 1] = -70.0          # another neuron: kept
    x[6000, 0] = -100.0
    x[6020, 1] = -40.0          # the first's lobe: suppressed
    x[6025, 0] = -90.0          # same channel, within 30 samples: refractory
    d = Detector(2, DetectorConfig(warmup=1000, exclude_sweep=12, refractory=30), [[1], [0]])
    ev = d.process(x, 0)
    got = [(int(e["sample"]), int(e["channel"])) for e in ev if e["amplitude"] < -20]
    assert got == [(3000, 0), (3020, 1), (6000, 0)]


def test_snippet_and_features_shapes() -> None:
    nb = np.array([[0, 1], [1, 0]], np.int32)
    s = SnippetExtractor(nb, pre=4, post=8, max_block=100, max_pending=16)
    f = FeatureBinner(2, bin_samples=50, latency=3, max_block=100)
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    ev = np.zeros(1, EVENT_DTYPE)
    ev["sample"], ev["channel"] = 40, 1
    e, w = s.process(x, 0, ev)
    assert e.size == 1 and w.shape == (1, 2, 12)
    assert np.array_equal(w[0, 0], x[36:48, 1]) and np.array_equal(w[0, 1], x[36:48, 0])
    bins = f.process(x, 0, ev)
    assert list(bins.index) == [0]  # bin 1 ends at 100, final only at 100 + latency
    assert bins.counts[0].tolist() == [0, 1]
    np.testing.assert_allclose(bins.power[0], (x[:50] ** 2).mean(axis=0), rtol=1e-6)


@pytest.mark.parametrize("field,value", [
    ("block_ms", 0.5), ("block_ms", 51.0), ("threshold", 0.0), ("polarity", "up"),
    ("reference", "mode"), ("band_low_hz", 7000.0), ("snippet_channels", 0),
])
def test_bad_config_names_the_field(field: str, value: object) -> None:
    cfg = PipelineConfig(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=field):
        Pipeline(cfg, 4, 30000.0)


def test_detector_wrong_input() -> None:
    d = Detector(4, DetectorConfig())
    with pytest.raises(TypeError):
        d.process(np.zeros((10, 4), np.float64), 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        d.process(np.zeros((10, 5), np.float32), 0)
    from hub.kernels import KernelError

    with pytest.raises(KernelError, match="invalid state"):
        d.process(np.zeros((10, 4), np.float32), 17)  # not continuing the stream


def test_noise_seed_detects_from_the_start_and_unseeded_is_unchanged() -> None:
    """A seeded detector (nk_detect_seed_noise) decides from its short warm-up on with the
    seeded σ (a spike at sample 100 is found; the default warm-up hides it), keeps a right
    seed (no Robbins–Monro jump at the start) and corrects a wrong one; unseeded output is
    bit-identical to a detector that never heard of seeding."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((30000, 4)) * 10.0).astype(np.float32)
    x[100, 1] = -200.0
    x[15000, 2] = -200.0
    plain = Detector(4, DetectorConfig(warmup=6000))
    ev0 = plain.process(x, 0).copy()
    assert 100 not in ev0["sample"].tolist() and 15000 in ev0["sample"].tolist()
    seeded = Detector(4, DetectorConfig(warmup=6000))
    seeded.seed_noise(np.full(4, 10.0), warmup=50, prior_samples=6000)
    ev1 = seeded.process(x[:200], 0).copy()
    assert (ev1["sample"] == 100).sum() == 1 and ev1["channel"][0] == 1
    np.testing.assert_allclose(ev1["threshold"][0], 5 * 10.0, rtol=0.05)
    np.testing.assert_allclose(seeded.noise(), 10.0, rtol=0.1)
    wrong = Detector(4, DetectorConfig(warmup=6000))
    wrong.seed_noise(np.full(4, 20.0), warmup=50, prior_samples=6000)
    wrong.process(x, 0)
    np.testing.assert_allclose(wrong.noise(), 10.0, rtol=0.1)
    again = Detector(4, DetectorConfig(warmup=6000))
    assert np.array_equal(again.process(x, 0), ev0)
    with pytest.raises(Exception, match="nk_detect_seed_noise"):
        seeded.seed_noise(np.full(4, 10.0), 50, 6000)       # samples already processed
    with pytest.raises(Exception, match="nk_detect_seed_noise"):
        Detector(4, DetectorConfig()).seed_noise(np.array([1, 1, 0, 1]), 50, 6000)
