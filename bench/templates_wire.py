"""Calibrated sorting with the templates loaded over the link against the same templates file.

For each (family, seed) of the generalisation harness (cached recordings and calibration
sorts), the calibrated hub run three ways, whole recording, scored against ground truth:

- ``file``: the templates file as the harness (and ``hubctl sort --templates``) loads it;
- ``link``: the same set sent as ``LoadTemplates`` commands (host_tools.templates_wire), taken
  apart and checked by the hub's control plane (hub.daemon.control) and loaded the daemon's way
  (``Templates.template_set``), i.e. what ``hubctl record --templates`` gives;
- ``link_before``: what the message carried before (templates and unit ids only: no noise σ,
  no basis), loaded the same way.

    python -m bench.templates_wire [--family linear16 ...] [--seeds 0 1] [--out FILE]

Prints progress on stderr and writes JSON (out/templates_wire.json by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import sorting_eval as se
from bench import sorting_families as sf
from hub.daemon.control import Control, Templates
from hub.dsp.sorting import TemplateSet
from hub.wire import pb

OUT = Path("out/templates_wire.json")


class _Taker:
    """The control plane's view of a hub that sorts: it keeps the set it is handed."""

    def __init__(self, n_channels: int, fs: float) -> None:
        from hub.daemon.config_store import HubConfig

        self._n, self._fs = n_channels, fs
        self.config = HubConfig(pipeline=se.pipeline_config())
        self.taken: list[Templates] = []

    @property
    def sampling_frequency(self) -> float:
        return self._fs

    @property
    def n_channels(self) -> int:
        return self._n

    async def apply_config(self, cfg: Any) -> None:
        raise NotImplementedError

    async def set_running(self, running: bool) -> None:
        raise NotImplementedError

    async def load_templates(self, templates: Templates) -> None:
        self.taken.append(templates)

    def status(self) -> pb.Telemetry:
        return pb.Telemetry()

    def time_sync(self, host_time_ns: int) -> pb.TimeSync:
        return pb.TimeSync()


def over_the_link(ts: TemplateSet, strip: bool = False) -> tuple[TemplateSet, dict[str, Any]]:
    """``ts`` after the trip through LoadTemplates and the hub's control plane (``strip``:
    only the fields the message had before: templates and unit ids)."""
    from host_tools.templates_wire import load_templates_commands

    cmds = load_templates_commands(ts)
    if strip:
        for c in cmds:
            lt = c.load_templates
            for f in ("noise", "basis", "n_features", "pre", "sampling_frequency"):
                lt.ClearField(f)
    hub = _Taker(ts.n_channels, ts.sampling_frequency)
    ctl = Control(hub)  # type: ignore[arg-type]

    async def send() -> list[pb.CommandResult]:
        return [await ctl.handle(c.SerializeToString()) for c in cmds]

    res = asyncio.run(send())
    bad = [r.message for r in res if r.code != pb.RESULT_OK]
    if bad or len(hub.taken) != 1:
        raise RuntimeError(f"the hub refused the set: {bad}")
    p = hub.config.pipeline
    out = hub.taken[0].template_set(ts.n_channels, ts.sampling_frequency, p.snippet_pre)
    return out, {"parts": len(cmds), "bytes": sum(c.ByteSize() for c in cmds)}


def one(fam: sf.Family, seed: int) -> dict[str, Any]:
    m = sf.materialise(fam, seed)
    snrs = se.snr(m)
    ts, info = se.calibrate(m, se.calibration_seconds(fam))
    if ts is None:
        return {"family": fam.name, "seed": seed, "error": str(info)}
    out: dict[str, Any] = {"family": fam.name, "seed": seed, "units": int(ts.unit_ids.size),
                           "channels": ts.n_channels}
    link, wire = over_the_link(ts)
    before, _ = over_the_link(ts, strip=True)
    out.update(wire)
    out["link_set_identical"] = all(np.array_equal(getattr(link, f), getattr(ts, f))
                                    for f in ("templates", "unit_ids", "basis", "noise"))
    sortings = {}
    for name, s in (("file", ts), ("link", link), ("link_before", before)):
        t = time.perf_counter()
        sorting, _ = se.hub_sort(m, s)
        sortings[name] = sorting
        sc = se.score_run(m, sorting, snrs)
        out[name] = {k: sc[k] for k in ("median_accuracy", "well_detected", "units_found",
                                        "false_positive_units", "redundant_units")}
        print(f"  {fam.name} s{seed} {name}: {out[name]} ({time.perf_counter() - t:.0f} s)",
              file=sys.stderr, flush=True)
    a, b = sortings["file"], sortings["link"]
    out["link_sort_identical"] = list(a.unit_ids) == list(b.unit_ids) and all(
        np.array_equal(a.get_unit_spike_train(u), b.get_unit_spike_train(u))
        for u in a.unit_ids)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--family", action="append", default=[])
    p.add_argument("--seeds", type=int, nargs="+", default=list(sf.TUNE_SEEDS[:2]))
    p.add_argument("--full", action="store_true", help="full durations (default: --quick's)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    se.CACHED_ONLY = True
    fams = [sf.family(n) for n in (args.family or ["linear16", "noisy_bursts32"])]
    if not args.full:
        fams = [sf.quick(f) for f in fams]
    rows = []
    for f in fams:
        for s in args.seeds:
            print(f"{f.name} seed {s} …", file=sys.stderr, flush=True)
            rows.append(one(f, s))
    res = {"seeds": args.seeds, "quick": not args.full, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
