"""Host accounting of a hub session that died without its final report (SIGKILL): delivered
can never exceed produced, and what the host cannot know is shown apart, never negative."""

from __future__ import annotations

from host_tools.receiver import Receiver
from hub.wire import SCHEMA_VERSION, Chunker, pb


def _feed(rx: Receiver, ch: Chunker, env: pb.Envelope) -> None:
    for c in ch.chunks(env.SerializeToString()):
        rx.feed_chunk(c, 1_000)


def _spikes(seq: int, n: int) -> pb.Envelope:
    env = pb.Envelope(schema_version=SCHEMA_VERSION, stream=pb.STREAM_SPIKES, seq=seq,
                      session_id=7, sample_index=seq * 300 + 300)
    env.spikes.first_sample = seq * 300
    env.spikes.offset.extend(range(n))
    env.spikes.channel.extend([0] * n)
    return env


def _report(produced: int, sent: int, queued: int, final: bool = False) -> pb.Envelope:
    env = pb.Envelope(schema_version=SCHEMA_VERSION, stream=pb.STREAM_TELEMETRY, seq=0,
                      session_id=7)
    env.shed.totals.add(stream=pb.STREAM_SPIKES, produced=produced, sent=sent, queued=queued)
    env.shed.final = final
    return env


def test_killed_session_never_shows_delivered_above_produced() -> None:
    rx, ch = Receiver(), Chunker()
    for seq in range(5):                       # 10 spikes delivered …
        _feed(rx, ch, _spikes(seq, 2))
    _feed(rx, ch, _report(produced=12, sent=10, queued=2))   # … 2 queued at the last report
    for seq in range(5, 8):                    # the 2 queued and 4 new ones arrive, then SIGKILL
        _feed(rx, ch, _spikes(seq, 2))
    row = rx.accounting()["events"]
    assert row["delivered"] == 16
    assert row["produced"] == 16 and row["delivered"] <= row["produced"]   # was 12 < 16
    assert row["produced_after_last_report"] == 4
    assert row["unclosed"] == 0 and row["unaccounted"] == 0                # was −4


def test_killed_session_with_queued_items_lost_shows_them_unclosed() -> None:
    rx, ch = Receiver(), Chunker()
    for seq in range(5):
        _feed(rx, ch, _spikes(seq, 2))
    _feed(rx, ch, _report(produced=14, sent=10, queued=4))
    _feed(rx, ch, _spikes(5, 2))               # 2 of the 4 queued arrive, the hub dies
    row = rx.accounting()["events"]
    assert (row["produced"], row["delivered"], row["unclosed"]) == (14, 12, 2)


def test_closed_session_balance_unchanged() -> None:
    rx, ch = Receiver(), Chunker()
    for seq in range(3):
        _feed(rx, ch, _spikes(seq, 2))
    _feed(rx, ch, _report(produced=6, sent=6, queued=0, final=True))
    row = rx.accounting()["events"]
    assert (row["produced"], row["delivered"], row["unaccounted"], row["unclosed"]) == (6, 6, 0, 0)
