"""The batch summary: ``batch_summary.json`` (the contract below), ``batch_summary.html`` (one
row per recording, one column per step) and ``batch_timeline.png`` (tasks over time per
worker), all written atomically into OUT_DIR.

    {"recordings": [{"input": PATH, "name": ..., "kind": ..., "info": {...},
                     "steps": {STEP: {"status": "done"|"skipped"|"failed", "seconds": ...,
                                      "headline": {...}, "error": "...", "log": ..., ...}}}],
     "done": N, "skipped": N, "failed": N, ...}

done: ran in this batch and succeeded; skipped: its output was already current (same key);
failed: did not produce an output (the entry says why; its log has the traceback).
"""

from __future__ import annotations

import html
import json
import logging
import time
from pathlib import Path
from typing import Any

from host_tools.batch_inputs import Input
from host_tools.batch_plan import Plan
from host_tools.batch_run import NOT_APPLICABLE, write_atomic

log = logging.getLogger(__name__)

KEEP = ("status", "seconds", "cpu_seconds", "ran_seconds", "headline", "error", "key", "worker",
        "started", "finished", "log", "dir")


def _rel(p: Any, out_dir: Path) -> Any:
    try:
        return str(Path(p).relative_to(out_dir))
    except (TypeError, ValueError):
        return p


def build_summary(plan: Plan, inputs: list[Input], fps: dict[str, dict[str, Any]],
                  entries: dict[tuple[str, str], dict[str, Any]], out_dir: Path,
                  wall_s: float, interrupted: bool = False) -> dict[str, Any]:
    recordings = []
    counts = {"done": 0, "skipped": 0, "failed": 0}
    for inp in inputs:
        steps = {}
        skipped_kinds: dict[str, str] = {}
        for step in plan.steps:
            e = entries.get((inp.name, step), {"status": "failed", "error": "not run"})
            if e["status"] == NOT_APPLICABLE:
                skipped_kinds[step] = e["reason"]
                continue
            e = {k: e[k] for k in KEEP if k in e}
            for k in ("log", "dir"):
                if k in e:
                    e[k] = _rel(e[k], out_dir)
            steps[step] = e
            counts[e["status"]] += 1
        fp = fps.get(inp.name, {})
        recordings.append({"input": str(inp.path), "name": inp.name, "kind": inp.kind,
                           "info": fp.get("info", {}), "steps": steps,
                           **({"not_applicable": skipped_kinds} if skipped_kinds else {})})
    return {"recordings": recordings, **counts, "steps": plan.steps, "plan": plan.source,
            "wall_seconds": round(wall_s, 3), "finished": time.time(),
            "interrupted": interrupted}


def write_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """batch_summary.json, batch_timeline.png (when tasks ran) and batch_summary.html."""
    png = out_dir / "batch_timeline.png"
    has_png = timeline(summary, png)
    write_atomic(out_dir / "batch_summary.json", json.dumps(summary, indent=1))
    write_atomic(out_dir / "batch_summary.html", render_html(summary, png.name if has_png
                                                             else None))


def timeline(summary: dict[str, Any], path: Path) -> bool:
    """Every Dask task of this batch (steps, sorters, fingerprints) as a bar on its worker's
    row, from Dask's task stream; False if nothing ran."""
    rows = [(t["key"].split("-", 1)[0], t["worker"], t["start"], t["stop"],
             t.get("status") == "error") for t in summary.get("task_stream", [])]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    failed = {(r["name"], s) for r in summary["recordings"] for s, e in r["steps"].items()
              if e["status"] == "failed"}
    t0 = min(r[2] for r in rows)
    workers = sorted({r[1] for r in rows})
    kinds = [k for k in (*summary["steps"], "sorter", "fingerprint") if any(r[0] == k
                                                                             for r in rows)]
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.45 * len(workers)))
    for kind, worker, start, stop, err in rows:
        ax.barh(workers.index(worker), stop - start, left=start - t0, height=0.7,
                color=colours(kinds.index(kind) % 10), edgecolor="black" if err else "none")
    for i, k in enumerate(kinds):
        ax.bar(0, 0, color=colours(i % 10), label=k)
    ax.set_yticks(range(len(workers)), [w.replace("tcp://", "") for w in workers])
    ax.set_xlabel("seconds since the first task started")
    ax.set_title(f"{summary['done']} done, {summary['skipped']} current, {len(failed)} failed; "
                 f"wall {summary['wall_seconds']:.0f} s")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.32 - 0.05 / max(1, len(workers))),
              fontsize="small", ncols=len(kinds), frameon=False)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return True


COLOURS = {"done": "#d8f3dc", "skipped": "#e9ecef", "failed": "#ffccd5"}


def _cell(e: dict[str, Any]) -> str:
    st = e["status"]
    parts = [f"<b>{st}</b>"]
    if e.get("seconds") is not None:
        parts.append(f"{e['seconds']:.1f} s")
    head = e.get("headline") or {}
    if head:
        parts.append("<br><small>" + html.escape(", ".join(f"{k} {v}" for k, v in head.items()))
                     + "</small>")
    if e.get("error"):
        parts.append(f"<br><small>{html.escape(e['error'])}</small>")
    if e.get("log"):
        parts.append(f' <a href="{html.escape(e["log"])}">log</a>')
    return f'<td style="background:{COLOURS[st]}">{" ".join(parts)}</td>'


def render_html(summary: dict[str, Any], png: str | None) -> str:
    steps = summary["steps"]
    head = "".join(f"<th>{html.escape(s)}</th>" for s in steps)
    rows = []
    for r in summary["recordings"]:
        info = r.get("info") or {}
        what = (f"{info['channels']} ch, {info['duration_s']:.1f} s at "
                f"{info['sampling_frequency_hz'] / 1e3:.1f} kHz" if info else "")
        rows.append(f"<tr><td><b>{html.escape(r['name'])}</b><br><small>{html.escape(r['kind'])}"
                    f" {html.escape(what)}</small></td>"
                    + "".join(_cell(r["steps"][s]) if s in r["steps"] else "<td>—</td>"
                              for s in steps) + "</tr>")
    cluster = summary.get("cluster", {})
    facts = [f"{summary['done']} done, {summary['skipped']} skipped (current), "
             f"{summary['failed']} failed",
             f"wall time {summary['wall_seconds']:.1f} s" + (" — interrupted" if
                                                             summary.get("interrupted") else ""),
             f"plan: {summary.get('plan', '')}", f"cluster: {cluster.get('description', '')}"]
    img = f'<p><img src="{png}" alt="task timeline"></p>' if png else ""
    return ("<!doctype html><html><head><meta charset='utf-8'><title>hubctl batch</title>"
            "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:4px 8px;vertical-align:top}</style></head>"
            "<body><h1>hubctl batch</h1><ul>"
            + "".join(f"<li>{html.escape(f)}</li>" for f in facts) + "</ul>" + img
            + f"<table><tr><th>recording</th>{head}</tr>{''.join(rows)}</table></body></html>")
