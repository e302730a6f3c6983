"""The steps a batch can run on each recording — a table, so a new step is one ``register``.

A step is a function ``run(ctx) -> headline`` that writes its outputs into ``ctx.out`` (a
temporary folder the batch renames into place when the step succeeds) and returns a few
headline figures (plain JSON values) for the summary table. It declares its parameters with
their defaults (the plan may set exactly these), whether it takes the hub front-end settings
(``[pipeline]``: PipelineConfig fields), which steps it needs (as a function of its parameters),
and which code makes it: the source of those modules and the versions of those distributions
are part of every task key, so an improved sorter re-sorts and an unchanged one does not.

Steps here: ``replay`` (hub front-end: hub.dsp.replay), ``calibrate`` (an offline SpikeInterface
sorter → hub templates: host_tools.calibrate; in a batch the sorter is a Dask task of its own,
SpikeInterface's ``run_sorter`` as run_sorter_jobs' Dask engine submits it), ``sort`` (the hub's
online sorter, cold or seeded with this batch's calibration or a templates file:
hub.dsp.sorting), ``codec`` (the lossless codec round trip, verified byte for byte:
host_tools.codec_container), and ``report`` (``hubctl view`` of an NWB session:
host_tools.view_cli, registered when that module is installed). Not yet a step: ``decode``
(host_tools.decoding) — it needs kinematics per recording, which batch inputs do not carry
(a NAME.kinematics.npz sidecar with Y and bin_s, X from the replay step's events binned per
channel, host_tools.decoding.evaluate.cross_validate: one ``register`` with a per-input
applicability check).
"""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import time
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from host_tools.batch_inputs import Input, open_input, si_recording
from hub.kernels.codec import DEFAULT_RESYNC
from hub.sources import Recording

log = logging.getLogger(__name__)

#: what every step's code version includes besides its own modules
COMMON_CODE = ("host_tools.batch_steps", "host_tools.batch_inputs", "host_tools.batch_task",
               "hub.sources", "hub.kernels")
FRONT_END_CODE = ("hub.dsp",)


@dataclass
class StepContext:
    """What a step function gets: its input, resolved parameters, the folder to write into,
    the results of the steps it needs (each with ``dir``, that step's output folder), the
    number of cores it may use, and a folder of work the batch ran for it beforehand."""

    input: Input
    params: dict[str, Any]
    out: Path
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    threads: int = 1
    prepared: Path | None = None  # work the batch ran before this step (calibrate: sorter)
    _rec: Recording | None = None

    def recording(self) -> Recording:
        if self._rec is None:
            self._rec = open_input(self.input)
        return self._rec

    def pipeline_config(self, **forced: Any) -> Any:
        return pipeline_config(self.params.get("pipeline", {}), **forced)


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[StepContext], dict[str, Any]]
    help: str
    params: Mapping[str, Any] = field(default_factory=dict)
    pipeline: bool = False
    needs: Callable[[Mapping[str, Any]], tuple[str, ...]] = lambda params: ()
    code: tuple[str, ...] = ()
    libs: tuple[str, ...] = ("numpy",)
    cost: int = 1  # relative run time; longer tasks are scheduled first
    kinds: tuple[str, ...] = ()  # input kinds it applies to (empty: all)


STEPS: dict[str, Step] = {}


def register(step: Step) -> None:
    """Adds a step to the table (later steps may need earlier ones)."""
    STEPS[step.name] = step


def pipeline_config(settings: Mapping[str, Any], **forced: Any) -> Any:
    """A PipelineConfig from plan settings (lists → tuples, tables → nested dataclasses)."""
    from hub.dsp.pipeline import PipelineConfig

    defaults = PipelineConfig()
    kw: dict[str, Any] = {}
    for k, v in {**settings, **forced}.items():
        d = getattr(defaults, k)
        if is_dataclass(d) and not isinstance(d, type) and isinstance(v, Mapping):
            v = replace(d, **v)
        elif isinstance(d, tuple):
            v = tuple(v)
        kw[k] = v
    return PipelineConfig(**kw)


def check_pipeline_settings(settings: Mapping[str, Any]) -> None:
    """Raises ValueError naming an unknown PipelineConfig field or a value of the wrong type."""
    from hub.dsp.pipeline import PipelineConfig

    known = {f.name: getattr(PipelineConfig(), f.name) for f in fields(PipelineConfig)}
    for k, v in settings.items():
        if k not in known:
            raise ValueError(f"unknown pipeline setting {k!r} (known: {', '.join(known)})")
        d = known[k]
        if is_dataclass(d):
            if not isinstance(v, Mapping):
                raise ValueError(f"pipeline setting {k!r} must be a table")
            sub = {f.name for f in fields(d)}
            bad = set(v) - sub
            if bad:
                raise ValueError(f"unknown {k} setting(s) {sorted(bad)} (known: {sorted(sub)})")
        elif not _same_type(v, d):
            raise ValueError(f"pipeline setting {k}={v!r}: want a {type(d).__name__}")


def _same_type(v: Any, d: Any) -> bool:
    if isinstance(d, bool) or isinstance(v, bool):
        return isinstance(v, bool) and isinstance(d, bool)
    if isinstance(d, float):
        return isinstance(v, int | float)
    if isinstance(d, tuple):
        return isinstance(v, list | tuple) and len(v) == len(d)
    return isinstance(v, type(d))


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, default=_jsonable))


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


# ------------------------------------------------------------------------------ replay
def run_replay(ctx: StepContext) -> dict[str, Any]:
    """hub.dsp.replay over the recording → events.npz + summary.json."""
    from hub.dsp.replay import replay, save_events

    rec = ctx.recording()
    res = replay(rec, ctx.pipeline_config(), progress=None)
    save_events(ctx.out / "events.npz", res.events, rec.sampling_frequency)
    write_json(ctx.out / "summary.json", res.summary)
    s = res.summary
    return {"spikes": s["spikes_total"], "rate_hz": round(s["spike_rate_hz_mean"], 2),
            "noise_uV_median": round(float(np.median(s["noise_uV_per_channel"])), 2),
            "realtime_x": round(s["realtime_factor"] or 0.0, 1)}


# ------------------------------------------------------------------------------ calibrate
def sorter_params(sorter: str, given: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The sorter's parameters with its inner parallelism pinned to `threads` (n_jobs, job
    kwargs), progress bars off and unseeded randomness seeded (calibrate.seeded_params), unless
    the plan set them."""
    import spikeinterface.sorters as ss

    from host_tools.calibrate import seeded_params

    try:
        defaults = ss.get_default_sorter_params(sorter)
    except (KeyError, ValueError, AttributeError) as e:
        raise ValueError(f"unknown SpikeInterface sorter {sorter!r}") from e
    out = seeded_params(sorter, dict(given))
    if "n_jobs" in defaults:
        out.setdefault("n_jobs", threads)
    if "progress_bar" in defaults:
        out.setdefault("progress_bar", False)
    if "job_kwargs" in defaults:
        out["job_kwargs"] = {"n_jobs": threads, "progress_bar": False,
                             **(defaults["job_kwargs"] or {}), **dict(given.get("job_kwargs", {}))}
    return out


def calibration_segment(rec: Recording, p: Mapping[str, Any]) -> tuple[int, int]:
    """Samples [first, last) the calibration sorts; ValueError when less than a second."""
    fs = rec.sampling_frequency
    first = round(p["start_s"] * fs)
    last = min(rec.num_samples, first + round(p["duration_s"] * fs))
    if last - first < fs:
        raise ValueError(f"calibration segment of {(last - first) / fs:.2f} s is too short "
                         f"(recording is {rec.duration_s:.2f} s; need ≥ 1 s from start_s)")
    return first, last


def sorter_job(inp: Input, p: Mapping[str, Any], threads: int, folder: Path) -> dict[str, Any]:
    """Keyword arguments of SpikeInterface's ``run_sorter`` for the calibration segment of
    `inp` — one job as ``run_sorter_jobs`` takes it. The recording is a lazy SpikeInterface
    object (pickled by reference to its files); raise_error=False: a failing sorter is a result
    read from its log (``read_sorter_result``), not an exception."""
    first, last = calibration_segment(open_input(inp), p)
    return dict(sorter_name=p["sorter"], recording=si_recording(inp).frame_slice(first, last),
                folder=folder, remove_existing_folder=True, verbose=False, raise_error=False,
                with_output=False, **sorter_params(p["sorter"], p["sorter_params"], threads))


def read_sorter_result(folder: Path, sorter: str) -> tuple[Any, float]:
    """(sorting, sorter seconds) from a finished run_sorter folder; RuntimeError naming the
    innermost error if the sorter failed (the whole trace goes to the log)."""
    import spikeinterface.sorters as ss

    try:
        run_log = json.loads((folder / "spikeinterface_log.json").read_text())
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{sorter} left no readable log in {folder}") from e
    if run_log.get("error"):
        trace = str(run_log.get("error_trace", ""))
        log.error("%s failed:\n%s", sorter, trace)
        raise RuntimeError(f"{sorter} failed: {innermost_error(trace)}")
    return ss.read_sorter_folder(folder), float(run_log.get("run_time") or 0.0)


def innermost_error(text: str, limit: int = 400) -> str:
    """The line of a (chained) traceback or message that names the innermost exception."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    named = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b", ln)]
    return ((named or lines or [""])[-1 if named else 0])[:limit]


def run_calibrate(ctx: StepContext) -> dict[str, Any]:
    """Offline sort of a segment → hub-domain templates (host_tools.calibrate). In a batch the
    sorter ran before, as a Dask task of its own, into ``ctx.prepared``; called alone, this
    runs it here through SpikeInterface's run_sorter_jobs."""
    import spikeinterface.core as si
    import spikeinterface.sorters as ss

    from host_tools.calibrate import templates_from_sorting

    p = ctx.params
    rec = ctx.recording()
    first, last = calibration_segment(rec, p)
    folder = ctx.prepared
    if folder is None:
        folder = ctx.out / "sorter"
        ss.run_sorter_jobs([sorter_job(ctx.input, p, ctx.threads, folder)], engine="loop")
    sorting, sorter_s = read_sorter_result(folder, p["sorter"])
    sorting = si.NumpySorting.from_sorting(sorting)
    sorting.save(folder=ctx.out / "offline_sorting", overwrite=True)
    shutil.rmtree(folder, ignore_errors=True)
    ts, info = templates_from_sorting(rec, sorting, ctx.pipeline_config(), first, last,
                                      p["min_spikes"], p["n_features"], p["sorter"])
    ts.save(ctx.out / "templates.npz")
    info["sorter_seconds"] = round(sorter_s, 3)
    write_json(ctx.out / "calibration.json", info)
    return {"units": info["units"], "sorter_units": info["sorter_units"],
            "matched": f"{info['matched']}/{info['hub_spikes']}",
            "sorter_s": round(sorter_s, 1)}


# ------------------------------------------------------------------------------ sort
def run_sort(ctx: StepContext) -> dict[str, Any]:
    """The hub's online sorter (hub.dsp.sorting) → a SpikeInterface sorting folder."""
    from host_tools.sort_cli import write_sorting
    from hub.dsp.sorting import TemplateSet, sort_recording

    rec = ctx.recording()
    which = ctx.params["templates"]
    templates = None
    if which == "calibrate":
        templates = TemplateSet.load(Path(ctx.upstream["calibrate"]["dir"]) / "templates.npz")
    elif which != "none":
        templates = TemplateSet.load(Path(which))
    res = sort_recording(rec, ctx.pipeline_config(sort=True), templates)
    n_units = write_sorting(res, rec.sampling_frequency, ctx.out / "sorting",
                            ctx.params["online_labels"])
    write_json(ctx.out / "sort_stats.json", {"templates": which, "stats": res.stats})
    s = res.stats
    return {"units": n_units, "sorted": int((res.final_units >= 0).sum()),
            "spikes": int(res.samples.size), "births": s["births"], "merges": s["merges"],
            "seeded": templates is not None}


# ------------------------------------------------------------------------------ codec
def _wav_bytes(rec: Recording) -> bytes:
    """The recording's int16 samples as one canonical 16-bit PCM WAV (header + interleaved)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(rec.num_channels)
        w.setsampwidth(2)
        w.setframerate(round(rec.sampling_frequency))
        w.writeframes(rec.read(0, rec.num_samples).astype("<i2").tobytes())
    return buf.getvalue()


def run_codec(ctx: StepContext) -> dict[str, Any]:
    """nk_codec containers, each decoded again and compared byte for byte. WAV inputs are coded
    file by file (the container restores the original file, headers included); other inputs as
    their int16 samples in a canonical WAV (the container restores those samples exactly).
    Holds one file's samples in memory at a time."""
    from host_tools.codec_container import decode_wav, encode_wav

    rec = ctx.recording()
    if ctx.input.kind in ("wav", "wav_stack"):
        items = [(Path(f).name, Path(f).read_bytes) for f in rec.info["files"]]
    else:
        items = [(f"{ctx.input.name}.wav", lambda: _wav_bytes(rec))]
    files, orig, comp, enc_s, dec_s = [], 0, 0, 0.0, 0.0
    for name, load in items:
        wav = load()
        t = time.perf_counter()
        blob = encode_wav(wav, block=ctx.params["block"], resync_interval=ctx.params["resync"])
        t1 = time.perf_counter()
        back = decode_wav(blob)
        t2 = time.perf_counter()
        if back != wav:
            at = next((i for i, (a, b) in enumerate(zip(back, wav, strict=False)) if a != b),
                      min(len(back), len(wav)))
            raise ValueError(f"{name}: codec round trip is not byte-identical (first difference "
                             f"at byte {at} of {len(wav)})")
        (ctx.out / f"{Path(name).stem}.nkc").write_bytes(blob)
        files.append({"file": name, "bytes": len(wav), "compressed": len(blob),
                      "ratio": round(len(wav) / len(blob), 4)})
        orig, comp, enc_s, dec_s = orig + len(wav), comp + len(blob), enc_s + t1 - t, \
            dec_s + t2 - t1
    write_json(ctx.out / "codec.json", {"files": files, "verified_byte_exact": True,
                                        "encode_s": enc_s, "decode_s": dec_s,
                                        "params": ctx.params})
    return {"ratio": round(orig / comp, 3) if comp else None, "verified": True,
            "files": len(files), "encode_MBps": round(orig / enc_s / 1e6, 1) if enc_s else None}


register(Step("replay", run_replay, "hub front-end (hub.dsp.replay): events + summary",
              pipeline=True, code=(*FRONT_END_CODE, "hub.dsp.replay"), cost=1))
register(Step("calibrate", run_calibrate,
              "offline SpikeInterface sorter on a segment → hub templates",
              params={"sorter": "mountainsort5", "sorter_params": {}, "start_s": 0.0,
                      "duration_s": 60.0, "min_spikes": 20, "n_features": 0},
              pipeline=True, code=(*FRONT_END_CODE, "host_tools.calibrate"),
              libs=("numpy", "scipy", "spikeinterface", "mountainsort5", "scikit-learn",
                    "hdbscan", "numba"), cost=4))
register(Step("sort", run_sort, "hub online sorter, cold or seeded → SpikeInterface sorting",
              params={"templates": "auto", "online_labels": False}, pipeline=True,
              needs=lambda p: ("calibrate",) if p["templates"] == "calibrate" else (),
              code=(*FRONT_END_CODE, "host_tools.sort_cli"), libs=("numpy", "spikeinterface"),
              cost=2))
register(Step("codec", run_codec, "lossless nk_codec round trip, verified byte-exact",
              params={"block": DEFAULT_RESYNC, "resync": DEFAULT_RESYNC},
              code=("host_tools.codec_container",), cost=1))


# ------------------------------------------------------------------------------ report
def run_report(ctx: StepContext) -> dict[str, Any]:
    """``hubctl view`` of an NWB session → index.html with its PNG figures."""
    import json as _json

    from host_tools.view_cli import render

    page = render(ctx.input.path, ctx.out)
    figures = sorted(p.name for p in ctx.out.glob("*.png"))
    meta = ctx.out / "figures.json"
    return {"page": page.name, "figures": len(figures),
            **({"captions": len(_json.loads(meta.read_text()))} if meta.exists() else {})}


register(Step("report", run_report, "hubctl view of an NWB session → HTML + PNG figures",
              code=("host_tools.view_cli", "host_tools.view_figures"),
              libs=("numpy", "pynwb", "matplotlib"), kinds=("nwb",), cost=1))
