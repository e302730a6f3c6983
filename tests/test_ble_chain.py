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
