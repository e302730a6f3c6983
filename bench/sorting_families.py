"""The generalisation matrix for online sorting: families of SpikeInterface ground-truth
recordings that vary what a real probe varies, each drawn with several seeds.

A family fixes the *kind* of recording (probe geometry and channel count, template shapes and
spatial extent, noise level and spatial correlation, amplitude jitter, firing rates and bursts,
unit density, drift, duration); a seed draws one recording of that kind (unit positions,
template parameters, spike trains, noise). Every family is generated with
``spikeinterface.generation.generate_drifting_recording`` (its static twin for the families
without drift), so all share one code path.

The seed split is explicit: :data:`TUNE_SEEDS` are the only recordings any setting of the hub
may be tuned on; :data:`REPORT_SEEDS` are held out and are the ones the harness reports.

Recordings are saved once as int16 SpikeInterface binary folders (0.195 µV per count, as an
Intan front end quantises) under a key that hashes the family, the seed, the duration and the
SpikeInterface version; offline sorter results are cached beside them by the same key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

#: seeds 0–4 of every family; tuning may look at TUNE_SEEDS only, the report uses REPORT_SEEDS
SEEDS = (0, 1, 2, 3, 4)
TUNE_SEEDS = (0, 1)
REPORT_SEEDS = (2, 3, 4)
LSB_UV = 0.195
CACHE = Path("out/sorting_gen")


@dataclass(frozen=True)
class Family:
    """One kind of recording. Ranges are (low, high) drawn per unit."""

    name: str
    probe: str                          # linear | multicolumn | neuropixels | tetrodes
    num_channels: int
    num_units: int
    duration_s: float
    columns: int = 2
    xpitch: float = 20.0
    ypitch: float = 20.0
    stagger: float = 0.0                # y shift of every other column (µm)
    alpha: tuple[float, float] = (150.0, 400.0)         # template amplitude (a.u. ≈ µV peak)
    spatial_decay: tuple[float, float] = (20.0, 40.0)   # µm
    spatial_profile: str = "exponential"                # exponential | power
    template_mode: str = "ellipsoid"                    # ellipsoid | sphere
    repolarization_ms: tuple[float, float] = (0.5, 0.8)
    noise_uV: tuple[float, float] = (5.0, 6.0)
    noise_spatial_decay: float | None = None            # µm: correlated noise across contacts
    amplitude_std: float = 0.05                         # per-spike amplitude jitter (fraction)
    firing_rates: tuple[float, float] = (2.0, 8.0)
    burst_fraction: float = 0.0        # fraction of spikes that start a burst
    min_distance_um: float = 18.0      # between units (density / overlaps)
    drift: str = "none"                # none | rigid | nonrigid | zigzag | step
    drift_um: float = 0.0              # peak-to-peak
    drift_period_s: float = 60.0
    drift_start_s: float = 10.0
    tags: tuple[str, ...] = field(default_factory=tuple)
    #: "" (the harness's own generator) or a SpikeInterface stock generator run at its defaults
    #: except size: "ground_truth" (generate_ground_truth_recording) | "drifting"
    #: (generate_drifting_recording). Only name, channels, units, duration (and the probe for
    #: "drifting") apply to them; the other fields describe what the stock generator does.
    stock: str = ""

    @property
    def drifting(self) -> bool:
        return self.drift != "none"


FAMILIES: tuple[Family, ...] = (
    Family("linear16", "linear", 16, 10, 60.0, columns=1, ypitch=25.0,
           alpha=(120.0, 350.0), spatial_decay=(15.0, 30.0)),
    Family("tetrode16", "tetrodes", 16, 12, 60.0, alpha=(100.0, 300.0),
           spatial_decay=(20.0, 35.0), noise_uV=(6.0, 8.0), firing_rates=(2.0, 15.0)),
    Family("dense32", "multicolumn", 32, 24, 60.0, alpha=(100.0, 400.0),
           spatial_profile="power", template_mode="sphere", min_distance_um=12.0,
           firing_rates=(3.0, 12.0)),
    Family("npx64", "neuropixels", 64, 32, 60.0, columns=4, xpitch=16.0, ypitch=40.0,
           stagger=20.0, alpha=(150.0, 450.0), spatial_decay=(10.0, 45.0),
           repolarization_ms=(0.3, 0.9)),
    Family("npx128_dense", "neuropixels", 128, 72, 40.0, columns=4, xpitch=16.0,
           ypitch=40.0, stagger=20.0, alpha=(120.0, 450.0), spatial_decay=(10.0, 40.0),
           min_distance_um=10.0, firing_rates=(4.0, 15.0)),
    Family("noisy_bursts32", "multicolumn", 32, 16, 60.0, columns=3, xpitch=30.0,
           ypitch=30.0, stagger=15.0, alpha=(200.0, 500.0), noise_uV=(9.0, 12.0),
           noise_spatial_decay=40.0, amplitude_std=0.15, burst_fraction=0.3),
    Family("drift_rigid64", "neuropixels", 64, 32, 90.0, columns=4, xpitch=16.0,
           ypitch=40.0, stagger=20.0, alpha=(150.0, 450.0), drift="rigid", drift_um=40.0,
           drift_period_s=180.0, drift_start_s=5.0),
    Family("drift_nonrigid64", "multicolumn", 64, 32, 90.0, alpha=(150.0, 450.0),
           drift="nonrigid", drift_um=30.0, drift_period_s=60.0),
    Family("drift_step32", "multicolumn", 32, 20, 90.0, alpha=(150.0, 450.0), drift="step",
           drift_um=20.0),
    # a true zigzag: 30 µm peak to peak, up and down every 30 s (drift_rigid64 is one ramp)
    Family("drift_zigzag32", "multicolumn", 32, 20, 90.0, alpha=(150.0, 450.0),
           drift="zigzag", drift_um=30.0, drift_period_s=30.0, drift_start_s=5.0),
    # the outside check (issue 13's table): SpikeInterface's stock generators at their
    # defaults except size, at full size even with --quick
    Family("si_static32", "multicolumn", 32, 20, 120.0, alpha=(50.0, 500.0),
           noise_uV=(5.0, 5.0), firing_rates=(15.0, 15.0), min_distance_um=20.0,
           stock="ground_truth"),
    # SpikeInterface's default drifting probe is Neuropixels 1.0 (probeinterface.get_probe,
    # which needs the network): its geometry rebuilt here, 64 contacts
    Family("si_drift64", "neuropixels", 64, 48, 180.0, columns=4, xpitch=16.0, ypitch=40.0,
           stagger=20.0, alpha=(100.0, 500.0), spatial_decay=(10.0, 45.0), noise_uV=(6.0, 8.0),
           noise_spatial_decay=25.0, drift="zigzag", drift_um=40.0, drift_period_s=200.0,
           drift_start_s=60.0, stock="drifting"),
)


def family(name: str) -> Family:
    for f in FAMILIES:
        if f.name == name:
            return f
    raise KeyError(f"unknown family {name!r}: {', '.join(f.name for f in FAMILIES)}")


def quick(f: Family) -> Family:
    """The --quick version: half the duration (at least 30 s); the stock families keep the size
    an outside evaluation runs them at."""
    if f.stock:
        return f
    return replace(f, duration_s=max(30.0, f.duration_s / 2))


def make_probe(f: Family) -> Any:
    """A probeinterface Probe with the family's geometry and channel count."""
    import probeinterface as pi

    if f.probe == "tetrodes":
        # groups of 4 contacts on a 20 µm square, groups 200 µm apart (beyond the hub's
        # 100 µm neighbourhood: each tetrode is sorted on its own)
        pos = []
        for g in range(f.num_channels // 4):
            for dx, dy in ((-10, -10), (10, -10), (-10, 10), (10, 10)):
                pos.append((dx, 200.0 * g + dy))
        probe = pi.Probe(ndim=2, si_units="um")
        probe.set_contacts(positions=np.array(pos, float), shapes="circle",
                           shape_params={"radius": 6})
    elif f.probe == "linear":
        probe = pi.generate_linear_probe(num_elec=f.num_channels, ypitch=f.ypitch,
                                         contact_shapes="circle",
                                         contact_shape_params={"radius": 6})
    else:
        per = [f.num_channels // f.columns] * f.columns
        for c in range(f.num_channels % f.columns):
            per[c] += 1
        shifts = [f.stagger * (c % 2) for c in range(f.columns)]
        probe = pi.generate_multi_columns_probe(
            num_columns=f.columns, num_contact_per_column=per, xpitch=f.xpitch, ypitch=f.ypitch,
            y_shift_per_column=shifts, contact_shapes="square" if f.probe == "neuropixels"
            else "circle",
            contact_shape_params={"width": 12} if f.probe == "neuropixels" else {"radius": 6})
    probe.set_device_channel_indices(np.arange(probe.get_contact_count()))
    return probe


def _unit_locations(f: Family, probe: Any, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Tetrodes: each unit near one tetrode (so that every unit is seen). Others: SI's own."""
    pos = probe.contact_positions
    centres = pos.reshape(-1, 4, 2).mean(axis=1)
    g = rng.integers(0, centres.shape[0], f.num_units)
    xy = centres[g] + rng.uniform(-25.0, 25.0, (f.num_units, 2))
    z = rng.uniform(5.0, 40.0, f.num_units)
    return np.column_stack([xy, z])


def _sorting(f: Family, seed: int) -> tuple[Any, npt.NDArray[np.float64] | None]:
    """Spike trains (Poisson with a refractory period; with bursts: 2–4 spikes 3–6 ms apart,
    each ~20 % smaller than the previous one) and per-spike amplitude factors, or None."""
    import spikeinterface.core as si

    fs = 30000.0
    rng = np.random.default_rng(seed + 7919)
    base = si.generate_sorting(num_units=f.num_units, sampling_frequency=fs,
                               durations=[f.duration_s],
                               firing_rates=tuple(f.firing_rates), refractory_period_ms=4.0,
                               seed=seed)
    if f.burst_fraction <= 0:
        return base, None
    n = round(f.duration_s * fs)
    samples, labels, amps = [], [], []
    for k, u in enumerate(base.unit_ids):
        st = np.asarray(base.get_unit_spike_train(u), np.int64)
        # a bursting neuron's bursts replace some of its isolated spikes
        keep = rng.random(st.size) >= f.burst_fraction / 2
        for t in st[keep]:
            samples.append(t)
            labels.append(k)
            amps.append(1.0)
            if rng.random() < f.burst_fraction:
                t2, a = int(t), 1.0
                for _ in range(int(rng.integers(1, 4))):
                    t2 += int(rng.uniform(3e-3, 6e-3) * fs)
                    a *= 0.8
                    if t2 < n - 200:
                        samples.append(t2)
                        labels.append(k)
                        amps.append(a)
    s_arr, l_arr, a_arr = np.array(samples), np.array(labels), np.array(amps)
    order = np.lexsort((l_arr, s_arr))
    sorting = si.NumpySorting.from_samples_and_labels([s_arr[order]], [l_arr[order]], fs)
    # generate_drifting_recording applies amplitude factors in spike-vector order
    sv = sorting.to_spike_vector()
    lut = {(int(s), int(lab)): float(a) for s, lab, a in zip(s_arr, l_arr, a_arr, strict=True)}
    jitter = rng.normal(1.0, f.amplitude_std, sv.size)
    factor = np.array([lut[(int(s), int(u))] for s, u in zip(sv["sample_index"],
                                                              sv["unit_index"], strict=True)])
    return sorting, factor * jitter


def _motion(f: Family) -> dict[str, Any]:
    half = f.drift_um / 2 if f.drifting else 1.0
    mode, gradient, period = "zigzag", None, f.drift_period_s
    if f.drift == "nonrigid":
        gradient = 0.3
    elif f.drift == "step":
        mode = "bump"
    motion: dict[str, Any] = dict(drift_mode=mode, non_rigid_gradient=gradient,
                                  t_start_drift=min(f.drift_start_s, f.duration_s / 4),
                                  t_end_drift=None)
    if mode == "zigzag":
        motion["period_s"] = period
    else:
        motion["bump_interval_s"] = (f.duration_s / 6, f.duration_s / 3)
    return dict(displacement_sampling_frequency=5.0, drift_start_um=[0, half],
                drift_stop_um=[0, -half], drift_step_um=1, motion_list=[motion])


def _generate_stock(f: Family, seed: int) -> tuple[Any, Any]:
    """The outside check: SpikeInterface's stock generator at its defaults except size (and
    the probe of the drifting one, whose default needs the network)."""
    import spikeinterface.core as si
    from spikeinterface.generation import generate_drifting_recording

    if f.stock == "ground_truth":
        rec, gt = si.generate_ground_truth_recording(
            num_channels=f.num_channels, num_units=f.num_units, durations=[f.duration_s],
            seed=seed)
        return rec, gt
    if f.stock == "drifting":
        _, drifting, gt = generate_drifting_recording(
            num_units=f.num_units, duration=f.duration_s, probe=make_probe(f), seed=seed)
        return drifting, gt
    raise ValueError(f"{f.name}: unknown stock generator {f.stock!r}")


def generate(f: Family, seed: int) -> tuple[Any, Any]:
    """(recording in µV, ground-truth sorting) for family `f`, seed `seed` (deterministic)."""
    from spikeinterface.generation import generate_drifting_recording

    if f.stock:
        return _generate_stock(f, seed)
    probe = make_probe(f)
    rng = np.random.default_rng(seed + 104729)
    sorting, factor = _sorting(f, seed)
    unit_params: dict[str, Any] = dict(alpha=f.alpha, spatial_decay=f.spatial_decay,
                                       repolarization_ms=f.repolarization_ms)
    if f.template_mode == "ellipsoid":
        unit_params.update(ellipse_shrink=(0.4, 1.0), ellipse_angle=(0.0, 2 * np.pi))
    kw: dict[str, Any] = dict(
        probe=probe, sorting=sorting, duration=f.duration_s, sampling_frequency=30000.0,
        generate_displacement_vector_kwargs=_motion(f),
        generate_templates_kwargs=dict(ms_before=1.0, ms_after=3.0, mode=f.template_mode,
                                       spatial_profile=f.spatial_profile,
                                       unit_params=unit_params),
        generate_noise_kwargs=dict(noise_levels=tuple(f.noise_uV),
                                   spatial_decay=f.noise_spatial_decay),
        amplitude_std=f.amplitude_std if factor is None else None,
        amplitude_factor=factor, seed=seed)
    if f.probe == "tetrodes":
        kw["unit_locations"] = _unit_locations(f, probe, rng)
    else:
        kw["generate_unit_locations_kwargs"] = dict(
            margin_um=10.0, minimum_z=5.0, maximum_z=40.0, minimum_distance=f.min_distance_um,
            max_iteration=200, distance_strict=False)
    static, drifting, gt = generate_drifting_recording(**kw)
    return (drifting if f.drifting else static), gt


#: fields added after the first recordings were cached, with their defaults
_ADDED_FIELDS: dict[str, Any] = {"stock": ""}


def key(f: Family, seed: int) -> str:
    """Recording hash: the family's parameters, the seed and the generator's version."""
    import spikeinterface

    fam = asdict(f)
    for name, default in _ADDED_FIELDS.items():    # keys of the families before them unchanged
        if fam[name] == default:
            del fam[name]
    spec = json.dumps({"family": fam, "seed": seed, "si": spikeinterface.__version__,
                       "lsb_uV": LSB_UV, "v": 1}, sort_keys=True)
    return f"{f.name}-s{seed}-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"


@dataclass
class Materialised:
    family: Family
    seed: int
    key: str
    root: Path
    recording: Path
    sorting: Path


def materialise(f: Family, seed: int, cache: Path = CACHE) -> Materialised:
    """Saves the recording (int16, 0.195 µV/count) and its ground truth once; reused after."""
    import spikeinterface.core as si
    import spikeinterface.preprocessing as spre

    k = key(f, seed)
    root = cache / k
    m = Materialised(f, seed, k, root, root / "recording", root / "sorting")
    done = root / "done.json"
    if done.exists() and m.recording.exists() and m.sorting.exists():
        return m
    if root.exists():
        shutil.rmtree(root)
    log.info("generating %s (seed %d, %d ch, %.0f s)", f.name, seed, f.num_channels,
             f.duration_s)
    rec, gt = generate(f, seed)
    q = spre.scale(rec, gain=1.0 / LSB_UV, offset=0.0, dtype="int16")
    q.set_channel_gains(LSB_UV)
    q.set_channel_offsets(0.0)
    root.mkdir(parents=True, exist_ok=True)
    q.save(folder=m.recording, overwrite=True, n_jobs=1, chunk_duration="2s",
           progress_bar=False)
    si.NumpySorting.from_sorting(gt).save(folder=m.sorting, overwrite=True)
    done.write_text(json.dumps({"family": asdict(f), "seed": seed}, indent=1))
    return m
