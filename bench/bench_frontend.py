"""Front-end throughput (band-pass + CMR + noise + detection + snippets + features), one core.

The same int16 data (1024 channels at 30 kHz: independent noise, a common-mode component and
spikes; fixed seed) goes through the hub pipeline and through SpikeInterface's causal
equivalent (bandpass_filter direction="forward" + common_reference median + detect_peaks
locally_exclusive, n_jobs=1) in the same run; the figure that matters is the ratio. Instructions
per sample come from valgrind on the C-only driver c_kernels/bench/frontend_bench.c.
"""

from __future__ import annotations

import subprocess
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import REPO, callgrind_instructions, median_seconds

FS = 30000.0


def make_data(n_channels: int, seconds: float, seed: int = 0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    x = rng.standard_normal((n, n_channels), dtype=np.float32) * 20.0
    common = np.cumsum(rng.standard_normal(n, dtype=np.float32)) * 2.0
    common -= np.convolve(common, np.ones(301, np.float32) / 301, mode="same")
    x += common[:, None]
    wave = -np.array([0, 20, 60, 140, 200, 150, 80, 20, -20, -40, -30, -15, -5], np.float32)
    times = rng.integers(1000, n - 20, size=int(5 * seconds * n_channels))  # 5 Hz per channel
    chans = rng.integers(0, n_channels, size=times.size)
    for k, w in enumerate(wave):
        np.add.at(x, (times + k, chans), w)
    out: npt.NDArray[np.int16] = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return out


def probe_positions(n_channels: int) -> npt.NDArray[np.float64]:
    """Two columns, 20 µm pitch (a Neuropixels-like shank)."""
    pos: npt.NDArray[np.float64] = np.c_[np.tile([0.0, 20.0], n_channels // 2),
                                         np.repeat(np.arange(n_channels // 2) * 20.0, 2)]
    return pos[:n_channels]


def run_hub(x: npt.NDArray[np.int16], pos: npt.NDArray[np.float64],
            reference: str | None = None) -> dict[str, Any]:
    """Median of three runs; each builds a fresh pipeline (untimed: the hub does that once at
    start) and times only the block processing. `reference`: the default's, or this one."""
    import dataclasses
    import time

    from hub.dsp.pipeline import Pipeline, PipelineConfig

    cfg = PipelineConfig() if reference is None else \
        dataclasses.replace(PipelineConfig(), reference=reference)

    times, setup = [], []
    events = 0
    stages: dict[str, float] = {}
    for _ in range(3):
        t0 = time.perf_counter()
        p = Pipeline(cfg, x.shape[1], FS, pos)
        t1 = time.perf_counter()
        events = 0
        for s in range(0, x.shape[0], p.block_samples):
            events += p.process(x[s:s + p.block_samples]).events.size
        times.append(time.perf_counter() - t1)
        setup.append(t1 - t0)
        stages = dict(p.times.seconds)
    return {"seconds": float(np.median(times)), "repeats": times,
            "setup_seconds": float(np.median(setup)), "events": events,
            "stage_seconds": {k: round(v, 4) for k, v in stages.items()}}


def run_spikeinterface(x: npt.NDArray[np.int16], pos: npt.NDArray[np.float64]) -> dict[str, Any]:
    import spikeinterface.core as si
    import spikeinterface.preprocessing as spre
    from probeinterface import Probe
    from spikeinterface.sortingcomponents.peak_detection import detect_peaks

    rec = si.NumpyRecording([x], sampling_frequency=FS)
    probe = Probe(ndim=2)
    probe.set_contacts(positions=pos, shapes="circle", shape_params={"radius": 6})
    probe.set_device_channel_indices(np.arange(x.shape[1]))
    rec.set_probe(probe)  # in place (SpikeInterface ≥ 0.105)
    job = {"n_jobs": 1, "chunk_duration": "1s", "progress_bar": False}
    n_peaks = 0

    def once() -> None:
        nonlocal n_peaks
        f = spre.bandpass_filter(rec, freq_min=300.0, freq_max=6000.0, filter_order=1,
                                 direction="forward", dtype="float32")
        cmr = spre.common_reference(f, reference="global", operator="median")
        noise = si.get_noise_levels(cmr, return_in_uV=False, **job)
        peaks = detect_peaks(cmr, method="locally_exclusive",
                             method_kwargs={"detect_threshold": 5.0, "exclude_sweep_ms": 0.4,
                                            "radius_um": 100.0, "noise_levels": noise},
                             job_kwargs=job)
        n_peaks = int(peaks.size)

    med, times = median_seconds(once, 1)
    return {"seconds": med, "repeats": times, "events": n_peaks}


def instructions_per_sample(channels: int = 1024, samples: int = 12000,
                            reference: str = "robust") -> float | None:
    """Past the robust reference's warm-up (2048 samples) for most of the run."""
    exe = REPO / "build/native/bench/frontend_bench"
    if not exe.exists():
        subprocess.run(["make", "-C", str(REPO), "build/native/bench/frontend_bench"],
                       check=True, capture_output=True)
    n = callgrind_instructions([str(exe), str(channels), str(samples), "1", reference],
                               "run_frontend")
    return None if n is None else n / (channels * samples)


def run(quick: bool) -> dict[str, Any]:
    C = 1024
    seconds = 1.0 if quick else 4.0
    x = make_data(C, seconds)
    pos = probe_positions(C)
    samples = x.size
    hub = run_hub(x, pos)
    hub_median = run_hub(x, pos, "median")
    si_res = run_spikeinterface(x, pos)
    hub_ms = samples / hub["seconds"] / 1e6
    si_ms = samples / si_res["seconds"] / 1e6
    ips = instructions_per_sample()
    ips_median = instructions_per_sample(reference="median")
    return {
        "channels": C, "seconds_of_data": seconds, "samples": samples,
        "hub_msamples_per_s": round(hub_ms, 1),
        "hub_realtime_factor": round(seconds / hub["seconds"], 2),
        "spikeinterface_msamples_per_s": round(si_ms, 2),
        "ratio_hub_over_spikeinterface": round(hub_ms / si_ms, 1),
        "instructions_per_sample": None if ips is None else round(ips, 1),
        "hub_median_reference_msamples_per_s": round(samples / hub_median["seconds"] / 1e6, 1),
        "instructions_per_sample_median_reference":
            None if ips_median is None else round(ips_median, 1),
        "hub": hub, "hub_median_reference": hub_median, "spikeinterface": si_res,
        "targets": {"hub_msamples_per_s": 150, "ratio": 30},
    }


def table(r: dict[str, Any]) -> str:
    ips = r["instructions_per_sample"]
    return "\n".join([
        f"front-end, {r['channels']} ch × {r['seconds_of_data']:.0f} s at 30 kHz, one core",
        f"  hub pipeline        {r['hub_msamples_per_s']:8.1f} M samples/s "
        f"({r['hub_realtime_factor']:.1f}× real time; target ≥ 150)",
        f"  SpikeInterface      {r['spikeinterface_msamples_per_s']:8.2f} M samples/s "
        "(causal bandpass + CMR + noise + detect_peaks, n_jobs=1)",
        f"  ratio               {r['ratio_hub_over_spikeinterface']:8.1f}× (target ≥ 30)",
        f"  instructions/sample {ips if ips is not None else 'n/a (no valgrind)'} (x86_64, "
        "callgrind on the C driver)",
        f"  with the median reference instead of the robust one: "
        f"{r['hub_median_reference_msamples_per_s']:.1f} M samples/s, "
        f"{r['instructions_per_sample_median_reference']} instructions/sample",
        f"  hub stage seconds   {r['hub']['stage_seconds']}",
    ])
