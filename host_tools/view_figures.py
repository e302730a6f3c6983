"""The figures of ``hubctl view``: each function reads what it needs from an open NWB file
(written by host_tools.nwb_writer) and saves one PNG; it returns a caption, or None when the
file has nothing to draw for it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

log = logging.getLogger(__name__)
MAX_RASTER_POINTS = 200_000


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _hub(nwb: Any, name: str) -> Any:
    mod = nwb.processing.get("hub")
    return None if mod is None or name not in mod.data_interfaces else mod[name]


def _duration(nwb: Any) -> float:
    thr = _hub(nwb, "LinkThroughput")
    if thr is not None:
        return float(len(thr.data)) / float(thr.rate)
    return 1.0


def raster(nwb: Any, path: Path) -> str | None:
    u = nwb.units
    if u is None or len(u) == 0:
        return None
    fig, ax = plt.subplots(figsize=(11, 4.5))
    kinds = list(u["kind"][:])
    n = len(kinds)
    total = len(u["spike_times"].target.data)
    step = max(1, total // MAX_RASTER_POINTS)
    for i in range(n):
        t = np.asarray(u["spike_times"][i])[::step]
        color = "C0" if kinds[i] == "sorted" else "0.55"
        ax.plot(t, np.full(t.size, i), "|", ms=3, color=color, rasterized=True)
    n_sorted = kinds.count("sorted")
    if 0 < n_sorted < n:
        ax.axhline(n_sorted - 0.5, color="k", lw=0.5)
    ax.set_xlabel("time (s, host clock)")
    ax.set_ylabel("unit (blue: sorted; grey: channel crossings)")
    ax.set_title(f"spike raster: {n_sorted} sorted units, {n - n_sorted} crossing channels, "
                 f"{total:,} spikes" + (f" (every {step}th drawn)" if step > 1 else ""))
    _save(fig, path)
    return "Spike raster: every delivered spike, by unit."


def probe_rates(nwb: Any, path: Path) -> str | None:
    u = nwb.units
    if u is None or len(u) == 0:
        return None
    dur = _duration(nwb)
    el = nwb.electrodes
    n_el = len(el) if el is not None else 0
    kinds = list(u["kind"][:])
    chans = np.asarray(u["channel"][:], int)
    counts = np.array([len(u["spike_times"][i]) for i in range(len(u))], float)
    has_xy = el is not None and "rel_x" in el.colnames
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    ch_rate = np.zeros(max(n_el, int(chans.max()) + 1))
    np.add.at(ch_rate, chans, counts / dur)
    if has_xy:
        x, y = np.asarray(el["rel_x"][:]), np.asarray(el["rel_y"][:])
        sc = axes[0].scatter(x, y, c=ch_rate[:n_el], s=80, cmap="viridis", marker="s")
        fig.colorbar(sc, ax=axes[0], label="spikes/s")
        axes[0].set_xlabel("x (µm)")
        axes[0].set_ylabel("y (µm)")
        axes[0].set_title("rate per channel on the probe")
        srt = [i for i, k in enumerate(kinds) if k == "sorted"]
        if srt:
            jitter = np.random.default_rng(0).uniform(-6, 6, (len(srt), 2))
            axes[1].scatter(x, y, s=20, color="0.85", marker="s")
            sc2 = axes[1].scatter(x[chans[srt]] + jitter[:, 0], y[chans[srt]] + jitter[:, 1],
                                  s=20 + 8 * np.sqrt(counts[srt] / dur), c=counts[srt] / dur,
                                  cmap="plasma", alpha=0.8)
            fig.colorbar(sc2, ax=axes[1], label="spikes/s")
            axes[1].set_title("sorted units at their peak channel")
            axes[1].set_xlabel("x (µm)")
    else:
        axes[0].bar(np.arange(ch_rate.size), ch_rate)
        axes[0].set_xlabel("channel")
        axes[0].set_ylabel("spikes/s")
        axes[0].set_title("rate per channel (the hub reported no probe geometry)")
        axes[1].bar(np.arange(len(counts)), counts / dur, color=["C0" if k == "sorted" else
                                                                 "0.6" for k in kinds])
        axes[1].set_xlabel("unit row")
        axes[1].set_title("rate per unit")
    _save(fig, path)
    return "Firing rates per channel and per sorted unit, on the probe layout."


def waveforms(nwb: Any, path: Path) -> str | None:
    u = nwb.units
    if u is None or "waveform_mean" not in u.colnames:
        return None
    wm = np.asarray(u["waveform_mean"][:]) * 1e6
    kinds = list(u["kind"][:])
    rows = [i for i, k in enumerate(kinds) if k == "sorted" and np.isfinite(wm[i]).all()]
    rows = rows or [i for i in range(len(kinds)) if np.isfinite(wm[i]).all()]
    if not rows:
        return None
    rows = rows[:24]
    cols = min(6, len(rows))
    nr = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(nr, cols, figsize=(1.9 * cols, 1.7 * nr), squeeze=False,
                             sharey=True)
    for ax, i in zip(axes.ravel(), rows, strict=False):
        ax.plot(wm[i], color="C0" if kinds[i] == "sorted" else "0.4")
        ax.set_title(f"{'unit ' + str(u['hub_unit'][i]) if kinds[i] == 'sorted' else 'ch'} "
                     f"(ch {u['channel'][i]})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    axes[0, 0].set_ylabel("µV (or counts)", fontsize=8)
    _save(fig, path)
    return "Mean waveforms of the sorted units on their peak channel (from delivered snippets)."


def noise(nwb: Any, path: Path) -> str | None:
    ec = nwb.processing.get("ecephys")
    if ec is None or "SpikeBandRMS" not in ec.data_interfaces:
        return None
    ts = ec["SpikeBandRMS"]
    n = len(ts.data)
    sel = np.asarray(ts.data[:: max(1, n // 5000)], float) * ts.conversion
    unit = "µV" if ts.unit == "volts" else "counts"
    med = np.median(sel, axis=0) * (1e6 if unit == "µV" else 1.0)
    fig, ax = plt.subplots(figsize=(11, 3.5))
    ax.bar(np.arange(med.size), med, color="C2")
    ax.set_xlabel("channel")
    ax.set_ylabel(f"spike-band RMS ({unit})")
    ax.set_title("noise per channel: median spike-band RMS over the feature bins")
    _save(fig, path)
    return "Noise per channel (median spike-band RMS over all bins)."


def throughput(nwb: Any, path: Path) -> str | None:
    thr = _hub(nwb, "LinkThroughput")
    if thr is None:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.5))
    d = np.asarray(thr.data[:]) / 1e6
    ax.plot(np.arange(d.size) / thr.rate + thr.starting_time, d, label="received at the host")
    tel = _hub(nwb, "telemetry")
    if tel is not None and "budget_bps" in tel.colnames:
        t = np.asarray(tel["time"][:])
        ax.plot(t, np.asarray(tel["budget_bps"][:]) / 1e6, label="hub's link budget", alpha=0.7)
        ax.plot(t, np.asarray(tel["uplink_bps"][:]) / 1e6, label="hub's measured uplink",
                alpha=0.7)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mbit/s")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("link throughput")
    _save(fig, path)
    return "Link throughput per second, with the hub's own budget and measurement."


def shed_and_gaps(nwb: Any, path: Path) -> str | None:
    iv = nwb.intervals.get("shed_and_gaps") if nwb.intervals else None
    tel = _hub(nwb, "telemetry")
    fig, axes = plt.subplots(2, 1, figsize=(11, 5), sharex=True)
    lanes: dict[str, list[tuple[float, float]]] = {}
    if iv is not None and len(iv):
        df = iv.to_dataframe()
        for r in df.itertuples():
            lanes.setdefault(f"{r.stream}: {r.reason}", []).append(
                (r.start_time, max(r.stop_time - r.start_time, 0.01)))
    for i, (_name, spans) in enumerate(sorted(lanes.items())):
        axes[0].broken_barh(spans, (i - 0.4, 0.8), color=f"C{i % 10}")
    axes[0].set_yticks(range(len(lanes)), sorted(lanes), fontsize=8)
    axes[0].set_title("shed and gap ranges (intervals/shed_and_gaps)" if lanes else
                      "no shed or gap ranges")
    if tel is not None:
        t = np.asarray(tel["time"][:])
        for name in ("events", "feature_bins", "snippets", "raw"):
            col = {"events": "spikes_shed", "feature_bins": "features_shed"}.get(
                name, f"{name}_shed")
            if col in tel.colnames:
                axes[1].plot(t, np.asarray(tel[col][:]), label=name)
        axes[1].set_yscale("symlog")
        axes[1].legend(fontsize=8)
        axes[1].set_ylabel("shed (cumulative items)")
    axes[1].set_xlabel("time (s)")
    _save(fig, path)
    return "What the hub shed or never had, over time, per stream and reason."


def latency(nwb: Any, path: Path) -> str | None:
    pk = _hub(nwb, "data_packets")
    if pk is None:
        return None
    codes = dict(x.split(" = ") for x in pk["stream"].description.split("(", 1)[1]
                 .rstrip(")").split(", "))
    stream = np.array([codes.get(str(int(c)), "?") for c in pk["stream"][:]])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, col, title in ((axes[0], "same_clock_latency_s", "receipt − hub time (same clock)"),
                           (axes[1], "latency_s", "receipt − time-sync fit")):
        lat = np.asarray(pk[col][:]) * 1e3
        for name in ("events", "feature_bins", "raw"):
            v = lat[stream == name]
            v = v[np.isfinite(v)]
            if v.size:
                ax.hist(v, bins=60, histtype="step",
                        label=f"{name}: p50 {np.percentile(v, 50):.1f}, "
                              f"p99 {np.percentile(v, 99):.1f} ms")
        ax.set_xlabel("ms")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    _save(fig, path)
    return ("Packet latency: receipt minus the hub's time of the packet's newest sample "
            "(left: hub clock, valid when hub and host share it; right: via the time-sync fit).")


def timesync(nwb: Any, path: Path) -> str | None:
    pts, fits = _hub(nwb, "time_sync_points"), _hub(nwb, "time_sync_fits")
    if pts is None:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.5))
    sess = np.asarray(pts["hub_session"][:])
    t, r = np.asarray(pts["time"][:]), np.asarray(pts["residual_ms"][:])
    fdf = fits.to_dataframe() if fits is not None else None
    for s in np.unique(sess):
        drift = (float(fdf[fdf["hub_session"] == s]["drift_ppm"].iloc[-1])
                 if fdf is not None and (fdf["hub_session"] == s).any() else float("nan"))
        ax.plot(t[sess == s], r[sess == s], ".", label=f"session {s}: drift {drift:+.1f} ppm")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("arrival − fit (ms)")
    ax.legend(fontsize=8)
    ax.set_title("time-sync residuals (≥ 0: transit delay above the fitted lower envelope)")
    _save(fig, path)
    return "Time-sync residuals and the fitted drift of the hub's sample clock."


FIGURES = (("raster", raster), ("probe_rates", probe_rates), ("waveforms", waveforms),
           ("noise", noise), ("throughput", throughput), ("shed_gaps", shed_and_gaps),
           ("latency", latency), ("timesync", timesync))
