"""Compression of score arrays: size ratio and speed of gzip levels, lzf and none, as the score writer encodes them.

The arrays are real scores: the demo's 200 regions scored by seqlift (DemoCNN, 200 bp), and 64 random
regions of 2114 bp scored with the BPNet-like model of bench_deeplift.py (random weights). For each
dataset written per batch (``raw/seq``, ``shap/seq``, ``projected_shap/seq``) and each compression, the
chunks are encoded exactly as ``seqlift.writers.encode_chunks`` does (32 rows per chunk), in one thread;
the table reports the compressed size relative to the raw bytes and the throughput in MB of raw input per
second (median of 5 runs), and what that means in regions per second of one core for the whole row.
gzip-1 to gzip-3 are deflated with ISA-L, gzip-4 and up with zlib; the row ``gzip-1 (zlib)`` deflates
at zlib's level 1 instead, for comparison (h5py reads both alike).

    python benchmarks/bench_compression.py
"""

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

import h5py
import numpy as np
import torch

import seqlift
from seqlift.demo import demo_paths
from seqlift.writers import encode_chunks

HERE = Path(__file__).resolve().parent
CODECS = ("gzip-1", "gzip-1 (zlib)", "gzip-3", "gzip-4", "gzip-6", "lzf", "none")
DATASETS = ("raw/seq", "shap/seq", "projected_shap/seq")


def demo_scores(tmp):
    p = demo_paths()
    out = Path(tmp) / "demo.h5"
    seqlift.score(p["regions"], p["fasta"], p["model_pt2"], out, n_refs=20, progress=False, compression="none")
    with h5py.File(out, "r") as h5:
        return {name: h5[name][:] for name in DATASETS}


def bpnet_scores(n=64):
    sys.path.insert(0, str(HERE))
    from bench_deeplift import build_model, make_data

    from seqlift.attribution import prepare

    model = build_model("bpnet", "cpu")
    X, R = make_data(n, 8, model.length)
    engine = prepare(model, model.length)
    hyp = np.concatenate([engine.run(X[i : i + 8], R[i : i + 8], target=0).hypothetical for i in range(0, n, 8)])
    hyp = hyp.astype(np.float32)
    return {"raw/seq": X.astype(np.uint8), "shap/seq": hyp, "projected_shap/seq": hyp * X}


def zlib_chunks(values, rows, level):
    """``encode_chunks`` with zlib at ``level`` in place of ISA-L: h5py's byte shuffle, then deflate."""
    size = values.dtype.itemsize
    parts = []
    for i in range(0, len(values), rows):
        raw = np.ascontiguousarray(values[i : i + rows]).tobytes()
        if size > 1:
            raw = np.frombuffer(raw, np.uint8).reshape(-1, size).T.tobytes()
        parts.append(zlib.compress(raw, level))
    return np.frombuffer(b"".join(parts), np.uint8), None, None


def measure(arrays, repeats=5):
    rows = []
    for codec in CODECS:
        sizes, seconds = {}, {}
        for name in DATASETS:
            a = arrays[name]
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                blob, _, _ = zlib_chunks(a, 32, 1) if codec == "gzip-1 (zlib)" else encode_chunks(a, 32, codec)
                times.append(time.perf_counter() - t0)
            sizes[name], seconds[name] = blob.nbytes, float(np.median(times))
        raw = sum(arrays[n].nbytes for n in DATASETS)
        total = sum(seconds.values())
        rows.append(
            {
                "codec": codec,
                **{f"ratio {n}": arrays[n].nbytes / sizes[n] for n in DATASETS},
                "ratio all": raw / sum(sizes.values()),
                "MB/s": raw / 1e6 / total,
                "regions/s": len(arrays["raw/seq"]) / total,
            }
        )
    return rows


def table(title, rows):
    cols = list(rows[0])
    lines = [f"### {title}", "", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main():
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        text = table("DemoCNN, 200 bp, 200 regions", measure(demo_scores(tmp)))
    text += "\n" + table("BPNet-like, 2114 bp, 64 regions", measure(bpnet_scores()))
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "compression.md").write_text(text)


if __name__ == "__main__":
    main()
