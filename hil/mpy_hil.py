"""``make hil-mpy``: the chain with the MicroPython implant firmware on the unix port.

    python -m hil.mpy_hil [--seconds 20] [--only NAME] [--scale 1] [--long] [--out out/hil]

First the summary run — ``gen:32:30000`` (the firmware's generative mode, 32 channels at
30 kHz), compiled with ``mpy-cross``, run by the real ``micropython`` → ``hub run`` → TCP
uplink → ``hubctl record`` — written to ``OUT/mpy_summary.json`` in ``out/summary.json``'s
shape (per-class accounting, latency, link) plus ``"implant_runtime": "micropython"`` and the
time-sync check against the firmware's own clock. Then the scenarios in
``hil/scenarios/mpy/*.json`` (clock error, reboot, replay with faults; ``--long`` adds the
10-minute time-sync sessions): ``OUT/mpy_report.{json,md,html}`` with figures.
``--only summary`` runs the summary alone (CI).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hil.chain import ChainSpec, run_chain
from hil.clock_truth import evaluate, read_packets
from hil.demo import format_summary, make_summary
from hil.mpy_runtime import read_log
from hil.report import write_report
from hil.scenarios.runner import run_one, scaled_chain
from hub.dsp.pipeline import PipelineConfig

HERE = Path(__file__).resolve().parent / "scenarios" / "mpy"
REPO = HERE.parent.parent.parent


def time_sync_check(s: dict[str, Any]) -> dict[str, Any] | None:
    """The host's time sync re-enacted from the packet log, judged by the firmware's truth
    (the first clock epoch), plus the number of epochs the firmware went through."""
    log_path = (s.get("implant") or {}).get("log")
    if not log_path:
        return None
    folder = Path(log_path).parent
    lines = read_log(Path(log_path))
    if not (folder / "packets.bin").exists() or not lines:
        return None
    ev = evaluate(read_packets(folder / "packets.bin"), lines)
    ev["clock_epochs"] = sum(1 for x in lines if x.get("ev") == "boot")
    return ev


def mpy_check(exp: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """The MicroPython expectations (beside the runner's own); stores the time-sync check in
    the summary (``s["time_sync_check"]``)."""
    bad = []
    if (s.get("implant") or {}).get("implant_runtime") != "micropython":
        bad.append("the implant did not run on MicroPython")
    ev = time_sync_check(s)
    s["time_sync_check"] = ev
    if ev is None:
        return [*bad, "no firmware log or packet log to judge time sync by"]
    lim = exp.get("drift_within_ppm")
    if lim is not None:
        err = ev["max_abs_ppm_error_after_60s"]
        if err is None:             # a short (scaled) run: judge the last fit
            err = abs((ev["fitted_ppm_end"] or 0.0) - (ev["true_ppm_end"] or 0.0))
        if err > lim:
            bad.append(f"drift fit off by {err:.1f} ppm (limit ±{lim})")
    lim = exp.get("timestamp_p99_ms")
    p99 = ev["timestamp_error_ms"]["p99"]
    if lim is not None and (p99 is None or p99 > lim):
        bad.append(f"spike timestamp error p99 {p99} ms (limit {lim} ms)")
    if ev["resets"] < exp.get("fit_resets_min", 0):
        bad.append(f"the time-sync fit restarted {ev['resets']} times, expected ≥ "
                   f"{exp['fit_resets_min']}")
    if "clock_epochs" in exp and ev["clock_epochs"] != exp["clock_epochs"]:
        bad.append(f"{ev['clock_epochs']} implant clock epochs, expected {exp['clock_epochs']}")
    return bad


def summary_run(out: Path, seconds: float) -> dict[str, Any]:
    """The MicroPython counterpart of ``make run``'s summary."""
    spec = ChainSpec(recording="gen:32:30000", duration_s=seconds, label="mpy",
                     implant_runtime="micropython", packets_out=True,
                     implant_fw={"clock_ppm": 25, "wander_ppm": 0.3})
    print(f"== MicroPython implant chain, {seconds:.0f} s", file=sys.stderr, flush=True)
    s = run_chain(spec, out / "mpy_chain")
    m = make_summary(s, spec, PipelineConfig())
    m["implant_runtime"] = s["implant"].get("implant_runtime")
    m["time_sync_check"] = time_sync_check(s)
    if m["time_sync_check"]:
        m["time_sync_check"].pop("track", None)
    m["firmware"] = {k: s["implant"].get(k) for k in
                     ("micropython", "mpy_abi", "busy_us", "frames", "sent", "overruns",
                      "max_late_us", "spikes")}
    (out / "mpy_summary.json").write_text(json.dumps(m, indent=1))
    print(format_summary(m))
    return m


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "out" / "hil")
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--seconds", type=float, default=20.0, help="summary run length")
    p.add_argument("--scale", type=float, default=1.0, help="scale scenario durations")
    p.add_argument("--long", action="store_true", help="add the 10-minute time-sync sessions")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ok = True
    if not args.only or "summary" in args.only:
        m = summary_run(args.out, args.seconds)
        ok = m["unaccounted_total"] == 0 and m["final_report_seen"] and \
            m["implant_runtime"] == "micropython"
    results: dict[str, Any] = {}
    for path in sorted(HERE.glob("*.json")):
        sc = json.loads(path.read_text())
        if args.only and sc["name"] not in args.only:
            continue
        if sc.get("long") and not (args.long or sc["name"] in args.only):
            continue
        chain = scaled_chain(sc["chain"], args.scale)
        chain["packets_out"] = True

        def extra(s: dict[str, Any], exp: dict[str, Any] = sc["expect"]) -> list[str]:
            return mpy_check(exp, s)

        results[sc["name"]] = run_one(sc, chain, args.out, ", MicroPython implant", extra)
    if results:
        write_report(results, args.out, "mpy_report", "HIL report (MicroPython implant)")
    return 0 if ok and all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
