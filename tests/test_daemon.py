"""Integration: the chain as separate processes (simulated implant → `hub run` → TCP uplink →
`hubctl record`), on 127.0.0.1 with ephemeral ports, short runs. The HIL report (`make hil`)
runs the same scenarios longer (60 s)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from hil.chain import ChainSpec, run_chain
from hub.daemon.telemetry import sd_notify

pytestmark = pytest.mark.slow
SYNTH = "synth:64:30000:4"
DATA = ("events", "feature_bins")


def assert_accounted(s: dict[str, Any]) -> None:
    assert s["final_report_seen"], "the hub's final shed report never arrived"
    for name, row in s["classes"].items():
        assert row["unaccounted"] == 0, (name, row)
        assert row["lost_packets"] == 0, (name, row)
        assert row["queued"] == 0, (name, row)


def test_capped_link_delivers_every_event_and_bin(tmp_path: Path) -> None:
    s = run_chain(ChainSpec(SYNTH, duration_s=8, rate_bps=1.3e6), tmp_path)
    assert_accounted(s)
    c = s["classes"]
    for name in DATA:
        assert c[name]["produced"] > 0 and c[name]["shed"] == 0
        assert c[name]["delivered"] == c[name]["produced"]
    assert c["raw"]["delivered"] > 0 and c["raw"]["shed"] > 0   # some raw fits, not all
    assert s["shed_by_reason"]["raw"].get("SHED_BUDGET", 0) > 0  # the cap, not a fault
    assert s["latency_ms"]["events"]["n"] > 0     # measured (figures: make bench, bench_daemon)
    assert s["hub_exit_code"] == 0                       # SIGTERM: drained, clean exit
    assert s["time_sync"]["fitted"]                      # TCP fits time sync as BLE does
    logs = [json.loads(line) for line in (tmp_path / "hub.log").read_text().splitlines()]
    assert {"t", "level", "logger", "msg"} <= set(logs[0])   # structured JSON logs


def test_rate_cut_and_outage_shed_only_lower_classes(tmp_path: Path) -> None:
    spec = ChainSpec(SYNTH, duration_s=12, rate_bps=1.3e6,
                     link_schedule="3:rate=260e3,7:outage=3")
    s = run_chain(spec, tmp_path)
    assert_accounted(s)
    c = s["classes"]
    for name in DATA:
        assert c[name]["shed"] == 0 and c[name]["delivered"] == c[name]["produced"] > 0
    reasons = s["shed_by_reason"]
    assert reasons["raw"].get("SHED_OUTAGE", 0) > 0 and reasons["raw"].get("SHED_BUDGET", 0) > 0
    outage = s["shed_ranges"]["raw"]["SHED_OUTAGE"]
    assert outage and outage[0][1] > outage[0][0] >= 0        # the raw gap, as sample ranges


def test_implant_faults_are_counted_and_stream_goes_on(tmp_path: Path) -> None:
    spec = ChainSpec(SYNTH, duration_s=6, rate_bps=1.3e6, drop=0.01, corrupt=0.01,
                     garbage=0.01)
    s = run_chain(spec, tmp_path)
    assert_accounted(s)
    tel = s["hub_telemetry"]
    imp = s["implant"]
    assert tel["link_corrupt"] >= imp["corrupted"] > 0
    assert tel["link_missing_frames"] >= imp["dropped_fault"] > 0
    gaps = [g for g in s["gaps"] if g["reason"] == "SHED_IMPLANT_GAP"]
    assert gaps and s["classes"]["events"]["delivered"] > 0


def test_sigkill_restart_keeps_config_and_host_sees_gap(tmp_path: Path) -> None:
    spec = ChainSpec(SYNTH, duration_s=8, rate_bps=1.3e6, settings=["threshold=6.5"],
                     kill_hub_at=3.0, restart_after=1.0)
    s = run_chain(spec, tmp_path)
    assert len(s["sessions"]) == 2 and s["hub_kills"]
    assert s["command_results"][0]["code"] == "RESULT_OK"
    assert s["hub_telemetry"]["config"]["pipeline"]["threshold"] == 6.5   # after the restart
    seen = [g for g in s["gaps"] if g["reason"] == "hub_restart_seen_by_host"]
    reported = [g for g in s["gaps"] if g["reason"] == "SHED_HUB_RESTART"]
    assert seen and seen[0]["end_sample"] > seen[0]["first_sample"]
    assert reported and reported[0]["end_sample"] == seen[0]["end_sample"]
    assert s["final_report_seen"]


def test_sd_notify_datagram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sd_notify("READY=1")
        assert srv.recv(100) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")
    assert os.path.exists(path)


def test_watchdog_restarts_a_failed_stage_and_the_stream_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process: the pipeline stage raises once; the watchdog restarts it, the session and
    sequence numbers survive, and events keep coming."""
    import asyncio

    import numpy as np

    from hil.implant import synth_recording
    from hub.daemon.supervisor import Daemon, DaemonOptions
    from hub.link import encode_frame
    from hub.uplink.tcp import TcpUplink

    rec = synth_recording("synth:16:30000:2")

    from hub.daemon.engine import PipelineStage

    original = PipelineStage.process
    calls = [0]
    stages: list[PipelineStage] = []

    def flaky(self: PipelineStage, *a: Any) -> Any:
        calls[0] += 1
        if self not in stages:
            stages.append(self)
        if calls[0] == 30:
            raise RuntimeError("injected kernel failure")
        return original(self, *a)

    async def go() -> tuple[int, int, int]:
        daemon = Daemon(DaemonOptions(implant="tcp:127.0.0.1:0", state_dir=tmp_path,
                                      telemetry_s=0.2), TcpUplink(rate_bps=None))
        run = asyncio.create_task(daemon.run())
        while not daemon.transport.address.split(":")[-1].isdigit() or \
                daemon.transport.address.endswith(":0"):
            await asyncio.sleep(0.01)
        host, port = daemon.transport.address[4:].rsplit(":", 1)
        _, w = await asyncio.open_connection(host, int(port))
        for k in range(1500):                       # 1.5 s of frames, 1 ms each
            w.write(encode_frame(k, np.ascontiguousarray(rec.read(k * 30, k * 30 + 30)),
                                 30000))
            if k % 50 == 0:
                await w.drain()
                await asyncio.sleep(0.02)
        await w.drain()
        for _ in range(1200):             # until the stream is processed (hang guard: 60 s)
            if daemon.stage_counters().blocks >= 149:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
        blocks = daemon.stage_counters().blocks
        daemon._stop.set()
        await run
        w.close()
        return daemon.stage_restarts, blocks, daemon.scheduler.classes[3].produced

    monkeypatch.setattr(PipelineStage, "process", flaky)
    restarts, blocks, events = asyncio.run(go())
    assert restarts == 1
    assert len(stages) == 2 and stages[0] is not stages[1]     # a fresh stage object
    assert blocks >= 140          # 150 blocks of 10 ms, one lost to the injected failure
    assert events > 0


def test_commands_in_process_sort_and_templates(tmp_path: Path) -> None:
    """Configure sort=true, then LoadTemplates reaches the online sorter (in the worker);
    before sorting is on, templates are refused with UNSUPPORTED; the config is persisted."""
    import asyncio

    import numpy as np

    from hil.implant import synth_recording
    from hub.daemon.config_store import ConfigStore
    from hub.daemon.supervisor import Daemon, DaemonOptions
    from hub.link import encode_frame
    from hub.uplink.tcp import TcpUplink
    from hub.wire import SCHEMA_VERSION, pb

    rec = synth_recording("synth:16:30000:2")
    templates = pb.LoadTemplates(n_units=2, n_channels=1, n_samples=48,
                                 waveforms=[-50.0] * 96, channels=[0, 5], unit_ids=[7, 9])

    def cmd(rid: int, **kw: Any) -> bytes:
        return pb.Command(request_id=rid, schema_version=SCHEMA_VERSION,
                          **kw).SerializeToString()

    async def go() -> list[pb.CommandResult]:
        daemon = Daemon(DaemonOptions(implant="tcp:127.0.0.1:0", state_dir=tmp_path),
                        TcpUplink(rate_bps=None))
        run = asyncio.create_task(daemon.run())
        while daemon.transport.address.endswith(":0"):
            await asyncio.sleep(0.01)
        host, port = daemon.transport.address[4:].rsplit(":", 1)
        _, w = await asyncio.open_connection(host, int(port))
        results = []

        async def stream(k0: int, n: int) -> None:
            for k in range(k0, k0 + n):
                w.write(encode_frame(k, np.ascontiguousarray(rec.read(k * 30, k * 30 + 30)),
                                     30000))
            await w.drain()
            for _ in range(1200):         # until the worker processed them (hang guard: 60 s)
                if daemon.stage_counters().blocks >= (k0 + n) * 30 // 300 - 1:
                    break
                await asyncio.sleep(0.05)

        await stream(0, 100)
        results.append(await daemon.control.handle(cmd(1, load_templates=templates)))
        results.append(await daemon.control.handle(cmd(2, configure=pb.Configure(
            pipeline=pb.PipelineSettings(sort=True)))))
        await stream(100, 100)
        results.append(await daemon.control.handle(cmd(3, load_templates=templates)))
        bad = pb.LoadTemplates()
        bad.CopyFrom(templates)
        bad.channels[1] = 99
        results.append(await daemon.control.handle(cmd(4, load_templates=bad)))
        daemon._stop.set()
        await run
        w.close()
        return results

    res = asyncio.run(go())
    assert [r.code for r in res] == [pb.RESULT_UNSUPPORTED, pb.RESULT_OK, pb.RESULT_OK,
                                     pb.RESULT_INVALID_ARGUMENT], [r.message for r in res]
    saved = ConfigStore(tmp_path).load_config()
    assert saved is not None and saved.pipeline.sort is True


@pytest.mark.parametrize("codec", [True, False])
def test_raw_arrives_bit_exact(tmp_path: Path, codec: bool) -> None:
    """Raw broadband (codec or int16) decodes at the host to exactly the implant's samples;
    the codec fits more raw into the same link."""
    import numpy as np

    from hil.implant import synth_recording
    from hub.daemon.config_store import HubConfig

    spec = ChainSpec(SYNTH, duration_s=6, rate_bps=1.3e6, raw_out=True,
                     config=HubConfig(raw_codec=codec))
    s = run_chain(spec, tmp_path)
    assert_accounted(s)
    assert s["raw_decode"]["undecodable"] == 0
    assert s["raw_decode"]["samples"] == s["classes"]["raw"]["delivered"] > 0
    if codec:
        assert s["raw_decode"]["compression"] > 1.5
    rec = synth_recording(SYNTH)
    raw = np.load(tmp_path / "raw.npz")
    checked = 0
    for key in raw.files:
        if not key.endswith(("_first", "_len")):
            ch = int(key[2:])
            pos = 0
            for first, n in zip(raw[f"{key}_first"], raw[f"{key}_len"], strict=True):
                a = int(first) % rec.num_samples
                want = rec.read(a, a + int(n))[:, ch]
                assert (raw[key][pos:pos + n] == want).all(), (ch, first)
                pos += int(n)
                checked += int(n)
    assert checked == s["raw_decode"]["samples"]
