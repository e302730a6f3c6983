"""What the fault-injection soak checks, from what the host recorded (``hil.fault_soak``).

- Accounting, per class and hub session, from the hub's last shed report (its totals) and
  what the host decoded: ``produced = delivered + shed + queued`` where the session ended with
  its final report; items lost in transit (a link reset loses what was in the socket) are
  ``sent − delivered`` and must sit in packets the host saw missing (sequence gaps).
- Nothing invented, from the packet log: no spike and no raw sample inside a range the hub
  reported it never had (implant gaps, format changes, restarts), and no burst of spikes just
  after one (the old hub produced ~2000× the gap-free rate there).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from host_tools.receiver import CLASS_NAMES, items_of
from hub.wire import Reassembler, pb

#: after a gap, how long to look for a burst of invented spikes
AFTER_GAP_S = 0.05
GAP_REASONS = (pb.SHED_IMPLANT_GAP, pb.SHED_HUB_RESTART, pb.SHED_IMPLANT_FORMAT)


@dataclass
class SessionLog:
    """What one hub session sent, as the host decoded it."""

    spikes: list[int] = field(default_factory=list)                 # sample of each spike
    raw: list[tuple[int, int]] = field(default_factory=list)        # [first, end) per block
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (first, end, reason)
    first: int | None = None
    last: int = 0
    fs: float = 30000.0
    items: dict[int, int] = field(default_factory=dict)        # delivered, per stream
    lost: dict[int, int] = field(default_factory=dict)         # packets (sequence gaps)
    seq: dict[int, int] = field(default_factory=dict)          # last sequence number seen
    totals: dict[int, Any] = field(default_factory=dict)       # the hub's last ClassCounters
    final: bool = False
    health: dict[str, Any] = field(default_factory=dict)      # the last LinkHealth


def read_packet_log(path: Path) -> dict[int, SessionLog]:
    """The packet log of ``hubctl record --packets-out`` (host_tools.packetlog), by session."""
    from host_tools.packetlog import Kind, Link, PacketLogReader

    r = Reassembler()
    out: dict[int, SessionLog] = defaultdict(SessionLog)
    for rec in PacketLogReader(path):
        if rec.kind == Kind.CONNECT and rec.link == Link.TCP:
            r.reset()                      # a new TCP stream (BLE chunks continue)
        if rec.kind != Kind.CHUNK:
            continue
        for body in r.feed(rec.payload):
            try:
                env = pb.Envelope.FromString(body)
            except Exception:
                continue
            s = out[env.session_id]
            kind = env.WhichOneof("payload")
            st = env.stream
            last = s.seq.get(st)
            if last is not None and env.seq > last + 1:
                s.lost[st] = s.lost.get(st, 0) + env.seq - last - 1
            s.seq[st] = env.seq if last is None else max(last, env.seq)
            s.items[st] = s.items.get(st, 0) + items_of(env)
            if kind == "spikes":
                b = env.spikes
                s.spikes += [b.first_sample + o for o in b.offset]
            elif kind == "raw":
                s.raw.append((env.raw.first_sample, env.raw.first_sample + env.raw.n_samples))
            elif kind == "shed":
                s.gaps += [(g.first_sample, g.end_sample, g.reason) for g in env.shed.ranges
                           if g.stream == pb.STREAM_UNSPECIFIED and g.reason in GAP_REASONS]
                s.totals = {t.stream: t for t in env.shed.totals}
                s.final = s.final or env.shed.final
            elif kind == "telemetry":
                s.fs = env.telemetry.sampling_frequency or s.fs
                s.health = MessageToDict(env.telemetry.link_health)
            if env.sample_index:
                s.first = env.sample_index if s.first is None else min(s.first,
                                                                       env.sample_index)
                s.last = max(s.last, env.sample_index)
    return dict(out)


def invented(sessions: dict[int, SessionLog]) -> dict[str, Any]:
    """Spikes and raw samples inside reported gaps (must be 0), and spikes just after a gap
    against what the session's overall spike rate predicts."""
    inside = raw_inside = after = 0
    expected_after = 0.0
    gaps_n = 0
    for s in sessions.values():
        gaps = sorted((a, b) for a, b, _ in s.gaps if b > a)
        ends = sorted({b for _, b, _ in s.gaps})
        gaps_n += len(ends)
        win = round(AFTER_GAP_S * s.fs)
        for t in s.spikes:
            inside += any(a <= t < b for a, b in gaps)
            after += any(e <= t < e + win for e in ends)
        for f, e in s.raw:
            raw_inside += sum(max(0, min(e, b) - max(f, a)) for a, b in gaps)
        span = max(1, s.last - (s.first or 0))
        expected_after += len(s.spikes) * min(1.0, len(ends) * win / span)
    return {"spikes_inside_gaps": inside, "raw_samples_inside_gaps": raw_inside,
            "gaps": gaps_n, "spikes_after_gaps": after,
            "spikes_after_gaps_expected": round(expected_after, 2),
            "window_s": AFTER_GAP_S}


def accounting(sessions: dict[int, SessionLog]) -> dict[str, dict[str, int]]:
    """Per class, summed over sessions. A session with its final report must balance:
    ``produced = sent + shed + queued`` (the hub's books) and ``sent = delivered`` unless the
    host saw packets missing (a reset link loses what was in the socket: ``lost_items`` =
    sent − delivered, in ``lost_packets``). A session a SIGKILL ended has no final totals: its
    balance is ``unclosed``."""
    out: dict[str, dict[str, int]] = {}
    for st, name in CLASS_NAMES.items():
        row = dict.fromkeys(("produced", "sent", "delivered", "shed", "queued", "lost_packets",
                             "lost_items", "unaccounted", "unclosed"), 0)
        for s in sessions.values():
            t = s.totals.get(st)
            produced, sent, shed, queued = ((t.produced, t.sent, t.shed, t.queued) if t
                                            else (0, 0, 0, 0))
            got, lost = s.items.get(st, 0), s.lost.get(st, 0)
            for k, v in (("produced", produced), ("sent", sent), ("shed", shed),
                         ("queued", queued), ("delivered", got), ("lost_packets", lost)):
                row[k] += v
            if not s.final:
                row["unclosed"] += produced - got - shed - queued
                continue
            books = produced - sent - shed - queued
            transit = sent - got
            row["lost_items"] += transit if lost else 0
            row["unaccounted"] += abs(books) + (abs(transit) if not lost or transit < 0 else 0)
        out[name] = row
    return out


def markdown(report: dict[str, Any]) -> str:
    """The soak's figures for people."""
    inv, lines = report["invented"], ["# Fault-injection soak (make hil-faults)", ""]
    lines += [f"- duration {report['duration_s']:.0f} s (TCP phase), "
              f"{report.get('ble', {}).get('duration_s', 0):.0f} s (BLE phase); "
              f"result **{'PASS' if report['passed'] else 'FAIL'}**",
              f"- faults injected: {json.dumps(report['faults'])}",
              f"- unaccounted items: {report['unaccounted']} (must be 0); lost in transit on "
              f"reset links: {report['lost_items']} items in {report['lost_packets']} packets",
              f"- invented: {inv['spikes_inside_gaps']} spikes and "
              f"{inv['raw_samples_inside_gaps']} raw samples inside {inv['gaps']} reported "
              f"gaps (must be 0); spikes within {1000 * inv['window_s']:.0f} ms after a gap: "
              f"{inv['spikes_after_gaps']} (the session rates predict "
              f"{inv['spikes_after_gaps_expected']})",
              f"- hub RSS: {report['rss']}",
              f"- hub sessions {report['sessions']}; starts refused on corrupt state: "
              f"{report['corrupt_state_refusals']}", ""]
    if report["failed"]:
        lines += [f"- FAILED: {f}" for f in report["failed"]] + [""]
    lines += ["| class | produced | sent | delivered | shed | queued | lost in transit "
              "(items / packets) | unaccounted | unclosed (killed sessions) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for k, v in report["classes"].items():
        lines.append(f"| {k} | {v['produced']} | {v['sent']} | {v['delivered']} | {v['shed']} "
                     f"| {v['queued']} | {v['lost_items']} / {v['lost_packets']} | "
                     f"{v['unaccounted']} | {v['unclosed']} |")
    if "ble" in report:
        lines += ["", "## BLE phase", "", f"```\n{json.dumps(report['ble'], indent=1)}\n```"]
    return "\n".join(lines) + "\n"
