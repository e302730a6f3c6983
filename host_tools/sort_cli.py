"""``hubctl sort RECORDING_DIR OUT_DIR [--templates FILE]``: the hub's online sorter, run causally
block by block over a recording exactly as the hub runs it, written as a SpikeInterface sorting
folder (``sorting.save(folder=OUT_DIR)``).

Spike times are the hub's peak samples. Labels are the ones the hub gave each spike in the block
that completed its snippet, with the LABEL (a new unit's founding spikes) and MERGE events the
hub reported later applied; ``--online-labels`` keeps the labels exactly as first sent. Spikes the
hub left unsorted (unit −1) are not in the sorting.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

from hub.dsp.pipeline import PipelineConfig
from hub.dsp.replay import choose_reference
from hub.dsp.sorting import SortResult, TemplateSet, sort_recording
from hub.sources import open_recording

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", type=Path, help="SpikeInterface binary folder (or any recording "
                   "`hub replay` reads)")
    p.add_argument("out_dir", type=Path, help="SpikeInterface sorting folder to write")
    p.add_argument("--templates", type=Path, help="templates file from `hubctl calibrate`")
    p.add_argument("--block-ms", type=float, default=PipelineConfig.block_ms)
    p.add_argument("--threshold", type=float, default=PipelineConfig.threshold)
    p.add_argument("--reference", default="auto",
                   choices=["auto", "robust", "median", "average", "none"],
                   help="common reference (auto: robust when safe, else none; hub.dsp.replay)")
    p.add_argument("--online-labels", action="store_true",
                   help="labels as first sent, without applying later merges")
    p.add_argument("--json", type=Path, help="write sorter statistics and unit events here")


def write_sorting(res: SortResult, fs: float, out_dir: Path, online_labels: bool = False) -> int:
    """Saves the sorted spikes as a SpikeInterface NumpySorting folder; returns the unit count."""
    import spikeinterface.core as si

    units = res.units if online_labels else res.final_units
    keep = units >= 0
    samples, labels = res.samples[keep], units[keep]
    order = np.argsort(samples, kind="stable")
    sorting = si.NumpySorting.from_samples_and_labels([samples[order]], [labels[order]], fs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The extractor is not serializable")
        sorting.save(folder=out_dir, overwrite=True)
    return int(np.unique(labels).size)


def run(args: argparse.Namespace) -> int:
    rec = open_recording(args.recording)
    templates = TemplateSet.load(args.templates) if args.templates else None
    reference, why = choose_reference(rec, args.reference)
    log.info("%s", why)
    cfg = PipelineConfig(block_ms=args.block_ms, threshold=args.threshold, reference=reference,
                         sort=True)
    res = sort_recording(rec, cfg, templates)
    n_units = write_sorting(res, rec.sampling_frequency, args.out_dir, args.online_labels)
    s = res.stats
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        events = [{k: int(e[k]) for k in ("sample", "kind", "unit", "other", "channel")}
                  for e in res.sort_events]
        args.json.write_text(json.dumps({"stats": s, "unit_events": events}, indent=1))
    sorted_n = int((res.final_units >= 0).sum())
    for bad in s.get("unfit_units", []):
        print(f"calibrated unit {bad['unit']} does not fit the signal: {bad['reason']}",
              file=sys.stderr)
    if s.get("motion_jumps"):
        print(f"calibrated templates did not fit where the motion estimate had put them: "
              f"re-anchored {s['motion_jumps']} times (final motion {s['motion_um']:.1f} µm)",
              file=sys.stderr)
    print(f"sorted {sorted_n} of {res.samples.size} spikes into {n_units} units "
          f"({'calibrated' if templates else 'cold start'}); births {s['births']}, "
          f"merges {s['merges']}, retirements {s['retirements']}; "
          f"{rec.num_channels * rec.num_samples / s['wall_seconds'] / 1e6:.1f} M samples/s "
          f"→ {args.out_dir}", file=sys.stdout)
    return 0
