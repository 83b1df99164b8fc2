"""End-to-end ``seqlift score`` against the engine alone, and memory as the region count grows.

Part 1, the pipeline's overhead: the same regions of a synthetic genome are scored twice, with the same
K = 20 dinucleotide shuffles: once by ``seqlift.score`` from BED to finished HDF5 (sequences read from
the FASTA, references made, scores compressed and written), and once by the engine alone on batches
already in memory (``engine.run``, the model's work). The ratio of their throughputs says how much of
the model's speed reaches the user; 1.0 means the rest is fully hidden behind the model.

Part 2, genome scale: a tiny model scores 1k, 10k and 100k regions end to end, each run in its own
process, each count three times (``--scale-repeats``), the counts taking turns. The table gives the
medians of the time per region (almost all of it outside the model, which is tiny) and of the peak
resident memory of the process, whose growth from 1k to 100k regions should stay small, and the range of
the peaks: a run's peak is the largest of its batches' own peaks, which vary from batch to batch.

    python benchmarks/bench_pipeline.py            # both parts, about 12 minutes on 2 CPU cores
    python benchmarks/bench_pipeline.py --quick    # a smoke run
    python benchmarks/bench_pipeline.py --scale-only --counts 1000,10000   # part 2 only, at these counts

Each part-2 row gives the RSS after imports (torch, seqlift) and the peak; the peak includes the model's
working set for one batch (``--batch`` regions, each with K = 20 references), which does not depend on the
number of regions.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_deeplift import build_model, peak_rss_mib  # noqa: E402  (found through the line above)


def write_genome(folder, n_chroms=4, length=2_000_000, seed=0):
    """A random genome (40% GC) of ``n_chroms`` chromosomes, returned with its chromosome sizes."""
    rng = np.random.default_rng(seed)
    path = Path(folder) / "genome.fa"
    sizes = {}
    with open(path, "w") as fh:
        for c in range(n_chroms):
            seq = np.frombuffer(b"ACGT", np.uint8)[rng.choice(4, length, p=[0.3, 0.2, 0.2, 0.3])].tobytes().decode()
            fh.write(f">chr{c + 1}\n")
            fh.writelines(seq[i : i + 80] + "\n" for i in range(0, length, 80))
            sizes[f"chr{c + 1}"] = length
    return path, sizes


def write_regions(folder, sizes, n, width, seed=1):
    """``n`` regions of ``width`` bp at random places, as a BED file."""
    rng = np.random.default_rng(seed)
    chroms = list(sizes)
    path = Path(folder) / f"regions{n}.bed"
    with open(path, "w") as fh:
        for i in range(n):
            c = chroms[i % len(chroms)]
            start = int(rng.integers(0, sizes[c] - width))
            fh.write(f"{c}\t{start}\t{start + width}\tr{i}\n")
    return path


class Tiny(torch.nn.Module):
    """A model whose cost is negligible next to reading, shuffling and writing: conv, ReLU, global max, dense."""

    input_length = 200

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(4, 8, 9)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).amax(dim=2))


def export(model, length, path):
    program = torch.export.export(
        model.eval(), (torch.zeros(2, 4, length),), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    torch.export.save(program, str(path))
    return path


def overhead(name, model, length, folder, fasta, sizes, n, batch, refs=20, device="cpu", compression=None, repeats=1):
    """Throughput of seqlift.score from BED to HDF5 against engine.run on the same in-memory batches,
    ``repeats`` times each, alternating; the medians, and each repeat's ratio."""
    import seqlift
    from seqlift.attribution import prepare
    from seqlift.genome import Genome, fetch_one_hot
    from seqlift.models import load_model
    from seqlift.references import dinucleotide_shuffle, region_seed
    from seqlift.regions import read_regions, to_windows

    pt2 = export(model, length, Path(folder) / f"{name}.pt2")
    bed = write_regions(folder, sizes, n, length)
    with Genome(fasta) as genome:
        windows, _ = to_windows(read_regions(str(bed)), length, genome.chrom_sizes())
        batches = []
        for i in range(0, n, batch):
            X = fetch_one_hot(genome, windows[i : i + batch])
            seeds = np.array(
                [region_seed(0, w.chrom, w.start, w.end, w.strand) for w in windows[i : i + batch]], dtype=np.uint64
            )
            batches.append((X.astype(np.float32), dinucleotide_shuffle(X, refs, seeds)))
    engine = prepare(load_model(str(pt2)).model, length, device=device)
    engine.run(*batches[0], [0])  # warm-up
    out = Path(folder) / f"{name}.h5"
    options = dict(n_refs=refs, batch_size=batch, progress=False, force=True, device=device)
    if compression:
        options["compression"] = compression
    seqlift.score(str(bed), str(fasta), str(pt2), out, **options)  # warm-up
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    # Alternated, so that a drift in the machine's speed falls on both figures alike; medians reported.
    engine_times, score_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for X, R in batches:
            engine.run(X, R, [0])
        engine_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        seqlift.score(str(bed), str(fasta), str(pt2), out, **options)
        score_times.append(time.perf_counter() - t0)
    engine_s, end_to_end_s = float(np.median(engine_times)), float(np.median(score_times))
    ratios = sorted(e / t for e, t in zip(engine_times, score_times))
    gpu = {} if device == "cpu" else {"GPU peak MiB": torch.cuda.max_memory_allocated() / 2**20}
    with h5py.File(out, "r") as h5:
        worst = float(np.max(h5["meta/delta_rel_error"][:]))
    return {
        "model": name,
        "length": length,
        "regions": n,
        "batch": batch,
        "refs": refs,
        "engine regions/s": n / engine_s,
        "end-to-end regions/s": n / end_to_end_s,
        "ratio": engine_s / end_to_end_s,
        "ratio per repeat": " / ".join(f"{r:.2f}" for r in ratios),
        "max relative summation error": worst,
        **gpu,
    }


def scale_worker(spec):
    import seqlift

    imported = peak_rss_mib()
    t0 = time.perf_counter()
    seqlift.score(
        spec["bed"],
        spec["fasta"],
        spec["model"],
        spec["out"],
        n_refs=spec["refs"],
        batch_size=spec["batch"],
        progress=False,
        force=True,
    )
    seconds = time.perf_counter() - t0
    return {
        "regions": spec["n"],
        "batch": spec["batch"],
        "seconds": seconds,
        "ms/region": 1000 * seconds / spec["n"],
        "RSS after imports MiB": imported,
        "peak RSS MiB": peak_rss_mib(),
    }


def scale(folder, fasta, sizes, counts, refs=20, batch=256, repeats=1):
    """Part 2: each count ``repeats`` times, each run in a fresh process, the counts taking turns; per count the
    median time and peak, the peaks' range, and the median peak over the first count's."""
    pt2 = export(Tiny(), 200, Path(folder) / "tiny.pt2")
    runs = {n: [] for n in counts}
    beds = {n: str(write_regions(folder, sizes, n, 200, seed=n)) for n in counts}
    for _ in range(repeats):
        for n in counts:
            spec = {
                "bed": beds[n],
                "fasta": str(fasta),
                "model": str(pt2),
                "out": str(Path(folder) / f"tiny{n}.h5"),
                "refs": refs,
                "batch": batch,
                "n": n,
            }
            done = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=True
            )
            runs[n].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(runs[n][-1], file=sys.stderr, flush=True)
    rows = []
    for n in counts:
        peaks = [r["peak RSS MiB"] for r in runs[n]]
        row = {
            "regions": n,
            "batch": batch,
            "runs": len(peaks),
            "seconds": float(np.median([r["seconds"] for r in runs[n]])),
            "RSS after imports MiB": float(np.median([r["RSS after imports MiB"] for r in runs[n]])),
            "peak RSS MiB": float(np.median(peaks)),
            "peak range MiB": f"{min(peaks):.0f}-{max(peaks):.0f}",
        }
        row["ms/region"] = 1000 * row["seconds"] / n
        row["peak / first"] = row["peak RSS MiB"] / rows[0]["peak RSS MiB"] if rows else 1.0
        rows.append(row)
    return rows


def table(rows):
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scale-only", action="store_true", help="only part 2, genome scale")
    parser.add_argument("--counts", default="1000,10000,100000", help="region counts of part 2")
    parser.add_argument("--batch", type=int, default=256, help="regions per call in part 2")
    parser.add_argument("--scale-repeats", type=int, default=3, help="part 2: runs of each count (medians)")
    parser.add_argument("--device", default="cpu", help="part 1's device: cpu, or cuda on a GPU machine")
    parser.add_argument("--end-to-end-only", action="store_true", help="only part 1")
    parser.add_argument("--bpnet-regions", type=int, default=64, help="part 1's BPNet-like regions")
    parser.add_argument("--bpnet-batch", type=int, default=8, help="part 1's BPNet-like regions per call")
    parser.add_argument("--compression", help="part 1's --compression for seqlift.score (default: its own)")
    parser.add_argument("--repeats", type=int, default=3, help="part 1: timed runs of each, alternating")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(scale_worker(json.loads(args.worker))))
        return
    from seqlift.demo.model import DemoCNN

    with tempfile.TemporaryDirectory() as folder:
        fasta, sizes = write_genome(folder)
        torch.manual_seed(0)
        quick = args.quick
        on = {"device": args.device, "compression": args.compression, "repeats": 1 if quick else args.repeats}
        part1 = (
            []
            if args.scale_only
            else [
                # 4096 regions: the DemoCNN scores about 400 per second, and the run's fixed start (model loaded and
                # prepared, FASTA opened), which the engine-alone figure leaves out, would weigh on a shorter run
                overhead("DemoCNN", DemoCNN().eval(), 200, folder, fasta, sizes, 64 if quick else 4096, 32, **on),
                overhead(
                    "BPNet-like",
                    build_model("bpnet", "cpu"),
                    2114,
                    folder,
                    fasta,
                    sizes,
                    8 if quick else args.bpnet_regions,
                    args.bpnet_batch,
                    **on,
                ),
            ]
        )
        if part1:
            print(table(part1), flush=True)
        counts = [1000, 2000] if quick else [int(c) for c in args.counts.split(",")]
        part2 = (
            []
            if args.end_to_end_only
            else scale(folder, fasta, sizes, counts, batch=args.batch, repeats=1 if quick else args.scale_repeats)
        )
    load = os.getloadavg()[0]
    where = args.device if args.device == "cpu" else f"{args.device}: {torch.cuda.get_device_name()}"
    text = ""
    if part1:
        head = f"## End-to-end against the engine alone ({where}, {args.threads} threads, load {load:.2f} at the end)"
        text += head + "\n\n" + table(part1) + "\n"
    if part2:
        text += "## Genome scale: a tiny model, end to end\n\n" + table(part2)
    print(text)
    if not quick and not args.scale_only and not args.end_to_end_only:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "pipeline.md").write_text(text)


if __name__ == "__main__":
    main()
