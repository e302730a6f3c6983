"""``hub replay RECORDING [--json SUMMARY.json] [--events-out EVENTS.npz]``.

Streams: memory stays bounded whatever the recording's length (hub.dsp.replay). The reference
defaults to ``auto`` (none for fewer than 8 channels or a stack of separate WAVs; the pipeline's
default, robust, otherwise); an explicit ``--reference robust`` (or median) there is honoured
with a warning."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hub.dsp.pipeline import PipelineConfig
from hub.dsp.replay import EventsFile, choose_reference, replay
from hub.sources import open_recording


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", type=Path,
                   help="WAV, folder of WAVs, NAME.bin (+NAME.json) or SpikeInterface folder")
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--events-out", type=Path, help="write every detected spike here (.npz)")
    p.add_argument("--block-ms", type=float, default=PipelineConfig.block_ms)
    p.add_argument("--threshold", type=float, default=PipelineConfig.threshold)
    p.add_argument("--reference", default="auto",
                   choices=["auto", "robust", "median", "average", "none"],
                   help="common reference (auto: the pipeline's robust reference when it is safe, "
                        "else none)")
    p.add_argument("--sort", action="store_true",
                   help="run the online sorter; the events file's `unit` carries its labels")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    rec = open_recording(args.recording)
    reference, why = choose_reference(rec, args.reference)
    cfg = PipelineConfig(block_ms=args.block_ms, threshold=args.threshold,
                         reference=reference, sort=args.sort)
    if not args.quiet:
        print(f"reference: {why}", file=sys.stderr)
    events = EventsFile(args.events_out, rec.sampling_frequency) if args.events_out else None
    try:
        res = replay(rec, cfg, progress=None if args.quiet else sys.stderr,
                     sink=events if events is not None else (lambda _ev: None))
    finally:
        if events is not None:
            events.close()
    s = res.summary
    s["reference_choice"] = why
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(s, indent=1))
    print(format_summary(s))
    return 0


def format_summary(s: dict[str, object]) -> str:
    import numpy as np

    noise = np.asarray(s["noise_uV_per_channel"], dtype=float)
    spikes = np.asarray(s["spikes_per_channel"], dtype=float)
    return "\n".join([
        f"recording      {s['recording']}",
        f"channels       {s['channels']} at {s['sampling_frequency_hz']:.0f} Hz, "
        f"{s['duration_s']:.2f} s",
        f"throughput     {s['msamples_per_s']:.1f} M samples/s "
        f"({s['realtime_factor']:.1f}× real time, {s['wall_seconds']:.2f} s wall)",
        f"spikes         {s['spikes_total']} total; per channel median {np.median(spikes):.0f}, "
        f"min {spikes.min():.0f}, max {spikes.max():.0f}",
        f"noise (σ)      per channel median {np.median(noise):.2f}, min {noise.min():.2f}, "
        f"max {noise.max():.2f} (µV, or counts where no gain is known)",
        f"reference      {s['reference']}",
        f"snippets       {s['snippets']} ({s['snippets_dropped']} dropped); "
        f"feature bins {s['feature_bins']}",
    ])
