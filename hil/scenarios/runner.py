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
        chain = dict(sc["chain"])
        chain["duration_s"] = max(6.0, chain["duration_s"] * scale)
        for k in ("kill_hub_at",):
            if k in chain:
                chain[k] = chain[k] * scale if scale < 1 else chain[k]
        if "link_schedule" in chain and scale != 1:
            chain["link_schedule"] = ",".join(
                f"{float(t) * scale:g}:{a}" for t, a in
                (item.split(":", 1) for item in chain["link_schedule"].split(",")))
        results[sc["name"]] = run_one(sc, chain, out)
    return results


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
    lines = [f"# {title}", ""]
    for name, r in results.items():
        s = r["summary"]
        lines += [f"## {name} — {'PASS' if r['passed'] else 'FAIL'}", "", r["what"], ""]
        if r["failed"]:
            lines += [f"- FAILED: {f}" for f in r["failed"]] + [""]
        if not s:
            continue
        lines += ["| class | produced | delivered | shed | unaccounted |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        for k, v in s["classes"].items():
            lines.append(f"| {k} | {v['produced']} | {v['delivered']} | {v['shed']} | "
                         f"{v['unaccounted']} |")
        lat = s["latency_ms"]["events"]
        tel = s.get("hub_telemetry") or {}
        lines += ["", f"- event latency sample→host decode: p50 {lat['p50']} ms, "
                      f"p99 {lat['p99']} ms (n={lat['n']})",
                  f"- link throughput {s['link']['throughput_bps'] / 1e6:.3f} Mbit/s; "
                  f"hub CPU {100 * s['hub_cpu_core_fraction']:.1f} % of one core",
                  f"- shed by reason: {json.dumps(s['shed_by_reason'])}",
                  f"- gaps: {json.dumps(s['gaps'][:4])}",
                  f"- implant link: {tel.get('link_frames')} frames, "
                  f"{tel.get('link_corrupt')} corrupt, {tel.get('link_missing_frames')} missing",
                  ""]
    return "\n".join(lines)


def cli(argv: list[str] | None, doc: str | None,
        run: Callable[[Path, list[str], float], dict[str, Any]], stem: str, title: str) -> int:
    """The command line both scenario sets share: --out/--only/--scale, then the JSON and
    Markdown report (``OUT/STEM.json``, ``OUT/STEM.md``); exit 1 if a scenario failed."""
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "out" / "hil")
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--scale", type=float, default=1.0, help="scale durations (CI: 0.25)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(args.out, args.only, args.scale)
    md = markdown(results, title)
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    (args.out / f"{stem}.md").write_text(md)
    print(md)
    print(f"report: {args.out / (stem + '.json')}, {args.out / (stem + '.md')}", file=sys.stderr)
    return 0 if all(r["passed"] for r in results.values()) else 1


def main(argv: list[str] | None = None) -> int:
    return cli(argv, __doc__, run_all, "report", "HIL report (TCP uplink)")
