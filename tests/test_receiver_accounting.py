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


def test_shed_ranges_of_a_long_session_stay_bounded_and_keep_their_totals() -> None:
    """A shed report a second, each with the block's raw shed range: an hour of them used to stay
    in the receiver one protobuf message each (the soak's growing host)."""
    rx, ch = Receiver(), Chunker()
    for k in range(5000):
        env = pb.Envelope(schema_version=SCHEMA_VERSION, stream=pb.STREAM_TELEMETRY, seq=k,
                          session_id=7)
        env.shed.ranges.add(stream=pb.STREAM_RAW, reason=pb.SHED_BUDGET, first_sample=300 * k,
                            end_sample=300 * k + 300, items=300, packets=1)
        if k % 1000 == 0:      # an implant gap now and then: a gap stays a gap of its own
            env.shed.ranges.add(stream=pb.STREAM_UNSPECIFIED, reason=pb.SHED_IMPLANT_GAP,
                                first_sample=300 * k + 10, end_sample=300 * k + 40)
        _feed(rx, ch, env)
    assert len(rx.sessions[7].shed_ranges) < 2048
    assert rx.shed_summary()["raw"]["SHED_BUDGET"] == 5000 * 300
    assert rx.shed_ranges()["raw"]["SHED_BUDGET"] == [[0, 5000 * 300]]
    assert [(g["first_sample"], g["end_sample"]) for g in rx.gaps()] == [
        (300 * k + 10, 300 * k + 40) for k in range(0, 5000, 1000)]
