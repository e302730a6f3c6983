"""The real chain over the virtual radio: simulated implant → hub run (BLE uplink) → air →
hubctl record --ble. A link outage longer than the supervision timeout disconnects both sides;
the host reconnects by itself and no event or feature bin is lost (the hub's outage buffer and
the uplink's replay of unconfirmed notifications), while the raw gap is reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.bench import bench_ble

pytestmark = pytest.mark.slow


def test_chain_outage_over_ble(tmp_path: Path) -> None:
    model = {"phy": "2M", "interval_ms": 7.5, "supervision_timeout_s": 1.5,
             "outages": [[3.0, 3.0]]}
    r = bench_ble.chain(tmp_path, 10.0, model, channels=16)
    c = r["classes"]
    assert r["final_report_seen"]
    assert r["ble"]["connects"] == 2 and r["ble"]["subscribes"] == 2
    for k in ("events", "feature_bins"):
        assert c[k]["produced"] > 0
        assert c[k]["delivered"] == c[k]["produced"], k
    assert all(v["unaccounted"] == 0 and v["lost_packets"] == 0 for v in c.values())
    assert r["raw_shed_ranges"].get("SHED_OUTAGE"), "the raw gap must be reported"
    assert r["time_sync"]["fitted"]


def test_raw_is_bit_exact_over_ble(tmp_path: Path) -> None:
    """Raw broadband through the codec, over the virtual radio, decoded at the host: every
    delivered sample equals the recording's (no duplicate or corrupt chunk, also after the
    uplink's replay of unconfirmed notifications)."""
    import numpy as np

    from hil.chain import ChainSpec, run_chain
    from hil.implant import synth_recording
    from hub.config_store import HubConfig

    synth = "synth:16:30000:4"
    spec = ChainSpec(synth, duration_s=6, uplink="ble", raw_out=True,
                     link_model={"phy": "2M", "interval_ms": 7.5},
                     config=HubConfig(raw_codec=True))
    s = run_chain(spec, tmp_path)
    assert s["raw_decode"]["undecodable"] == 0
    assert s["raw_decode"]["samples"] == s["classes"]["raw"]["delivered"] > 0
    rec = synth_recording(synth)
    raw = np.load(tmp_path / "raw.npz")
    checked = 0
    for key in raw.files:
        if key.endswith(("_first", "_len")):
            continue
        ch, pos = int(key[2:]), 0
        for first, n in zip(raw[f"{key}_first"], raw[f"{key}_len"], strict=True):
            a = int(first) % rec.num_samples
            assert (raw[key][pos:pos + n] == rec.read(a, a + int(n))[:, ch]).all()
            pos += int(n)
            checked += int(n)
    assert checked == s["raw_decode"]["samples"]
