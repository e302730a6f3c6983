"""Recordings a batch works on: finding them in a folder, their content fingerprints, and
opening them for the hub (int16 blocks) or for SpikeInterface (offline sorters).

Kinds (what ``discover`` recognises, by name and shape only; nothing is read):
  wav        NAME.wav — one mono 16-bit WAV (one channel)
  wav_stack  a folder holding only WAVs, the channels of one recording (``hub.sources``)
  raw        NAME.bin beside NAME.json (interleaved int16; the JSON sidecar of hub.sources.raw)
  si_folder  a SpikeInterface binary folder (binary.json / si_folder.json)
  nwb        NAME.nwb — the raw ElectricalSeries of an NWB session (one series, or the one the
             plan names), read through SpikeInterface
Folders that are none of these are searched recursively; a folder given as an input is always
searched (its WAVs are single recordings) unless the plan says its kind. A recording's
fingerprint is the SHA-256 of its files' bytes (relative names included); the batch caches it
by each file's (size, mtime, inode), so an unchanged recording is not read again.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from hub.sources import Recording, RecordingError, open_recording

log = logging.getLogger(__name__)

KINDS = ("wav", "wav_stack", "raw", "si_folder", "nwb")


@dataclass(frozen=True)
class Input:
    """One recording of the batch. ``name`` is unique in the batch and names its output folder."""

    name: str
    path: Path
    kind: str
    nwb_series: str = ""  # electrical_series_path for NWB inputs ("" = the only one)


def _is_si_folder(p: Path) -> bool:
    return (p / "binary.json").exists() or (p / "si_folder.json").exists()


def classify(p: Path) -> str | None:
    """The kind of recording at `p`, or None when `p` is not one (a folder may hold some). A
    folder is a WAV stack when it holds WAVs and no other recording."""
    if p.is_dir():
        if _is_si_folder(p):
            return "si_folder"
        entries = [q for q in p.iterdir() if not q.name.startswith(".")]
        wavs = [q for q in entries if q.is_file() and q.suffix.lower() == ".wav"]
        others = [q for q in entries if q not in wavs and (
            q.is_dir() or q.suffix.lower() in (".bin", ".nwb"))]
        return "wav_stack" if wavs and not others else None
    suffix = p.suffix.lower()
    if suffix == ".wav":
        return "wav"
    if suffix == ".bin":
        return "raw"
    if suffix == ".nwb":
        return "nwb"
    return None


def discover(paths: list[tuple[Path, str]], nwb_series: str = "",
             exclude: Path | None = None) -> list[Input]:
    """Every recording at or under `paths` ((path, kind) pairs; kind "" = recognise it), in a
    stable order, with unique names (the path relative to the input folder, '/' → '__').

    A file or SpikeInterface folder given is one recording; any other folder given is searched
    (its own WAVs are single recordings; a subfolder of only WAVs is a stack) unless its kind
    is given as "wav_stack". A path that does not exist comes back with kind "missing", so the
    batch reports it. `exclude` (the batch's output folder) is never searched."""
    found: list[tuple[str, Path, str]] = []
    for root, kind in paths:
        root = root.resolve()
        if not root.exists():
            found.append((root.name or str(root), root, "missing"))
            continue
        if kind:
            if kind not in KINDS:
                raise ValueError(f"{root}: unknown kind {kind!r} (want one of {KINDS})")
            found.append((root.name, root, kind))
            continue
        if not root.is_dir() or _is_si_folder(root):
            found.append((root.name, root, classify(root) or "unknown"))
            continue
        for sub in _walk(root, exclude.resolve() if exclude else None):
            found.append(("__".join(sub.relative_to(root).parts), sub, classify(sub) or ""))
    names: dict[str, int] = {}
    out = []
    for name, path, k in found:
        n = names.get(name, 0)
        names[name] = n + 1
        out.append(Input(name if n == 0 else f"{name}~{n}", path, k, nwb_series))
    return out


def _walk(folder: Path, exclude: Path | None = None) -> list[Path]:
    out: list[Path] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or (exclude is not None and p.resolve() == exclude):
            continue
        if p.is_file() and classify(p) is not None:
            out.append(p)
        elif p.is_dir():
            out.extend([p] if classify(p) is not None else _walk(p, exclude))
    return out


def files_of(inp: Input) -> list[Path]:
    """The files whose bytes make up the recording (raises RecordingError when absent)."""
    p = inp.path
    if inp.kind == "missing" or not p.exists():
        raise RecordingError(f"{p}: no such file or folder")
    if inp.kind == "unknown":
        raise RecordingError(f"{p}: not a recording (want .wav, .bin + .json, .nwb, a "
                             "SpikeInterface folder, or a folder of these)")
    if inp.kind == "si_folder":
        return sorted(q for q in p.rglob("*") if q.is_file())
    if inp.kind == "wav_stack":
        return sorted(q for q in p.iterdir() if q.suffix.lower() == ".wav" and q.is_file())
    if inp.kind == "raw":
        side = p.with_suffix(".json")
        if not side.exists():
            raise RecordingError(f"{side}: sidecar missing for {p.name}")
        return [p, side]
    return [p]


def stat_signature(inp: Input) -> list[list[Any]]:
    """(relative name, size, mtime_ns, inode) of every file: the fingerprint cache's key."""
    base = inp.path if inp.path.is_dir() else inp.path.parent
    out = []
    for f in files_of(inp):
        st = f.stat()
        out.append([str(f.relative_to(base)), st.st_size, st.st_mtime_ns, st.st_ino])
    return out


def fingerprint(inp: Input) -> dict[str, Any]:
    """{"sha256", "bytes", "signature", "info"} of a recording. Opens it as the hub would, so a
    corrupt or unreadable recording raises RecordingError here, before any step runs."""
    signature = stat_signature(inp)
    base = inp.path if inp.path.is_dir() else inp.path.parent
    h = hashlib.sha256()
    total = 0
    for f in files_of(inp):
        h.update(str(f.relative_to(base)).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(hashlib.file_digest(fh, "sha256").digest())
        total += f.stat().st_size
    rec = open_input(inp)
    info = {"channels": rec.num_channels, "sampling_frequency_hz": rec.sampling_frequency,
            "duration_s": round(rec.duration_s, 3), "kind": inp.kind}
    return {"sha256": h.hexdigest(), "bytes": total, "signature": signature, "info": info}


def open_input(inp: Input) -> Recording:
    """The recording as the hub reads it: int16 blocks, sample-major."""
    if inp.kind == "missing":
        raise RecordingError(f"{inp.path}: no such file or folder")
    if inp.kind == "nwb":
        return recording_from_si(si_recording(inp), inp.path.name)
    return open_recording(inp.path)


def si_recording(inp: Input) -> Any:
    """The recording as a lazy SpikeInterface object (for offline sorters): binary files are
    mapped in place, nothing is copied. Channel positions are attached when known."""
    import spikeinterface.core as si

    if inp.kind == "si_folder":
        return si.load(inp.path)
    if inp.kind == "nwb":
        from spikeinterface.extractors import read_nwb_recording

        try:
            return read_nwb_recording(inp.path, electrical_series_path=inp.nwb_series or None)
        except (OSError, ValueError, KeyError, AssertionError) as e:
            raise RecordingError(f"{inp.path}: not a readable NWB recording ({e})") from e
    rec = open_input(inp)
    if inp.kind == "raw":
        parts = [(inp.path, 0)]
    else:  # wav / wav_stack: each file's data chunk, mapped where it lies
        parts = [(Path(f), _wav_data_offset(Path(f))) for f in rec.info["files"]]
    C = rec.num_channels if inp.kind == "raw" else 1
    pieces = [si.read_binary(str(f), sampling_frequency=rec.sampling_frequency, dtype="int16",
                             num_channels=C, file_offset=off, gain_to_uV=1.0, offset_to_uV=0.0)
              .frame_slice(0, rec.num_samples) for f, off in parts]
    out = pieces[0] if len(pieces) == 1 else si.aggregate_channels(pieces)
    out.set_channel_gains(rec.gain_to_uV)
    out.set_channel_offsets(0.0)
    pos = rec.channel_positions_um
    if pos is None:  # no geometry known: 1 mm apart, so a sorter treats channels as independent
        log.info("%s: no channel positions; placing channels 1 mm apart for the sorter", inp.path)
        pos = np.c_[np.zeros(rec.num_channels), 1000.0 * np.arange(rec.num_channels)]
    out.set_dummy_probe_from_locations(pos)
    return out


def _wav_data_offset(path: Path) -> int:
    """Byte offset of the samples in a 16-bit PCM WAV file (reads its first 64 KiB)."""
    from host_tools.codec_container import wav_layout

    with open(path, "rb") as fh:
        return wav_layout(fh.read(1 << 16))[0]


def recording_from_si(si_rec: Any, name: str) -> Recording:
    """A hub Recording over any SpikeInterface recording: int16 data as is; float data (µV)
    quantised at hub.sources.si_folder.FLOAT_LSB_UV per count, clipped samples counted."""
    from hub.sources.si_folder import FLOAT_LSB_UV, quantise_float_rows

    if si_rec.get_num_segments() != 1:
        raise RecordingError(f"{name}: {si_rec.get_num_segments()} segments; one is supported")
    C = int(si_rec.get_num_channels())
    gains = si_rec.get_channel_gains() if si_rec.has_scaleable_traces() else np.ones(C)
    gains = np.asarray(gains, np.float64)
    dtype = np.dtype(si_rec.get_dtype())
    clipped = [0]
    if dtype == np.int16:
        def reader(start: int, stop: int) -> npt.NDArray[np.int16]:
            return np.ascontiguousarray(si_rec.get_traces(start_frame=start, end_frame=stop),
                                        dtype=np.int16)
    else:
        scale = (gains if si_rec.has_scaleable_traces() else np.ones(C)) / FLOAT_LSB_UV

        def reader(start: int, stop: int) -> npt.NDArray[np.int16]:
            return quantise_float_rows(si_rec.get_traces(start_frame=start, end_frame=stop),
                                       scale, start, name, clipped)
        gains = np.full(C, FLOAT_LSB_UV)
    pos = None
    if si_rec.has_probe() or "location" in si_rec.get_property_keys():
        loc = np.asarray(si_rec.get_channel_locations(), np.float64)
        if loc.ndim == 2 and loc.shape[1] >= 2 and np.all(np.isfinite(loc[:, :2])):
            pos = np.ascontiguousarray(loc[:, :2])
    return Recording(name=name, sampling_frequency=float(si_rec.get_sampling_frequency()),
                     num_channels=C, num_samples=int(si_rec.get_num_samples()),
                     gain_to_uV=gains, reader=reader, channel_positions_um=pos, clipped=clipped,
                     info={"source_dtype": str(dtype)})


def fingerprint_file(path: Path) -> str:
    """SHA-256 of one file (for files a plan names, like a templates file)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def same_filesystem_tmp(final: Path) -> Path:
    """A fresh temporary sibling of `final` (same filesystem, so a rename is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.parent / f".{final.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
