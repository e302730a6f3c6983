"""Lossless codec on the Neuralink N1 set (every WAV in ../shared/data/neuralink_wav), with FLAC -8
and zstd -19 on the same files in the same run; speed on one core; instructions per sample
(callgrind on c_kernels/bench/codec_bench.c); ratio against resync interval; bytes per spike of
the event and snippet coding.

Ratio = total original WAV bytes / total compressed bytes, where the compressed size is the
whole ``hubctl codec encode`` container (WAV header stored verbatim, stream header, length-
prefixed packets), so the figure is what a file on disk costs.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, callgrind_instructions
from host_tools.codec_cli import decode_wav, encode_wav
from hub.kernels import codec

DATA = REPO.parent / "shared" / "data" / "neuralink_wav"
FS = 19531
#: resync interval name → (samples per packet, resync interval in samples)
SETTINGS = {
    "20ms": (391, 391),
    "100ms": (1953, 1953),
    "1s": (FS, FS),
    "none": (FS, 0),
    "10ms_blocks_1s_resync": (195, FS),
}


def _files(quick: bool) -> list[Path]:
    files = sorted(DATA.glob("*.wav"))
    return files[::26][:20] if quick else files


def _ratio(wavs: list[bytes], block: int, resync: int, verify: bool) -> dict[str, Any]:
    orig = comp = 0
    for wav in wavs:
        blob = encode_wav(wav, block=block, resync_interval=resync)
        if verify and decode_wav(blob) != wav:
            raise AssertionError("codec round trip is not byte-identical")
        orig, comp = orig + len(wav), comp + len(blob)
    return {"ratio": round(orig / comp, 4), "original_bytes": orig, "compressed_bytes": comp}


def _external(files: list[Path], tool: str) -> dict[str, Any] | str:
    """Total output bytes of FLAC -8 / zstd -19 over the files, one output per file."""
    with tempfile.TemporaryDirectory() as tmp:
        if tool == "flac":
            cmd = ["flac", "-8", "-s", "-f", f"--output-prefix={tmp}/", *map(str, files)]
        else:
            cmd = ["zstd", "-19", "-q", "-f", "--output-dir-flat", tmp, *map(str, files)]
        try:
            subprocess.run(cmd, check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            return f"{tool} failed: {e}"
        comp = sum(p.stat().st_size for p in Path(tmp).iterdir())
    orig = sum(f.stat().st_size for f in files)
    return {"ratio": round(orig / comp, 4), "compressed_bytes": comp}


def _speed(wavs: list[bytes], repeats: int) -> dict[str, Any]:
    """Encode/decode MB/s of original data, one core, median of repeats (C calls only)."""
    blocks = []
    for wav in wavs:
        x = np.frombuffer(wav, dtype="<i2", offset=44).reshape(-1, 1)
        blocks.append((x, codec.fit_ladder(x)))
    enc_t, dec_t = [], []
    for _ in range(repeats):
        te = td = 0.0
        for x, lv in blocks:
            t = time.perf_counter()
            enc = codec.Encoder(1, resync_interval=FS, levels=lv, max_block=FS)
            packets = [enc.encode(x[i:i + FS]) for i in range(0, x.shape[0], FS)]
            te += time.perf_counter() - t
            dec = codec.Decoder(enc.header)
            out = np.empty((FS, 1), dtype=np.int16)
            t = time.perf_counter()
            for p in packets:
                dec.decode(p, out)
            td += time.perf_counter() - t
        enc_t.append(te)
        dec_t.append(td)
    mb = sum(len(w) for w in wavs) / 1e6
    return {"encode_MB_s": round(mb / statistics.median(enc_t), 1),
            "decode_MB_s": round(mb / statistics.median(dec_t), 1), "repeats": repeats,
            "MB": round(mb, 2)}


def _instructions(files: list[Path]) -> dict[str, Any] | None:
    exe = REPO / "build/native/bench/codec_bench"
    subprocess.run(["make", "-C", str(REPO), "build/native/bench/codec_bench"], check=True,
                   capture_output=True)
    argv = [str(exe), str(FS), str(FS), *map(str, files)]
    samples = sum((f.stat().st_size - 44) // 2 for f in files)
    enc = callgrind_instructions(argv, "nk_codec_encode")
    dec = callgrind_instructions(argv, "nk_codec_decode")
    if enc is None or dec is None:
        return None
    return {"encode_per_sample": round(enc / samples, 1),
            "decode_per_sample": round(dec / samples, 1), "samples": samples}


def _spikes(files: list[Path]) -> dict[str, Any]:
    """Events and snippets of the hub's detector on N1 files stacked as channels."""
    from hub.kernels import Bandpass, Detector, DetectorConfig, SnippetExtractor, butter_sos

    xs = [np.frombuffer(f.read_bytes(), dtype="<i2", offset=44) for f in files]
    n = min(x.size for x in xs)
    x = np.ascontiguousarray(np.stack([a[:n] for a in xs], axis=1))
    C = x.shape[1]
    bp = Bandpass(C, butter_sos(2, "bandpass", (300.0, 6000.0), FS))
    det = Detector(C, DetectorConfig(threshold=5.0, warmup=FS // 2))
    pre, post, block = 16, 32, 196
    snip = SnippetExtractor(np.arange(C, dtype=np.int32).reshape(C, 1), pre, post, block)
    evs, wfs = [], []
    for t in range(0, n - block + 1, block):
        f = bp.process(np.ascontiguousarray(x[t:t + block]))
        ev = det.process(f, t)
        e2, w2 = snip.process(f, t, ev)
        evs.append(e2.copy())
        wfs.append(w2.copy())
    ev = np.concatenate(evs)
    wf = np.concatenate(wfs)
    order = np.lexsort((ev["channel"], ev["sample"]))
    ev, wf = ev[order], wf[order]
    res: dict[str, Any] = {"spikes": int(ev.size), "channels": C, "snippet_samples": pre + post,
                           "raw_event_bytes": 24}
    if ev.size == 0:
        return res
    def coded(step: float, snippets: bool, batch: int) -> int:
        total = 0
        for b0 in range(0, n, batch):
            sel = (ev["sample"] >= b0) & (ev["sample"] < b0 + batch)
            if sel.any():
                total += len(codec.encode_events(ev[sel], wf[sel] if snippets else None, step))
        return total

    b20, b1s = FS // 50, FS
    res["batches"] = "one batch per 20 ms bin (as the hub sends them), or per second"
    res["amplitude_step"] = 16.0
    ev20 = coded(16.0, False, b20)
    res["event_bytes_per_spike_20ms"] = round(ev20 / ev.size, 2)
    res["event_bytes_per_spike_1s"] = round(coded(16.0, False, b1s) / ev.size, 2)
    for step in (16.0, 64.0):
        total = coded(step, True, b20)
        res[f"snippet_bytes_per_spike_step_{step:g}"] = round((total - ev20) / ev.size, 2)
        res[f"snippet_max_error_step_{step:g}"] = step / 2
    res["snippet_raw_bytes_int16"] = 2 * (pre + post)
    res["snippet_noise_sigma_counts"] = round(float(np.median(np.abs(wf)) / 0.6745), 1)
    return res


def run(quick: bool) -> dict[str, Any]:
    if not DATA.is_dir():
        return {"skipped": f"{DATA} is absent (the Neuralink WAVs live outside the repository)"}
    files = _files(quick)
    wavs = [f.read_bytes() for f in files]
    res: dict[str, Any] = {"files": len(files), "quick": quick}
    res["nk_codec_1s"] = _ratio(wavs, FS, FS, verify=True)
    res["vs_resync"] = {name: _ratio(wavs, b, r, verify=False)["ratio"]
                        for name, (b, r) in SETTINGS.items()}
    res["flac_8"] = _external(files, "flac")
    res["zstd_19"] = _external(files, "zstd")
    res["speed"] = _speed(wavs[:20] if not quick else wavs[:10], 3 if quick else 5)
    res["instructions"] = _instructions(files[:2])
    res["spikes"] = _spikes(files[:64] if not quick else files[:8])
    return res


def table(res: dict[str, Any]) -> str:
    if "skipped" in res:
        return f"codec: skipped — {res['skipped']}"
    r = res["nk_codec_1s"]
    lines = [f"codec on {res['files']} Neuralink WAVs ({r['original_bytes'] / 1e6:.1f} MB):",
             f"  nk_codec, 1 s resync   ratio {r['ratio']:.4f}  (target > 3.46, stretch 3.50)"]
    for name in ("flac_8", "zstd_19"):
        v = res[name]
        lines.append(f"  {name:<22} ratio {v['ratio']:.4f}" if isinstance(v, dict)
                     else f"  {name}: {v}")
    lines.append("  ratio vs resync: " + ", ".join(f"{k} {v:.4f}"
                                                   for k, v in res["vs_resync"].items()))
    s = res["speed"]
    lines.append(f"  speed (1 core, median of {s['repeats']}): encode {s['encode_MB_s']} MB/s, "
                 f"decode {s['decode_MB_s']} MB/s")
    ins = res["instructions"]
    if ins:
        lines.append(f"  instructions/sample (callgrind): encode {ins['encode_per_sample']}, "
                     f"decode {ins['decode_per_sample']}")
    sp = res["spikes"]
    if "event_bytes_per_spike_20ms" in sp:
        lines.append(f"  {sp['spikes']} spikes on {sp['channels']} ch: events "
                     f"{sp['event_bytes_per_spike_20ms']} B/spike in 20 ms batches, "
                     f"{sp['event_bytes_per_spike_1s']} in 1 s batches (raw nk_event "
                     f"{sp['raw_event_bytes']} B; amplitude error ≤ 8 counts)")
        lines.append(f"  snippets ({sp['snippet_samples']} samples, raw int16 "
                     f"{sp['snippet_raw_bytes_int16']} B, noise σ "
                     f"{sp['snippet_noise_sigma_counts']} counts): "
                     f"{sp['snippet_bytes_per_spike_step_16']} B/spike at step 16 (error ≤ 8), "
                     f"{sp['snippet_bytes_per_spike_step_64']} B/spike at step 64 (error ≤ 32)")
    return "\n".join(lines)
