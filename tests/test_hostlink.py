"""The host link facade (host_tools.hublink + host_tools.session): one receive path for TCP and
BLE — reassembly across reconnects, observers, commands and their results, back-off — and the
loud failures of ``hubctl record`` (rejected command, never connected)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hil.chain import REPO, Chain, ChainSpec
from host_tools.hublink import (
    ChunkHandler,
    HubLink,
    HubUnreachable,
    LinkError,
    TcpLink,
    stay_connected,
)
from host_tools.receiver import Receiver
from host_tools.session import CommandRejected, HubSession, LinkObserver, record
from hub.wire import SCHEMA_VERSION, Chunker, pb
from hub.wire.backoff import Backoff
from tests.virtual_clock import run as vrun


def envelopes(n: int, session: int = 1, size: int = 300) -> list[bytes]:
    """n log packets of about ``size`` bytes (each spans more than one chunk)."""
    return [pb.Envelope(session_id=session, stream=pb.STREAM_TELEMETRY, seq=i,
                        log=pb.LogRecord(message="x" * size, logger=str(i)))
            .SerializeToString() for i in range(n)]


def chunk_stream(packets: list[bytes], chunker: Chunker | None = None) -> list[bytes]:
    ch = chunker or Chunker(100)
    out = []
    for p in packets:
        ch.push(p)
        while (c := ch.pop()) is not None:
            out.append(c)
    while (c := ch.pop(flush=True)) is not None:
        out.append(c)
    return out


# ---------------------------------------------------------------- reassembly across reconnects
def test_reconnect_continues_the_stream_when_the_sequence_does() -> None:
    chunks = chunk_stream(envelopes(6))
    rx = Receiver()
    cut = len(chunks) // 2 + 1              # inside a packet
    for c in chunks[:cut]:
        rx.feed_chunk(c, 0)
    rx.link_changed()
    for c in chunks[cut:]:
        rx.feed_chunk(c, 0)
    assert rx.packets == 6 and rx.reconnects == {"continued": 1, "restarted": 0}
    assert rx.reassembler.stats.lost_chunks == 0


def test_reconnect_to_a_restarted_stream_drops_only_the_cut_packet() -> None:
    first = chunk_stream(envelopes(6, session=1))
    second = chunk_stream(envelopes(4, session=2))   # a new hub: chunk sequence from 0
    seen: list[int] = []
    rx = Receiver(lambda env, _t: seen.append(env.session_id))
    cut = len(first) // 2 + 1
    for c in first[:cut]:
        rx.feed_chunk(c, 0)
    rx.link_changed()
    for c in second:
        rx.feed_chunk(c, 0)
    st = rx.reassembler.stats
    assert seen.count(2) == 4 and seen.count(1) < 6
    assert rx.reconnects == {"continued": 0, "restarted": 1}
    assert st.lost_chunks == 0 and st.dropped_partial == 1 and rx.bad_packets == 0


class _FlappingLink(HubLink):
    """Connects at once and loses the connection at once, after ``chunks`` chunks."""

    kind = "tcp"

    def __init__(self, chunks: int) -> None:
        self.chunks, self.attempts, self.up = chunks, 0, False

    def describe(self) -> str:
        return "test:flapping"

    async def connect(self, on_chunk: ChunkHandler) -> None:
        self.attempts += 1
        for _ in range(self.chunks):
            on_chunk(b"x", 0)

    async def wait_closed(self) -> None:
        return None

    async def send_chunk(self, chunk: bytes) -> None:
        raise LinkError("no")

    @property
    def command_chunk_size(self) -> int:
        return 244

    async def disconnect(self) -> None:
        return None

    @property
    def connected(self) -> bool:
        return False


@pytest.mark.parametrize("chunks", [0, 3])
def test_a_hub_that_accepts_and_closes_costs_few_attempts(chunks: int) -> None:
    """Reconnects back off (hub.wire.backoff); only a connection that carried data resets the
    ladder. Counted over 60 s of simulated time (tests.virtual_clock)."""
    link = _FlappingLink(chunks)

    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(60.0, stop.set)
        await stay_connected(link, lambda c, t: None, stop, connect_timeout=5.0,
                             backoff=Backoff(base_s=0.1, cap_s=2.0))

    vrun(go())
    if chunks:           # each connection delivered: the ladder restarts at 0.05–0.1 s
        assert link.attempts > 600
    else:                # never delivered: capped at 2 s (1–2 s with jitter)
        assert 25 <= link.attempts <= 70


class _Recorder(LinkObserver):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.kinds: list[str] = []
        self.states: list[str] = []
        self.closed: dict[str, Any] | None = None

    def on_chunk(self, host_time_ns: int, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def on_envelope(self, host_time_ns: int, env: pb.Envelope) -> None:
        self.kinds.append(env.WhichOneof("payload") or "")

    def on_link(self, host_time_ns: int, state: str) -> None:
        self.states.append(state)

    def close(self, summary: dict[str, Any]) -> None:
        self.closed = summary


@pytest.mark.parametrize("restart", [False, True])
def test_tcp_session_across_a_dropped_connection(restart: bool) -> None:
    """A TCP peer that speaks the uplink framing drops the connection inside a packet and takes
    the next one: the same hub continues its chunk stream (the cut packet completes), a restarted
    one starts afresh (only the cut packet is lost). Observers see every chunk and packet."""
    first = chunk_stream(envelopes(6, session=1))
    cut = len(first) // 2 + 1
    rest = chunk_stream(envelopes(4, session=2)) if restart else first[cut:]

    async def go() -> tuple[Receiver, _Recorder, dict[str, Any]]:
        conns = 0
        done = asyncio.Event()

        async def serve(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            nonlocal conns
            conns += 1
            part = first[:cut] if conns == 1 else rest
            for c in part:
                w.write(len(c).to_bytes(2, "little") + c)
            await w.drain()
            if conns > 1:
                done.set()
                await asyncio.sleep(30)
            w.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        obs = _Recorder()
        s = HubSession(TcpLink("127.0.0.1", port), observers=[obs], connect_timeout=20,
                       backoff=Backoff(base_s=0.05, cap_s=0.1))
        await s.start()
        await asyncio.wait_for(done.wait(), 20)
        for _ in range(100):                 # the last chunks reach the receiver
            if len(obs.chunks) == cut + len(rest):
                break
            await asyncio.sleep(0.02)
        await s.stop()
        server.close()
        return s.receiver, obs, s.close()

    rx, obs, summary = asyncio.run(go())
    assert len(obs.chunks) == cut + len(rest)
    assert obs.states[:3] == ["connected", "lost", "connected"]
    assert obs.closed is summary and summary["connection"]["connects"] == 2
    assert rx.reassembler.stats.lost_chunks == 0
    if restart:
        assert rx.reconnects == {"continued": 0, "restarted": 1}
        names = [int(m.logger) for m in rx.logs]
        assert names[-4:] == [0, 1, 2, 3] and len(names) < 6 + 4      # the cut one is gone
        assert rx.reassembler.stats.dropped_partial == 1 and rx.packets == len(obs.kinds)
    else:
        assert rx.reconnects == {"continued": 1, "restarted": 0}
        assert rx.packets == len(obs.kinds) == 6


# ---------------------------------------------------------------- against a real hub
@pytest.fixture
def hub(tmp_path: Path) -> Iterator[str]:
    """A `hub run` process with a TCP uplink; yields HOST:PORT of the uplink."""
    with Chain(ChainSpec("synth:4:30000:1", rate_bps=None), tmp_path) as chain:
        chain.start_hub()
        yield chain.ports["uplink"].removeprefix("tcp:")


def hubctl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "host_tools.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def test_record_rejected_setting_prints_the_hubs_message_and_fails(hub: str,
                                                                    tmp_path: Path) -> None:
    """Was: exit 0, nothing printed (the rejection only in the hub's log). A setting only the
    hub can judge (the band's low corner above its high one): its message, exit 1."""
    r = hubctl("record", "--tcp", hub, "--duration", "60", "--set", "band_low_hz=7000",
               "--json", str(tmp_path / "s.json"))
    assert r.returncode == 1, r.stderr
    assert "RESULT_INVALID_ARGUMENT" in r.stderr and "band_low_hz" in r.stderr
    assert "band_low_hz" in (tmp_path / "s.json").read_text()     # the summary still written


def test_record_out_of_range_setting_fails_before_sending() -> None:
    """The issue's reproduction, ``--set threshold=-5``: the settings schema refuses it on the
    host, naming the field, before connecting (was: exit 0, nothing printed)."""
    r = hubctl("record", "--tcp", "127.0.0.1:9", "--duration", "60", "--set", "threshold=-5")
    assert r.returncode == 2 and "threshold" in r.stderr


def test_record_never_connected_fails_even_with_a_duration() -> None:
    """Was: exit 0 after --duration with an all-zero summary."""
    with socket.socket() as s:          # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = hubctl("record", "--tcp", f"127.0.0.1:{port}", "--duration", "1",
                   "--connect-timeout", "30")
    assert r.returncode == 2
    assert "no hub at tcp:127.0.0.1" in r.stderr


def test_record_malformed_setting_fails_before_connecting() -> None:
    r = hubctl("record", "--tcp", "127.0.0.1:9", "--set", "thresold=5")
    assert r.returncode == 2 and "thresold" in r.stderr


def test_session_commands_await_their_results(hub: str) -> None:
    host, port = hub.rsplit(":", 1)

    async def go() -> list[Any]:
        out: list[Any] = []
        async with HubSession(TcpLink(host, int(port)), connect_timeout=30) as s:
            out.append(await s.status())
            out.append(await s.command(pb.Command(schema_version=SCHEMA_VERSION + 7,
                                                  request_status=pb.RequestStatus())))
            try:
                await s.configure(["band_low_hz=7000"])          # only the hub can judge it
            except CommandRejected as e:
                out.append(e)
            out.append(await s.configure(["threshold=6.5"]))
            out.append((await s.status()).config_json)
        return out

    status, mismatch, rejected, ok, config = asyncio.run(go())
    assert status.running is not None
    assert mismatch.code == pb.RESULT_VERSION_MISMATCH
    assert isinstance(rejected, CommandRejected)
    assert rejected.result.code == pb.RESULT_INVALID_ARGUMENT and "band_low_hz" in str(rejected)
    assert ok.code == pb.RESULT_OK and '"threshold": 6.5' in config


def test_record_unreachable_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(HubUnreachable):
            asyncio.run(record(TcpLink("127.0.0.1", port), duration=0.5))


def test_latency_histogram_matches_exact_percentiles_in_fixed_memory() -> None:
    from host_tools.latency import LatencyHistogram

    rng = np.random.default_rng(3)
    v = np.concatenate([rng.lognormal(2.0, 0.6, 50_000), rng.uniform(0, 0.0005, 10)])
    h = LatencyHistogram()
    for part in np.array_split(v, 37):
        h.add(part)
    size = h.counts.nbytes
    h.add(np.zeros(0))
    s = h.summary()
    assert s["n"] == v.size and s["max"] == round(float(v.max()), 2)
    for p in (50, 90, 99):
        assert h.percentile(p) == pytest.approx(np.percentile(v, p, method="inverted_cdf"),
                                                rel=0.003)
    h.add(rng.lognormal(2.0, 0.6, 100_000))
    assert h.counts.nbytes == size < 64_000


@pytest.mark.slow
def test_record_ble_with_no_hub_on_the_air_fails(tmp_path: Path) -> None:
    """Was: ``hubctl record --ble`` exited 0 with an empty summary when no hub was found; it
    fails as the TCP path does (exit 2, the reason on stderr), after --connect-timeout."""
    with Chain(ChainSpec("synth:4:30000:1", uplink="ble", rate_bps=None), tmp_path) as chain:
        air = chain.start_air()                 # a radio with no hub advertising on it
        r = hubctl("record", "--ble", "ihub-01", "--hci",
                   f"tcp-client:127.0.0.1:{air['ports']['host']}", "--keystore",
                   str(tmp_path / "bonds.json"), "--connect-timeout", "3", "--duration", "30",
                   "--json", str(tmp_path / "s.json"))
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "no hub at ble:ihub-01" in r.stderr
