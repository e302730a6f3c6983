"""The closed-loop report: one table per scenario (success, time to target, bits/s, sample →
cursor latency) in ``report.json`` / ``report.md``, and a figure of cursor paths and latencies
per scenario (``SCENARIO/closed_loop.png``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

BITRATE_NOTE = ("bits/s = log2(N−1)·max(Sc−Si, 0)/t, the achieved bitrate of Nuyujukian et al. "
                "2015 (N grid cells, Sc/Si correct/incorrect selections in t s); press reports "
                "give ~7–9.5 bps for the best intracortical systems")


LATENCY_NOTE = ("sample → cursor: from the bin's last sample reaching the hub to the cursor "
                "update (the BCI literature's definition; from the bin's first sample add the "
                "20 ms bin); parts: block = last sample → its hub block complete, hub+link = "
                "→ packet at the host, host = → cursor update")


def table(res: dict[str, Any]) -> list[str]:
    rows = ["| block | success | time to target (median s) | bits/s | sample→cursor p50 / p99 "
            "ms | block / hub+link / host p50 (p99) ms | decode µs/bin |",
            "|---|---|---|---|---|---|---|"]
    for b in res.get("blocks", []):
        lat = b.get("latency_ms", {})
        if b["task"] == "grid":
            succ = f"{b['correct']}/{b['correct'] + b['incorrect']} selections"
            ttt = (b.get("time_to_select_s") or {}).get("median")
            bps = f"**{b['bits_per_s']:.2f}** ({b['grid']})"
        else:
            succ = (f"{b['successes']}/{b['trials']} ({100 * (b['success_rate'] or 0):.0f} %)"
                    if b["trials"] else "–")
            ttt = b["time_to_target_s"]["median"]
            bps = "–"
        parts = lat.get("parts") or {}
        split = " / ".join(f"{parts[k]['p50']:.1f} ({parts[k]['p99']:.1f})"
                           for k in ("block", "hub_link", "host") if k in parts) or "–"
        rows.append(f"| {b['name']} ({b['mode']}) | {succ} | "
                    f"{'–' if ttt is None else f'{ttt:.2f}'} | {bps} | "
                    f"{lat.get('p50')} / {lat.get('p99')} | {split} | "
                    f"{b.get('decode_us_p50')} |")
    return rows


def figure(out: Path, name: str) -> Path | None:
    f = out / name / "session.npz"
    if not f.exists():
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(f, allow_pickle=False) as z:
        names = [b["name"] for b in json.loads(str(z["meta"]))["blocks"]]
        blocks = [{k.split("_", 1)[1]: z[k] for k in z.files if k.startswith(f"b{i}_")}
                  for i in range(len(names))]
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(3.2 * (len(names) + 1), 3.4))
    for ax, n, b in zip(axes, names, blocks, strict=False):
        cur, tgt = b["cursor"], b["target"]
        if len(cur):
            ax.plot(cur[:, 0], cur[:, 1], lw=0.5)
            ax.plot(tgt[:, 0], tgt[:, 1], "r+", ms=6)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_title(n, fontsize=8)
        ax.tick_params(labelsize=6)
    lat = np.concatenate([b["latency_ms"] for b in blocks if b["latency_ms"].size] or
                         [np.zeros(0)])
    ax = axes[-1]
    if lat.size:
        ax.hist(lat, bins=60, color="tab:gray")
        for q, c in ((50, "b"), (99, "r")):
            v = np.percentile(lat, q)
            ax.axvline(v, color=c, lw=1, label=f"p{q} {v:.1f} ms")
        ax.axvline(30, color="k", ls="--", lw=0.8, label="target p99 30 ms")
        ax.legend(fontsize=6)
    ax.set_title("sample → cursor latency (ms)", fontsize=8)
    ax.tick_params(labelsize=6)
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    p = out / name / "closed_loop.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def write_report(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    report["bitrate"] = BITRATE_NOTE
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    md = ["# Closed-loop BCI (HIL: tuned implant → hub → virtual BLE 2M → host decoder → "
          "cursor)", "", BITRATE_NOTE, "", LATENCY_NOTE, ""]
    for name, res in report["scenarios"].items():
        md += [f"## {name}", ""]
        if "error" in res:
            md += [f"FAILED: {res['error']}", ""]
            continue
        sc = res["scenario"]
        u = sc["user"]
        md += [f"implant `{sc['implant']}`, features `{sc['features']}`, hub "
               f"`{' '.join(sc['settings'])} block_ms={sc['block_ms']:g}`, grid decoder "
               f"`{res.get('grid_decoder')}`, wall {res.get('wall_s')} s; bins "
               f"{res['assembler']['bins']}, missing {res['assembler']['missing_bins']}", "",
               f"user: delay {u['delay_s']} s, saturation {u['sat']}, forward model "
               f"{u['forward']}, noise σ {u['noise']} (τ {u['noise_tau_s']} s); cursor gain "
               f"{sc['speed']} units/s, smoothing {sc['smooth']}; grid 6×6, dwell "
               f"{sc['dwell_s']} s; task seed {sc['seed']}", ""]
        md += table(res)
        png = figure(out, name)
        if png is not None:
            md += ["", f"![{name}]({png.relative_to(out)})"]
        md.append("")
    (out / "report.md").write_text("\n".join(md))
