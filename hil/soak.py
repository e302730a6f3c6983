"""``make hil-soak``: a long session (≥ 30 min) with the MicroPython implant, faults on both
links, and the memory of every process of the chain sampled throughout.

    python -m hil.soak [--minutes 30] [--interval 10] [--out out/hil]

The chain: MicroPython implant (32 ch × 30 kHz, +40 ppm with wander, 0.1 % dropped and
corrupted frames, junk, send jitter, a 300 ms stall every 47 s, a reboot every 10 min) →
``hub run`` → TCP uplink at 1.3 Mbit/s with a 5 s outage every 5 min → ``hubctl record``.
Every ``--interval`` seconds the resident memory (VmRSS) of each process and of its children
(the MicroPython unix port under its launcher) is read from /proc. The report
(``OUT/soak_report.{json,md,html}``) gives per process the memory after warm-up, at the end,
the growth and its linear trend (MB/h), with a plot; the target is bounded memory — a trend
above 2 MB/h, or growth above 20 % of the warm memory, is flagged. The chain's own accounting
and figures follow (hil.report).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from hil.chain import Chain, ChainSpec
from hil.mpy_hil import mpy_check
from hil.report import write_report

REPO = Path(__file__).resolve().parent.parent
WARMUP_S = 120.0
MAX_TREND_MB_H = 2.0
MAX_GROWTH = 0.20


def _rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    out = []
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (t / "children").read_text().split()]
    except OSError:
        pass
    return out


def _name(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return str(pid)
    words = [a.decode(errors="replace") for a in args if a]
    if "-m" in words:
        i = words.index("-m")
        return " ".join(words[i + 1:i + 3]) if words[i + 1] == "hub" else words[i + 1]
    return Path(words[0]).name if words else str(pid)


class MemorySampler:
    """Samples VmRSS of the chain's processes and their descendants in a thread."""

    def __init__(self, chain: Chain, interval: float) -> None:
        self.chain, self.interval = chain, interval
        self.series: dict[str, list[tuple[float, float]]] = {}    # "name pid" → (s, MB)
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            t = time.monotonic() - self.t0
            pids = [p.pid for p in self.chain.procs if p.poll() is None]
            seen: set[int] = set()
            while pids:
                pid = pids.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                pids += _children(pid)
                kb = _rss_kb(pid)
                if kb is not None:
                    self.series.setdefault(f"{_name(pid)} [{pid}]", []).append((t, kb / 1024))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(5)


def memory_table(series: dict[str, list[tuple[float, float]]],
                 warmup_s: float = WARMUP_S) -> list[dict[str, Any]]:
    """Per process: warm memory, end memory, growth, trend; flags unbounded growth."""
    rows = []
    for name, pts in sorted(series.items()):
        a = np.array(pts)
        warm = a[a[:, 0] >= warmup_s]
        if len(warm) < 3:
            rows.append({"process": name, "samples": len(a), "note": "too short-lived to judge",
                         "peak_mb": round(float(a[:, 1].max()), 1)})
            continue
        n = max(1, len(warm) // 10)
        start, end = float(np.median(warm[:n, 1])), float(np.median(warm[-n:, 1]))
        trend = float(np.polyfit(warm[:, 0] / 3600, warm[:, 1], 1)[0])
        growth = end - start
        rows.append({"process": name, "samples": len(a), "warm_mb": round(start, 1),
                     "end_mb": round(end, 1), "growth_mb": round(growth, 1),
                     "trend_mb_per_h": round(trend, 2), "peak_mb": round(float(a[:, 1].max()), 1),
                     "span_min": round(float(warm[-1, 0] - warm[0, 0]) / 60, 1),
                     "bounded": trend <= MAX_TREND_MB_H or growth <= MAX_GROWTH * start})
    return rows


def plot_memory(series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for name, pts in sorted(series.items()):
        a = np.array(pts)
        ax.plot(a[:, 0] / 60, a[:, 1], label=name)
    ax.axvline(WARMUP_S / 60, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="minutes", ylabel="RSS (MB)", title="memory of every process")
    ax.legend(fontsize=6, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--interval", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=REPO / "out" / "hil")
    args = p.parse_args(argv)
    secs = args.minutes * 60
    outages = ",".join(f"{t}:outage=5" for t in range(300, int(secs), 300))
    fw = {"clock_ppm": 40, "wander_ppm": 0.5, "jitter_us": 1000, "stall_every_s": 47,
          "stall_ms": 300, "reboot_at_s": list(range(600, int(secs), 600)),
          "stats_every_s": 60}
    chain = {"recording": "gen:32:30000", "duration_s": secs, "rate_bps": 1.3e6,
             "link_schedule": outages, "implant_runtime": "micropython", "implant_fw": fw,
             "drop": 0.001, "corrupt": 0.001, "garbage": 0.001, "packets_out": True}
    what = (f"{args.minutes:g}-minute soak: MicroPython implant with clock error, faults, "
            "stalls and a reboot every 10 min; uplink outages every 5 min; memory of every "
            "process sampled")
    sc: dict[str, Any] = {"name": "soak", "what": what, "expect": {"zero_unaccounted": True}}
    print(f"== soak for {args.minutes:g} min (memory every {args.interval:g} s)",
          file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with Chain(ChainSpec(label="soak", **chain), args.out / "soak") as ch:
        mem = MemorySampler(ch, args.interval)
        mem.start()
        try:
            s = ch.run()
            failed: list[str] = []
        except Exception as e:  # reported as the soak's failure
            s, failed = {}, [f"{type(e).__name__}: {e}"]
        mem.stop()
    from hil.scenarios.runner import check

    if s:
        failed += check(sc["expect"], s) + [f for f in mpy_check({}, s)
                                            if "time sync" not in f]
    warmup = min(WARMUP_S, 0.2 * secs)
    rows = memory_table(mem.series, warmup)
    unbounded = [r["process"] for r in rows if r.get("bounded") is False]
    failed += [f"memory of {n} keeps growing" for n in unbounded]
    fig_dir = args.out / "soak_report_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    plot_memory(mem.series, fig_dir / "memory.png")
    result = {"soak": {"what": sc["what"], "chain": chain, "passed": not failed,
                       "failed": failed, "seconds": round(time.monotonic() - t0, 1),
                       "summary": s}}
    md = write_report(result, args.out, "soak_report", f"Soak ({args.minutes:g} min)")
    cols = ["process", "warm_mb", "end_mb", "growth_mb", "trend_mb_per_h", "peak_mb",
            "span_min", "bounded"]
    mem_md = ["", "## Memory of every process", "",
              f"After a {warmup:.0f} s warm-up; bounded: trend ≤ {MAX_TREND_MB_H} MB/h or "
              f"growth ≤ {100 * MAX_GROWTH:.0f} % (processes restarted by a reboot appear "
              "with their new pid).", "", "| " + " | ".join(cols) + " |",
              "|" + " --- |" * len(cols)]
    mem_md += ["| " + " | ".join(str(r.get(c, r.get("note", ""))) for c in cols) + " |"
               for r in rows]
    mem_md += ["", "![memory](soak_report_figures/memory.png)", ""]
    md = md + "\n".join(mem_md)
    from hil.report import to_html

    (args.out / "soak_report.md").write_text(md)
    (args.out / "soak_report.html").write_text(to_html(md, "Soak"))
    data = json.loads((args.out / "soak_report.json").read_text())
    data["memory"] = {"rows": rows, "series": mem.series}
    (args.out / "soak_report.json").write_text(json.dumps(data, indent=1))
    print(md)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
