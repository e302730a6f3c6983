"""The sorting harness's own logic on tiny generated inputs: family generation is deterministic
and seed-dependent (the harness's generator and the stock one), the tune/report split holds
through the offline-cache filler, recording keys of the existing families did not change when
fields were added, the real-data pair matching, and the report renderer."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("spikeinterface")

from bench import sorting_families as sf
from bench.common import REPO


def _traces(f: sf.Family, seed: int) -> np.ndarray:
    rec, _gt = sf.generate(f, seed)
    return np.asarray(rec.get_traces(start_frame=0, end_frame=3000))


@pytest.mark.parametrize("name", ["linear16", "drift_zigzag32", "si_static32", "si_drift64"])
def test_generation_is_deterministic_per_seed(name: str) -> None:
    # the stock drifting generator starts its drift at 60 s (its default): it needs more
    f = replace(sf.family(name), duration_s=61.0 if name == "si_drift64" else 2.0, num_units=3)
    a, b, c = _traces(f, 2), _traces(f, 2), _traces(f, 3)
    assert a.shape == (3000, f.num_channels)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_split_and_quick_sizes() -> None:
    from bench import sorting_fill

    assert set(sf.TUNE_SEEDS).isdisjoint(sf.REPORT_SEEDS)
    jobs = sorting_fill.jobs(list(sf.FAMILIES), quick=True)
    assert {j.seed for j in jobs} == set(sf.REPORT_SEEDS)
    for f in sf.FAMILIES:   # the outside check keeps the outsider's size with --quick
        assert sf.quick(f).duration_s == (f.duration_s if f.stock
                                          else max(30.0, f.duration_s / 2))
    # value order: the outside check's calibration segments first, then the matrix's
    tiers = [j.tier for j in jobs]
    assert tiers == sorted(tiers) and jobs[0].family.stock and jobs[0].duration_s is not None
    zig = sf.family("drift_zigzag32")
    # a true zigzag: more than one full period (up and back down, twice reversed) even quick
    assert zig.drift == "zigzag"
    assert sf.quick(zig).duration_s - zig.drift_start_s > zig.drift_period_s


def test_existing_keys_unchanged_by_added_fields() -> None:
    import spikeinterface

    f = sf.quick(sf.family("linear16"))
    old = asdict(f)
    del old["stock"]
    spec = json.dumps({"family": old, "seed": 2, "si": spikeinterface.__version__,
                       "lsb_uV": sf.LSB_UV, "v": 1}, sort_keys=True)
    assert sf.key(f, 2) == f"linear16-s2-{hashlib.sha256(spec.encode()).hexdigest()[:12]}"
    assert sf.key(sf.family("si_static32"), 2) != sf.key(
        replace(sf.family("si_static32"), stock=""), 2)


def test_fill_lists_only_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import sorting_fill

    monkeypatch.setattr(sf, "CACHE", tmp_path)
    jobs = sorting_fill.jobs([sf.family("linear16")], quick=True)
    assert len(jobs) == 3 * 4      # 3 report seeds × (calibration segment + 3 sorters)
    done = jobs[0].path().with_suffix(".json")
    done.parent.mkdir(parents=True)
    # made with other parameters (before the sorter's randomness was seeded): stale
    done.write_text(json.dumps({"error": "cached failure is a result", "params": {}}))
    assert jobs[0] in sorting_fill.missing(jobs)
    params = sorting_fill.ev.sorter_params(jobs[0].sorter)
    done.write_text(json.dumps({"error": "cached failure is a result", "params": params}))
    assert jobs[0] not in sorting_fill.missing(jobs) and len(sorting_fill.missing(jobs)) == 11


def test_matched_pairs_are_one_to_one() -> None:
    import pandas as pd

    from bench.bench_sorting_real import matched_pairs

    scores = pd.DataFrame([[0.9, 0.8, 0.0], [0.85, 0.1, 0.0], [0.0, 0.0, 0.3]],
                          index=["h0", "h1", "h2"], columns=["o0", "o1", "o2"])
    pairs = matched_pairs(scores)
    # the greedy best (h0-o0) would leave h1 unmatched; the assignment pairs both
    assert [(p["a"], p["b"]) for p in pairs] == [("h1", "o0"), ("h0", "o1")]


def _run(acc: list[float], found: int, fp: int, **extra: Any) -> dict[str, Any]:
    return {"accuracies": acc, "units_found": found, "well_detected": sum(a >= .8 for a in acc),
            "false_positive_units": fp, "redundant_units": 0, **extra}


def test_renderer_on_a_tiny_result(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench import sorting_report
    from bench.bench_sorting_gen import headline, summarise

    recs = []
    for fam, seeds in (("linear16", (2, 3)), ("drift_zigzag32", (2,)), ("si_static32", (2,))):
        for s in seeds:
            runs: dict[str, Any] = {
                "hub cold": _run([0.9, 0.7], 3, 1, added_fraction=0.2,
                                 memory_bytes_per_channel=20480.0),
                "mountainsort5": _run([0.95, 0.99], 2, 0, wall_s=3.0)}
            if fam == "drift_zigzag32":
                runs["tridesclous2"] = {"error": "ValueError: no peaks"}
            recs.append({"family": fam, "seed": s, "gt_units_snr5": 2, "runs": runs})
    fams = summarise(recs)
    res = {"quick": True, "split": "report", "seeds": [2, 3], "tune_seeds": [0, 1],
           "report_seeds": [2, 3, 4], "settings": {}, "families": fams,
           "headline": headline(fams, {"drift_zigzag32"}), "recordings": recs}
    doc = tmp_path / "sorting.md"
    text = sorting_report.render(res, {"skipped": "no data"}, doc)
    assert (tmp_path / "sorting_families.png").stat().st_size > 0
    assert "worst family **linear16 0.800**" in text
    assert "| **linear16** (4 GT units) | hub cold | 2/2 | 0.800 | 2 | 2 | 0 | 6 | 33 % | 0.20 | " \
           "20.0 KiB |" in text
    assert "| TDC2 | 0/1 | error: ValueError: no peaks |" in text
    assert "## The outside check" in text and "0.685" in text
    assert "| SC2 | 0/2 | not run |" in text
    assert "Skipped: no data." in text


def test_diagnose_refuses_report_seeds_and_orders_ground_truth(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import spikeinterface.core as si

    from bench import sorting_diagnose as sd

    # looking inside a held-out recording is tuning on it: refused before any work
    monkeypatch.setattr("sys.argv", ["sorting_diagnose", "dense32", str(sf.REPORT_SEEDS[0])])
    assert sd.main() == 2
    gt = si.NumpySorting.from_unit_dict({"a": np.array([5, 40]), "b": np.array([1, 20, 60])},
                                        30000.0)
    t, i = sd._gt_vector(gt)
    assert t.tolist() == [1, 5, 20, 40, 60]
    assert [str(gt.unit_ids[k]) for k in i] == ["b", "a", "b", "a", "b"]


def test_real_data_bench_help_runs_nothing() -> None:
    """`--help` prints the usage and exits (it used to run the whole benchmark); an unknown
    argument is refused."""
    def bench(arg: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bench.bench_sorting_real", arg], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    ok = bench("--help")
    assert ok.returncode == 0 and "usage: python -m bench.bench_sorting_real" in ok.stdout
    assert "locust" in ok.stdout
    bad = bench("--bogus")
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr
