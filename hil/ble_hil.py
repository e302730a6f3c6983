"""HIL scenarios over the virtual radio (hil/scenarios/ble/*.json): the chain with uplink "ble"
(air process, hub ``--uplink ble:``, ``hubctl record --ble``). Same file format and checks as
the TCP scenarios (hil.scenarios.runner), plus ``expect.ble_connects``; ``--scale`` shortens
durations and the link model's outage times together. Writes out/hil/ble_report.{json,md}.

    python -m hil.ble_hil [--only NAME] [--scale 0.25] [--out out/hil]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hil.scenarios.runner import cli, run_one

HERE = Path(__file__).resolve().parent / "scenarios" / "ble"
REPO = HERE.parent.parent.parent


def scaled(chain: dict[str, Any], scale: float) -> dict[str, Any]:
    """The chain with durations and outage windows scaled (never below what they need)."""
    chain = json.loads(json.dumps(chain))
    model = chain.get("link_model") or {}
    outages = model.get("outages", [])
    if scale != 1.0 and outages:
        model["outages"] = [[a * scale, d] for a, d in outages]   # outages keep their length
    need = max((a + d for a, d in model.get("outages", [])), default=0.0)
    need += model.get("supervision_timeout_s", 4.0) + 4.0 if outages else 0.0
    chain["duration_s"] = max(6.0, need, chain["duration_s"] * scale)
    return chain


def intruder_check(it: dict[str, Any]) -> list[str]:
    """The unbonded central must have reached the hub and been refused everything."""
    if "error" in it or not it:
        return [f"intruder: {it.get('error', 'no result')}"]
    bad = []
    if it.get("chunks") or it.get("bytes"):
        bad.append(f"the unbonded intruder received {it['chunks']} notifications")
    if it.get("subscribes"):
        bad.append("the unbonded intruder subscribed to DATA")
    if not any("uthenticat" in e for e in it.get("errors", [])) and not str(
            it.get("control") or "").startswith("error"):
        bad.append(f"no authentication refusal seen by the intruder: {it.get('errors')}")
    return bad


def run_all(out: Path, only: list[str], scale: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for path in sorted(HERE.glob("*.json")):
        sc = json.loads(path.read_text())
        if only and sc["name"] not in only:
            continue
        chain = scaled(sc["chain"], scale)
        chain["packets_out"] = True          # the report's figures read the packet log
        want = sc["expect"].get("ble_connects")

        def connects(s: dict[str, Any], want: int | None = want,
                     refused: bool = bool(sc["expect"].get("intruder_refused"))) -> list[str]:
            got = (s.get("ble") or {}).get("connects")
            bad = [] if want is None or got == want else [
                f"{got} BLE connections, expected {want}"]
            return bad + (intruder_check(s.get("intruder") or {}) if refused else [])

        results[sc["name"]] = run_one(sc, chain, out, ", BLE", connects)
    return results


def main(argv: list[str] | None = None) -> int:
    return cli(argv, __doc__, run_all, "ble_report", "HIL report (BLE over the virtual air)")


if __name__ == "__main__":
    sys.exit(main())
