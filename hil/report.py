"""HIL reports: per scenario a verdict, every figure checked against its design target, complete
tables (a long one says how much is shown: "209 gaps, first 10 shown") and four PNG figures —
link throughput over time, the latency distribution, shed items by class, gaps over time (and,
with the MicroPython implant, the drift fit against the firmware's true clock). Written as
JSON, Markdown and a self-contained HTML page (``write_report``).

The figures read the scenario's summary and, where the chain kept one, the receiver's packet
log (``packets.bin``: the hub's telemetry over time and every shed range, unabridged).
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
SHOWN = 10                     # rows of a long table shown in the report

#: (label, how to read it from a summary, target, "max"|"min"): design targets (DESIGN §9)
TARGETS: list[tuple[str, str, float, str]] = [
    ("event latency p99 (ms)", "latency_events_p99", 30.0, "max"),
    ("hub CPU (% of one core)", "hub_cpu_pct", 50.0, "max"),
    ("link use when data waits (% of cap)", "link_use_pct", 90.0, "min"),
    ("drift fit error after 60 s (ppm)", "drift_error_ppm", 5.0, "max"),
    ("spike timestamp error p99 (ms)", "timestamp_p99_ms", 1.0, "max"),
]


def figures_of(s: dict[str, Any], chain: dict[str, Any]) -> dict[str, float]:
    """The figures a target applies to (those this scenario has)."""
    out: dict[str, float] = {}
    p99 = ((s.get("latency_ms") or {}).get("events") or {}).get("p99")
    if p99 is not None:
        out["latency_events_p99"] = float(p99)
    cpu = s.get("hub_cpu_core_fraction")
    if cpu is not None and cpu == cpu:
        out["hub_cpu_pct"] = 100 * float(cpu)
    cap = chain.get("rate_bps")
    budget_shed = (s.get("shed_by_reason") or {}).get("raw", {}).get("SHED_BUDGET")
    if (cap and budget_shed and chain.get("uplink", "tcp") == "tcp"
            and not chain.get("link_schedule")):
        out["link_use_pct"] = 100 * s["link"]["throughput_bps"] / float(cap)
    ts = s.get("time_sync_check") or {}
    if ts.get("max_abs_ppm_error_after_60s") is not None:
        out["drift_error_ppm"] = float(ts["max_abs_ppm_error_after_60s"])
    if (ts.get("timestamp_error_ms") or {}).get("p99") is not None:
        out["timestamp_p99_ms"] = float(ts["timestamp_error_ms"]["p99"])
    return out


def misses(s: dict[str, Any], chain: dict[str, Any]) -> list[str]:
    """Figures that miss their design target, as sentences."""
    fig, out = figures_of(s, chain), []
    for label, key, target, kind in TARGETS:
        v = fig.get(key)
        if v is not None and (v > target if kind == "max" else v < target):
            out.append(f"{label} {v:.3g} (target {'<' if kind == 'max' else '≥'} {target:g})")
    return out


# ---------------------------------------------------------------- data from the packet log
def packet_series(folder: Path) -> dict[str, Any]:
    """Hub telemetry over time and every shed range, from ``packets.bin`` (if any)."""
    path = folder / "packets.bin"
    if not path.exists():
        return {}
    from hil.clock_truth import read_packets

    tel: list[tuple[int, int, float, float]] = []
    ranges: list[tuple[int, int, int, int, int]] = []
    seen: set[tuple[int, int, int, int, int, int]] = set()
    for env in read_packets(path):
        kind = env.WhichOneof("payload")
        if kind == "telemetry":
            t = env.telemetry
            tel.append((env.session_id, env.hub_time_ns, t.uplink_bps, t.budget_bps))
        elif kind == "shed":
            for r in env.shed.ranges:
                key = (env.session_id, r.stream, r.reason, r.first_sample, r.end_sample, r.items)
                if key not in seen:
                    seen.add(key)
                    ranges.append((r.stream, r.reason, r.first_sample, r.end_sample, r.items))
    return {"telemetry": tel, "ranges": ranges}


# ---------------------------------------------------------------- figures
def plot_scenario(name: str, s: dict[str, Any], chain: dict[str, Any], folder: Path,
                  fig_dir: Path) -> list[tuple[str, str]]:
    """PNG figures of one scenario; [(title, path relative to the report)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from host_tools.receiver import CLASS_NAMES

    fig_dir.mkdir(parents=True, exist_ok=True)
    ps = packet_series(folder)
    fs = float((s.get("hub_telemetry") or {}).get("sampling_frequency") or 30000.0)
    out: list[tuple[str, str]] = []

    def save(fig: Any, stem: str, title: str) -> None:
        p = fig_dir / f"{stem}.png"
        fig.tight_layout()
        fig.savefig(p, dpi=80)
        plt.close(fig)
        out.append((title, f"{fig_dir.name}/{p.name}"))

    # throughput
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    bps = (s.get("timeline") or {}).get("bytes_per_s") or []
    if bps:
        ax.step(np.arange(len(bps)), np.asarray(bps) * 8 / 1e6, where="post",
                label="received at the host")
    tel = ps.get("telemetry") or []
    if tel:
        t0 = min(t for _, t, _, _ in tel)
        a = np.array([(t - t0, u, b) for _, t, u, b in tel], dtype=np.float64)
        ax.plot(a[:, 0] / 1e9, a[:, 1] / 1e6, ".", ms=3, label="hub uplink (telemetry)")
        ax.plot(a[:, 0] / 1e9, a[:, 2] / 1e6, "--", lw=1, label="hub budget")
    if chain.get("rate_bps") and chain.get("uplink", "tcp") == "tcp":
        ax.axhline(chain["rate_bps"] / 1e6, color="grey", lw=0.8, label="cap")
    ax.set(xlabel="s", ylabel="Mbit/s", title="link throughput")
    ax.legend(fontsize=7, loc="lower right")
    save(fig, "throughput", "Link throughput over time")

    # latency distribution
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    hist = s.get("latency_hist_ms") or {}
    for cls, h in hist.items():
        if h.get("counts") and sum(h["counts"]):
            e = np.asarray(h["edges"])
            ax.stairs(h["counts"], e, label=f"{cls} (n={sum(h['counts'])})")
    ax.set_xscale("log")
    ev = (s.get("latency_ms") or {}).get("events") or {}
    for q, style in (("p50", ":"), ("p99", "--")):
        if ev.get(q) is not None:
            ax.axvline(ev[q], color="C0", ls=style, lw=1, label=f"events {q} {ev[q]:.1f} ms")
    ax.axvline(30, color="red", lw=0.8, label="target p99 30 ms")
    ax.set(xlabel="sample → host decode (ms)", ylabel="packets / spikes", title="latency")
    ax.legend(fontsize=7)
    save(fig, "latency", "Latency distribution")

    # shed by class: totals by reason, and over sample time
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 2.8))
    sbr = s.get("shed_by_reason") or {}
    classes = [c for c in sbr if sum(sbr[c].values())]
    reasons = sorted({r for c in classes for r in sbr[c]})
    bottom = np.zeros(len(classes))
    for r in reasons:
        v = np.array([sbr[c].get(r, 0) for c in classes], dtype=np.float64)
        a1.bar(classes, v, bottom=bottom, label=r.removeprefix("SHED_"))
        bottom += v
    if classes:
        a1.set_yscale("log")
        a1.legend(fontsize=7)
    else:
        a1.text(0.5, 0.5, "nothing shed", ha="center", transform=a1.transAxes)
    a1.set(title="shed items by class", ylabel="items")
    rngs = [r for r in ps.get("ranges") or [] if r[0]]
    if rngs:
        end = max(e for *_, e, _ in rngs) / fs
        bins = np.arange(0, end + 1.0, 1.0)
        for st in sorted({r[0] for r in rngs}):
            h = np.zeros(len(bins) - 1)
            for _, _, f0, e0, items in (r for r in rngs if r[0] == st):
                lo, hi = f0 / fs, max(e0, f0 + 1) / fs
                w = np.clip(np.minimum(bins[1:], hi) - np.maximum(bins[:-1], lo), 0, None)
                h += items * w / max(hi - lo, 1e-9)
            a2.step(bins[:-1], h, where="post", label=CLASS_NAMES.get(st, str(st)))
        a2.set_yscale("symlog")
        a2.legend(fontsize=7)
    else:
        a2.text(0.5, 0.5, "no shed ranges", ha="center", transform=a2.transAxes)
    a2.set(title="shed over sample time", xlabel="sample time (s)", ylabel="items / s")
    save(fig, "shed", "Shed by class")

    # gaps over time
    fig, ax = plt.subplots(figsize=(6.4, 2.4))
    gaps = s.get("gaps") or []
    names = sorted({g["reason"] for g in gaps})
    for i, rname in enumerate(names):
        for g in (g for g in gaps if g["reason"] == rname):
            a, b = g["first_sample"] / fs, g["end_sample"] / fs
            ax.plot([a, max(b, a + 0.05)], [i, i], lw=6, solid_capstyle="butt", color=f"C{i}")
    ax.set_yticks(range(len(names)), [n.removeprefix("SHED_") for n in names], fontsize=7)
    ax.set(xlabel="sample time (s)", title=f"gaps over time ({len(gaps)})")
    if not gaps:
        ax.text(0.5, 0.5, "no gaps", ha="center", transform=ax.transAxes)
    save(fig, "gaps", "Gaps over time")

    ts = s.get("time_sync_check") or {}
    if ts.get("track"):
        tr = np.asarray(ts["track"])
        fig, ax = plt.subplots(figsize=(6.4, 2.8))
        ax.plot(tr[:, 0], tr[:, 2], "k-", lw=1, label="true (firmware)")
        ax.plot(tr[:, 0], tr[:, 1], ".", ms=3, label="host fit")
        ax.fill_between(tr[:, 0], tr[:, 2] - 5, tr[:, 2] + 5, color="grey", alpha=0.2,
                        label="±5 ppm")
        if tr[-1, 0] > 60 and (tr.shape[1] < 4 or tr[-1, 3] == tr[-1, 0]):
            ax.axvline(60, color="red", lw=0.8, label="60 s")
        lo, hi = float(np.median(tr[:, 2])) - 15, float(np.median(tr[:, 2])) + 15
        ax.set(ylim=(lo, hi), xlabel="s", ylabel="ppm", title="implant clock drift")
        ax.legend(fontsize=7)
        save(fig, "drift", "Drift fit against the firmware's clock")
    return out


# ---------------------------------------------------------------- text
def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return (["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def scenario_markdown(name: str, r: dict[str, Any], figs: list[tuple[str, str]]) -> list[str]:
    s, chain = r["summary"], r.get("chain", {})
    miss = misses(s, chain) if s else []
    verdict = "PASS" if r["passed"] else "FAIL"
    flag = f" — ⚠ {len(miss)} figure(s) miss their target" if miss else ""
    lines = [f"## {name} — {verdict}{flag}", "", r["what"], ""]
    lines += [f"- FAILED: {f}" for f in r["failed"]]
    lines += [f"- ⚠ misses target: {m}" for m in miss]
    if not s:
        return [*lines, ""]
    cls = s["classes"]
    cols = ["produced", "delivered", "shed", "queued", "unaccounted"]
    extra = [c for c in ("unclosed", "produced_after_last_report", "lost_packets")
             if any(v.get(c) for v in cls.values())]
    lines += ["", *_table(["class", *cols, *extra],
                          [[k, *(v.get(c, 0) for c in cols + extra)] for k, v in cls.items()])]
    lat = s["latency_ms"]["events"]
    tel = s.get("hub_telemetry") or {}
    lines += ["", f"- event latency sample→host decode: p50 {lat['p50']} ms, p99 {lat['p99']} ms "
                  f"(n={lat['n']})",
              f"- link throughput {s['link']['throughput_bps'] / 1e6:.3f} Mbit/s; hub CPU "
              f"{100 * s['hub_cpu_core_fraction']:.1f} % of one core",
              f"- implant link: {tel.get('link_frames')} frames, {tel.get('link_corrupt')} "
              f"corrupt, {tel.get('link_missing_frames')} missing, "
              f"{tel.get('link_garbage_bytes')} junk bytes"]
    ts = s.get("time_sync_check")
    if ts:
        te, worst = ts["timestamp_error_ms"], ts["max_abs_ppm_error_after_60s"]
        lines.append(f"- time sync: true {ts['true_ppm_end']} ppm, fitted "
                     f"{ts['fitted_ppm_end'] and round(ts['fitted_ppm_end'], 2)} ppm, converged "
                     f"(±5 ppm) at {ts['converged_s'] and round(ts['converged_s'], 1)} s, worst "
                     f"error after 60 s {worst and round(worst, 2)} ppm; spike timestamp error p50 "
                     f"{te['p50'] and round(te['p50'], 3)} ms, p99 "
                     f"{te['p99'] and round(te['p99'], 3)} ms ({ts['spikes_stamped']} spikes); "
                     f"fit restarts {ts['resets']}")
    lines.append("")
    for title, path in figs:
        lines += [f"![{title}]({path})", ""]
    gaps = s.get("gaps") or []
    head = (f"{len(gaps)} gaps, first {SHOWN} shown" if len(gaps) > SHOWN
            else f"{len(gaps)} gaps")
    lines += [f"**{head}**", ""]
    if gaps:
        lines += _table(["reason", "first sample", "end sample", "samples"],
                        [[g["reason"], g["first_sample"], g["end_sample"],
                          g["end_sample"] - g["first_sample"]] for g in gaps[:SHOWN]])
        lines.append("")
    rows = [[c, r_, len(v), sum(e - f for f, e in v if f >= 0)]
            for c, d in (s.get("shed_ranges") or {}).items() for r_, v in d.items()]
    if rows:
        lines += ["**shed ranges (per class and reason; merged ranges, the receiver keeps the "
                  "first 20 of each)**", "", *_table(["class", "reason", "ranges listed",
                                                      "samples in them"], rows), ""]
    return lines


def markdown(results: dict[str, Any], title: str,
             figs: dict[str, list[tuple[str, str]]] | None = None) -> str:
    n_pass = sum(r["passed"] for r in results.values())
    lines = [f"# {title}", "", f"{n_pass} of {len(results)} scenarios pass.", ""]
    lines += _table(["scenario", "verdict", "figures missing their target"],
                    [[n, "PASS" if r["passed"] else "FAIL",
                      "; ".join(misses(r["summary"], r.get("chain", {}))) if r["summary"]
                      else "—"] for n, r in results.items()])
    lines.append("")
    for name, r in results.items():
        lines += scenario_markdown(name, r, (figs or {}).get(name, []))
    return "\n".join(lines)


def to_html(md: str, title: str) -> str:
    """A small Markdown → HTML for these reports (headings, lists, tables, images, bold)."""
    import re

    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           "</title><style>body{font:14px sans-serif;max-width:1000px;margin:2em auto}"
           "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;"
           "text-align:right}td:first-child{text-align:left}.fail{color:#b00}"
           ".warn{color:#b60}img{max-width:100%}</style></head><body>"]
    rows: list[str] = []
    in_list = False

    def inline(t: str) -> str:
        t = html.escape(t)
        t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
        t = t.replace("FAIL", "<span class='fail'>FAIL</span>").replace(
            "⚠", "<span class='warn'>⚠</span>")
        return t

    def flush() -> None:
        nonlocal rows, in_list
        if rows:
            out.append("<table>" + "".join(rows) + "</table>")
            rows = []
        if in_list:
            out.append("</ul>")
            in_list = False

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-", " ", ":"} for c in cells):
                continue
            tag = "th" if not rows else "td"
            rows.append("<tr>" + "".join(f"<{tag}>{inline(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if line.startswith("- "):
            if rows:
                flush()
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        flush()
        m = re.match(r"!\[(.*)\]\((.*)\)", line)
        if m:
            out.append(f"<figure><img src='{html.escape(m.group(2))}' "
                       f"alt='{html.escape(m.group(1))}'><figcaption>"
                       f"{html.escape(m.group(1))}</figcaption></figure>")
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    out.append("</body></html>")
    return "\n".join(out)


def write_report(results: dict[str, Any], out: Path, stem: str, title: str) -> str:
    """``OUT/STEM.json``, ``STEM.md``, ``STEM.html`` and ``STEM_figures/<scenario>/*.png``;
    returns the Markdown."""
    figs: dict[str, list[tuple[str, str]]] = {}
    for name, r in results.items():
        if not r["summary"]:
            continue
        fig_dir = out / f"{stem}_figures" / name
        try:
            figs[name] = [(t, f"{stem}_figures/{p}")
                          for t, p in plot_scenario(name, r["summary"], r.get("chain", {}),
                                                    out / name, fig_dir)]
        except (ValueError, KeyError, OSError) as e:   # a figure must not hide the verdicts
            log.error("figures of %s failed: %s", name, e)
    md = markdown(results, title, figs)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.html").write_text(to_html(md, title))
    return md
