"""hubctl batch without a cluster: plans, recording discovery, task keys and what they depend
on, error messages, the per-task output routing, the jobqueue job script."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from host_tools.batch_inputs import Input, discover
from host_tools.batch_plan import PlanError, load_plan, plan_from_dict
from host_tools.batch_run import plan_tasks
from host_tools.batch_steps import STEPS, innermost_error
from host_tools.batch_task import StreamRouter, task_key


def _plan(doc: dict[str, Any], tmp: Path, only: list[str] | None = None) -> Any:
    return plan_from_dict({"inputs": [str(tmp)], **doc}, tmp, "test", only)


def _keys(doc: dict[str, Any], tmp: Path) -> dict[str, str]:
    plan = _plan(doc, tmp)
    inp = Input("r", tmp / "r", "raw")
    _, specs = plan_tasks(plan, [inp], {"r": {"sha256": "ab" * 32}}, tmp / "out")
    return {step: spec.key for (_, step), spec in specs.items()}


def test_keys_change_with_parameters_and_with_what_a_step_needs(tmp_path: Path) -> None:
    base = _keys({}, tmp_path)
    raw_steps = {n for n, st in STEPS.items() if not st.kinds or "raw" in st.kinds}
    assert set(base) == raw_steps
    # a calibration setting changes calibrate and sort (seeded with its templates) only
    k = _keys({"calibrate": {"duration_s": 30.0}}, tmp_path)
    assert {s for s in raw_steps if k[s] != base[s]} == {"calibrate", "sort"}
    # a cold sort does not depend on calibrate at all
    cold = _keys({"sort": {"templates": "none"}}, tmp_path)
    cold2 = _keys({"sort": {"templates": "none"}, "calibrate": {"duration_s": 30.0}}, tmp_path)
    assert cold["sort"] == cold2["sort"] != base["sort"]
    # [pipeline] reaches every front-end step; codec does not take it
    k = _keys({"pipeline": {"threshold": 4.5}}, tmp_path)
    assert {s for s in raw_steps if k[s] != base[s]} == {"replay", "calibrate", "sort"}
    # the default written out explicitly is the same task
    assert _keys({"codec": {"block": STEPS["codec"].params["block"]}}, tmp_path) == base
    # the input's content and the code version are in the key
    assert task_key("cd" * 32, "codec", {}, "v1", {}) != task_key("ab" * 32, "codec", {}, "v1",
                                                                   {})
    assert task_key("ab" * 32, "codec", {}, "v1", {}) != task_key("ab" * 32, "codec", {}, "v2",
                                                                   {})


def test_plan_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("inputs = [\n")
    with pytest.raises(PlanError, match="unreadable plan"):
        load_plan(bad)
    with pytest.raises(PlanError, match="unknown key"):
        _plan({"stepz": ["replay"]}, tmp_path)
    with pytest.raises(PlanError, match="unknown step"):
        _plan({"steps": ["replay", "resort"]}, tmp_path)
    with pytest.raises(PlanError, match="not among the plan's steps"):
        _plan({"steps": ["replay"]}, tmp_path, only=["codec"])
    with pytest.raises(PlanError, match=r"\[cluster\] unknown key"):
        _plan({"cluster": {"nodes": 3}}, tmp_path)
    with pytest.raises(PlanError, match="kind"):
        _plan({"cluster": {"kind": "kubernetes"}}, tmp_path)
    # bad settings inside a step's table fail that step only
    p = _plan({"codec": {"blocks": 3}, "replay": {"treshold": 5.0},
               "sort": {"templates": "nowhere.npz"}, "calibrate": {"min_spikes": "many"}},
              tmp_path)
    assert "unknown setting 'blocks'" in p.errors["codec"]
    assert "unknown pipeline setting 'treshold'" in p.errors["replay"]
    assert "does not exist" in p.errors["sort"]
    assert "min_spikes='many'" in p.errors["calibrate"]


def test_plan_defaults_and_templates(tmp_path: Path) -> None:
    p = _plan({}, tmp_path)
    assert p.steps == list(STEPS) and p.params["sort"]["templates"] == "calibrate"
    assert p.needs("sort") == ("calibrate",)
    p = _plan({"steps": ["replay", "sort"]}, tmp_path)
    assert p.params["sort"]["templates"] == "none" and p.needs("sort") == ()
    p = _plan({"steps": ["calibrate", "sort"]}, tmp_path, only=["sort"])
    assert p.steps == ["sort"] and p.needs("sort") == ("calibrate",)
    (tmp_path / "t.npz").write_bytes(b"x")
    p = _plan({"sort": {"templates": "t.npz"}}, tmp_path)
    assert p.params["sort"]["templates"] == str(tmp_path / "t.npz")
    assert len(p.params["sort"]["templates_sha256"]) == 64
    p = _plan({"pipeline": {"band_low_hz": 250.0}, "sort": {"sort_settings":
                                                            {"birth_spikes": 8}}}, tmp_path)
    assert not p.errors
    assert p.params["sort"]["pipeline"] == {"band_low_hz": 250.0,
                                            "sort_settings": {"birth_spikes": 8}}


def _touch(p: Path, data: bytes = b"") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_discover(tmp_path: Path) -> None:
    root = tmp_path / "lab"
    _touch(root / "a.wav")
    _touch(root / "b.bin")
    _touch(root / "b.json")
    _touch(root / "notes.txt")
    _touch(root / "day1" / "probe" / "ch0.wav")
    _touch(root / "day1" / "probe" / "ch1.wav")
    _touch(root / "day1" / "s.nwb")
    _touch(root / "day1" / "sorted" / "binary.json")
    _touch(root / ".hidden" / "x.wav")
    found = {i.name: i.kind for i in discover([(root, "")])}
    assert found == {"a.wav": "wav", "b.bin": "raw", "day1__probe": "wav_stack",
                     "day1__s.nwb": "nwb", "day1__sorted": "si_folder"}
    stack = discover([(root / "day1" / "probe", "wav_stack"), (tmp_path / "gone", "")])
    assert [(i.name, i.kind) for i in stack] == [("probe", "wav_stack"), ("gone", "missing")]
    # a folder given is searched, so a folder of WAVs given is WAVs, not a stack
    assert {i.kind for i in discover([(root / "day1" / "probe", "")])} == {"wav"}
    twice = discover([(root / "a.wav", ""), (root / "a.wav", "")])
    assert [i.name for i in twice] == ["a.wav", "a.wav~1"]


def test_innermost_error() -> None:
    trace = ("Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n"
             "ValueError: needs a probe\n\nSpike sorting failed. See the log.")
    assert innermost_error(trace) == "ValueError: needs a probe"
    assert innermost_error("plain message\nsecond line") == "plain message"


def test_stream_router_sends_each_thread_to_its_own_target() -> None:
    default, mine, other = io.StringIO(), io.StringIO(), io.StringIO()
    r = StreamRouter(default)
    r.local.target = mine

    def elsewhere() -> None:
        r.write("from a sorter thread\n")
        r.local.target = other
        r.write("from another task\n")

    t = threading.Thread(target=elsewhere)
    t.start()
    t.join()
    r.write("from this task\n")
    assert (default.getvalue(), mine.getvalue(), other.getvalue()) == (
        "from a sorter thread\n", "from this task\n", "from another task\n")


def test_unreadable_plan_is_a_clear_error_with_a_summary(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from host_tools.cli import main

    plan = tmp_path / "plan.toml"
    plan.write_text('inputs = ["x"]\nsteps = "replay"\n')
    assert main(["batch", str(plan), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "'steps' must be a non-empty list" in err and "Traceback" not in err
    s = json.loads((tmp_path / "out" / "batch_summary.json").read_text())
    assert s["recordings"] == [] and "steps" in s["error"]


def test_slurm_job_script_pins_threads(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    from host_tools.batch_cluster import jobqueue_cluster

    cluster = jobqueue_cluster("slurm", 2, {"queue": "short", "scheduler_options": {
        "host": "127.0.0.1"}}, dashboard=False)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH -p short" in script
    assert "export OMP_NUM_THREADS=2" in script and "export NUMBA_NUM_THREADS=2" in script
    assert "--nthreads 1" in script  # one task at a time per worker, two cores for it



def test_a_step_for_some_input_kinds_is_listed_apart_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from host_tools.batch_report import build_summary
    from host_tools.batch_steps import Step

    monkeypatch.setitem(STEPS, "nwbonly", Step("nwbonly", lambda ctx: {}, "test",
                                               kinds=("nwb",)))
    plan = _plan({"steps": ["replay", "nwbonly"]}, tmp_path)
    inputs = [Input("a", tmp_path / "a.nwb", "nwb"), Input("b", tmp_path / "b.bin", "raw")]
    fps = {i.name: {"sha256": "ab" * 32} for i in inputs}
    decided, specs = plan_tasks(plan, inputs, fps, tmp_path / "out")
    assert set(specs) == {("a", "replay"), ("a", "nwbonly"), ("b", "replay")}
    s = build_summary(plan, inputs, fps, decided, tmp_path / "out", 0.0)
    b = s["recordings"][1]
    assert "nwbonly" not in b["steps"] and "raw" in b["not_applicable"]["nwbonly"]


def test_discover_skips_the_output_folder(tmp_path: Path) -> None:
    _touch(tmp_path / "a.wav")
    _touch(tmp_path / "out" / "a.wav" / "sort" / "sorting" / "si_folder.json")
    assert [i.name for i in discover([(tmp_path, "")], exclude=tmp_path / "out")] == ["a.wav"]


def test_float_recording_with_a_gap_is_refused_not_zeroed() -> None:
    import numpy as np
    import spikeinterface.core as si

    from host_tools.batch_inputs import recording_from_si
    from hub.sources import RecordingError

    x = np.ones((100, 2), np.float32)
    x[40, 1] = np.nan
    rec = recording_from_si(si.NumpyRecording([x], 30000.0), "gap")
    assert rec.read(0, 30).shape == (30, 2)
    with pytest.raises(RecordingError, match="sample 40 of channel 1"):
        rec.read(30, 60)
