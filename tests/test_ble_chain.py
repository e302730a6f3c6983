"""The real chain over the virtual radio: simulated implant → hub run (BLE uplink) → air →
hubctl record --ble. A link outage longer than the supervision timeout disconnects both sides;
the host reconnects by itself and no event or feature bin is lost (the hub's outage buffer and
the uplink's replay of unconfirmed notifications), the raw gap is reported, and every raw
sample that was delivered — through the codec, across the reconnect — is bit-exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hil.chain import ChainSpec, run_chain
from hil.implant import synth_recording
from hub.daemon.config_store import HubConfig

pytestmark = pytest.mark.slow


def test_chain_outage_over_ble(tmp_path: Path) -> None:
    synth = "synth:16:30000:4"
    spec = ChainSpec(synth, duration_s=10, uplink="ble", raw_out=True,
                     link_model={"phy": "2M", "interval_ms": 7.5, "supervision_timeout_s": 1.5,
                                 "outages": [[3.0, 3.0]]},
                     config=HubConfig(raw_codec=True))
    s = run_chain(spec, tmp_path)
    c = s["classes"]
    assert s["final_report_seen"]
    assert s["ble"]["connects"] == 2 and s["ble"]["subscribes"] == 2
    for k in ("events", "feature_bins"):
        assert c[k]["produced"] > 0
        assert c[k]["delivered"] == c[k]["produced"], k
    assert all(v["unaccounted"] == 0 and v["lost_packets"] == 0 for v in c.values())
    assert s["link"]["lost_chunks"] == 0 and s["link"]["bad_chunks"] == 0
    assert s["shed_ranges"].get("raw", {}).get("SHED_OUTAGE"), "the raw gap must be reported"
    assert s["time_sync"]["fitted"]
    # raw: bit-exact through the codec and across the reconnect
    assert s["raw_decode"]["undecodable"] == 0
    assert s["raw_decode"]["samples"] == c["raw"]["delivered"] > 0
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
