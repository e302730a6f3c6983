"""Seeded ground-truth recordings from SpikeInterface's generators, saved as binary folders.

Settings are named so that tests, benchmarks and evaluations share them:
  easy — 32 ch, 30 kHz, 120 s, 20 units (the detection and sorting targets);
  hard — 32 ch, 30 kHz, 120 s, 40 units, lower amplitudes, more firing, slow drift;
  tiny — 16 ch, 30 kHz, 20 s, 8 units (unit tests).
Recordings are float32 µV; the hub quantises them at 0.195 µV per count like an Intan front end.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GTSetting:
    name: str
    num_channels: int
    duration_s: float
    num_units: int
    seed: int
    noise_uV: float = 5.0
    amplitude_uV: tuple[float, float] = (50.0, 150.0)
    firing_rates_hz: tuple[float, float] = (2.0, 10.0)
    drift_um: float = 0.0
    sampling_frequency: float = 30000.0


SETTINGS = {
    "tiny": GTSetting("tiny", 16, 20.0, 8, seed=7),
    "easy": GTSetting("easy", 32, 120.0, 20, seed=42),
    "hard": GTSetting("hard", 32, 120.0, 40, seed=43, amplitude_uV=(25.0, 90.0),
                      firing_rates_hz=(5.0, 20.0), drift_um=20.0),
}


def generate(setting: GTSetting) -> tuple[Any, Any]:
    """(recording, sorting) — SpikeInterface objects, deterministic for the setting's seed."""
    import numpy as np
    import spikeinterface.core as si

    rng = np.random.default_rng(setting.seed)
    lo, hi = setting.firing_rates_hz
    rates = rng.uniform(lo, hi, setting.num_units)
    if setting.drift_um > 0:
        from spikeinterface.generation import generate_drifting_recording

        _, rec, sorting = generate_drifting_recording(
            num_units=setting.num_units, duration=setting.duration_s,
            sampling_frequency=setting.sampling_frequency,
            probe_name=None, generate_probe_kwargs=dict(
                num_columns=2, num_contact_per_column=setting.num_channels // 2,
                xpitch=20, ypitch=20, contact_shapes="circle", contact_shape_params={"radius": 6}),
            generate_unit_locations_kwargs=dict(margin_um=10.0, minimum_z=5.0, maximum_z=40.0,
                                                minimum_distance=18.0, max_iteration=100),
            generate_displacement_vector_kwargs=dict(
                displacement_sampling_frequency=5.0, drift_start_um=[0, setting.drift_um],
                drift_stop_um=[0, -setting.drift_um], drift_step_um=1,
                motion_list=[dict(drift_mode="zigzag", non_rigid_gradient=None,
                                  t_start_drift=10.0, t_end_drift=None, period_s=100.0)]),
            generate_templates_kwargs=dict(
                # ms_after must exceed repolarisation + recovery (≤ 0.8 + 1.5 ms by default)
                ms_before=1.0, ms_after=3.0, mode="ellipsoid",
                unit_params=dict(alpha=(setting.amplitude_uV[0] * 1.5,
                                        setting.amplitude_uV[1] * 1.5))),
            generate_sorting_kwargs=dict(firing_rates=(lo, hi), refractory_period_ms=4.0),
            generate_noise_kwargs=dict(noise_levels=(setting.noise_uV, setting.noise_uV),
                                       spatial_decay=25.0),
            seed=setting.seed)
        return rec, sorting
    rec, sorting = si.generate_ground_truth_recording(
        durations=[setting.duration_s], sampling_frequency=setting.sampling_frequency,
        num_channels=setting.num_channels, num_units=setting.num_units,
        generate_sorting_kwargs=dict(firing_rates=rates, refractory_period_ms=4.0),
        generate_unit_locations_kwargs=dict(margin_um=10.0, minimum_z=5.0, maximum_z=40.0,
                                            minimum_distance=18.0, max_iteration=100),
        generate_templates_kwargs=dict(
            unit_params=dict(alpha=(setting.amplitude_uV[0] * 1.5,
                                    setting.amplitude_uV[1] * 1.5))),
        noise_kwargs=dict(noise_levels=setting.noise_uV, strategy="on_the_fly"),
        seed=setting.seed)
    return rec, sorting


def materialise(name: str, cache: Path = Path("out/gt")) -> tuple[Path, Path]:
    """Saves setting `name` once: (recording folder, sorting folder). Reused when it exists."""
    import spikeinterface.core as si

    setting = SETTINGS[name]
    root = cache / name
    rec_dir, sort_dir, stamp = root / "recording", root / "sorting", root / "setting.json"
    want = json.dumps(asdict(setting), sort_keys=True)
    if stamp.exists() and stamp.read_text() == want and rec_dir.exists() and sort_dir.exists():
        return rec_dir, sort_dir
    log.info("generating ground-truth recording %r (seed %d)", name, setting.seed)
    rec, sorting = generate(setting)
    root.mkdir(parents=True, exist_ok=True)
    rec.save(folder=rec_dir, overwrite=True, n_jobs=1, progress_bar=False)
    si.NumpySorting.from_sorting(sorting).save(folder=sort_dir, overwrite=True)
    stamp.write_text(want)
    return rec_dir, sort_dir
