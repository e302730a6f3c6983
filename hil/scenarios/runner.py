"""Runs HIL scenarios (data files: the chain to run and what to expect) and writes a JSON and a
Markdown report. ``python -m hil.scenarios [--only NAME] [--scale 0.25] [--out out/hil]``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil.chain import ChainSpec, run_chain
from hil.report import write_report

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def load_scenarios(folder: Path = HERE) -> list[dict[str, Any]]:
    """Scenario files in tcp/ (other uplinks keep their own folders and runners)."""
    return [json.loads(p.read_text()) for p in sorted((folder / "tcp").glob("*.json"))]


def check(exp: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """Failed expectations, as sentences."""
    bad: list[str] = []
    c = s["classes"]
    for name in exp.get("no_shed", []):
        if c[name]["shed"] or c[name]["delivered"] != c[name]["produced"]:
            bad.append(f"{name}: {c[name]['shed']} shed, {c[name]['delivered']} of "
                       f"{c[name]['produced']} delivered")
    for name in exp.get("delivered", []):
        if not c[name]["delivered"]:
            bad.append(f"{name}: nothing delivered")
    if exp.get("zero_unaccounted"):
        for name, row in c.items():
            if row["unaccounted"] or row["lost_packets"]:
                bad.append(f"{name}: {row['unaccounted']} unaccounted, "
                           f"{row['lost_packets']} packets lost in transit")
        if not s["final_report_seen"]:
            bad.append("the hub's final report never arrived")
    for name, reasons in exp.get("shed_reasons", {}).items():
        for r in reasons:
            if not s["shed_by_reason"].get(name, {}).get(r):
                bad.append(f"{name}: no {r} shedding reported")
    if "raw_outage_s" in exp:
        lo, hi = exp["raw_outage_s"]
        rng = s["shed_ranges"].get("raw", {}).get("SHED_OUTAGE", [])
        fs = (s.get("hub_telemetry") or {}).get("sampling_frequency") or 30000.0
        span = (max(e for _, e in rng) - min(f for f, _ in rng)) / fs if rng else 0.0
        if not lo <= span <= hi:
            bad.append(f"raw outage gap spans {span:.2f} s, expected {lo}–{hi} s")
    reasons_seen = {g["reason"] for g in s["gaps"]}
    for r in exp.get("gap_reasons", []):
        if r not in reasons_seen:
            bad.append(f"no gap reported with reason {r}")
    for k, v in exp.get("config", {}).items():
        got = ((s.get("hub_telemetry") or {}).get("config") or {}).get("pipeline", {}).get(k)
        if got != v:
            bad.append(f"config {k}={got!r} after the run, expected {v!r}")
    if "sessions" in exp and len(s["sessions"]) != exp["sessions"]:
        bad.append(f"{len(s['sessions'])} hub sessions, expected {exp['sessions']}")
    if exp.get("link_corrupt") and not (s.get("hub_telemetry") or {}).get("link_corrupt"):
        bad.append("no corrupt implant frames counted")
    return bad


def run_all(out: Path, only: list[str], scale: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for sc in load_scenarios():
        if only and sc["name"] not in only:
            continue
        chain = scaled_chain(sc["chain"], scale)
        chain["packets_out"] = True          # the report's figures read the packet log
        results[sc["name"]] = run_one(sc, chain, out)
    return results


def scaled_chain(chain: dict[str, Any], scale: float) -> dict[str, Any]:
    """The chain with its duration, kill time, link schedule and implant reboots scaled."""
    chain = json.loads(json.dumps(chain))
    chain["duration_s"] = max(6.0, chain["duration_s"] * scale)
    if "kill_hub_at" in chain and scale < 1:
        chain["kill_hub_at"] *= scale
    if "link_schedule" in chain and scale != 1:
        chain["link_schedule"] = ",".join(
            f"{float(t) * scale:g}:{a}" for t, a in
            (item.split(":", 1) for item in chain["link_schedule"].split(",")))
    fw = chain.get("implant_fw") or {}
    if fw.get("reboot_at_s") and scale != 1:
        fw["reboot_at_s"] = [max(2.0, t * scale) for t in fw["reboot_at_s"]]
    return chain


def run_one(sc: dict[str, Any], chain: dict[str, Any], out: Path, label: str = "",
            extra_check: Callable[[dict[str, Any]], list[str]] | None = None) -> dict[str, Any]:
    """Runs one scenario's chain and checks its expectations; a broken run is a failed result,
    never an exception (one scenario must not hide the others' results)."""
    print(f"== scenario {sc['name']} ({chain['duration_s']:.0f} s{label})", file=sys.stderr,
          flush=True)
    t0 = time.monotonic()
    try:
        s = run_chain(ChainSpec(label=sc["name"], **chain), out / sc["name"])
        failed = check(sc["expect"], s) + (extra_check(s) if extra_check else [])
    except Exception as e:  # reported as this scenario's failure
        traceback.print_exc()
        s, failed = {}, [f"{type(e).__name__}: {e}"]
    print(f"   {'PASS' if not failed else 'FAIL'} {'; '.join(failed)}", file=sys.stderr)
    return {"what": sc["what"], "chain": chain, "passed": not failed, "failed": failed,
            "seconds": round(time.monotonic() - t0, 1), "summary": s}


def markdown(results: dict[str, Any], title: str = "HIL report (TCP uplink)") -> str:
    """The report's Markdown without figures (hil.report writes the full report)."""
    from hil.report import markdown as md

    return md(results, title)


def cli(argv: list[str] | None, doc: str | None,
        run: Callable[[Path, list[str], float], dict[str, Any]], stem: str, title: str) -> int:
    """The command line both scenario sets share: --out/--only/--scale, then the report
    (``OUT/STEM.{json,md,html}`` with figures, hil.report); exit 1 if a scenario failed."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "out" / "hil")
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--scale", type=float, default=1.0, help="scale durations (CI: 0.25)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(args.out, args.only, args.scale)
    md = write_report(results, args.out, stem, title)
    print(md)
    print(f"report: {args.out / stem}.{{json,md,html}}", file=sys.stderr)
    return 0 if all(r["passed"] for r in results.values()) else 1


def main(argv: list[str] | None = None) -> int:
    return cli(argv, __doc__, run_all, "report", "HIL report (TCP uplink)")
