"""Time seqlift's saturation mutagenesis against tangermeme's on the same models and regions.

Both tools score every single-base substitution of every region (3 per
position) and return mean-centred hypothetical scores, shape (N, 4, L):
``f(mutant) - f(x)`` per base, minus its mean over the four bases.

- seqlift: ``seqlift.attribution.ism.ism(model, X, target=0, batch_size=B)``;
  it runs each region once and carries each substitution's changed window
  through every convolution, pool and position-wise op, computing only the
  outputs the window reaches, up to the first op that mixes all positions
  (``fast=False``: every mutant runs through the whole model).
- tangermeme: ``saturation_mutagenesis(model, X, target=0, hypothetical=True,
  batch_size=B)``, its default ``fast=True``.

Models are bench_deeplift.py's BPNet-like and Basset-like ones (seeded). Each
tool warms up on one region, then the regions are timed ``--repeats`` times
(median). The largest absolute difference between the two tools' scores is
reported against the largest score.

    python benchmarks/bench_ism.py --models basset --repeats 1   # 4 Basset-like regions, about 2 minutes
    python benchmarks/bench_ism.py                                # also 1 BPNet-like region (6342 mutants)
"""

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deeplift import build_model, make_data  # noqa: E402  (the same seeded models and regions)

LENGTHS = {"bpnet": 2114, "basset": 600}


def runners(model, batch_size):
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    from seqlift.attribution.ism import ism

    def seqlift_ism(X, fast=True):
        return ism(model, X, target=0, batch_size=batch_size, fast=fast).hypothetical

    def tangermeme_ism(X):
        out = saturation_mutagenesis(
            model, torch.as_tensor(X), target=0, hypothetical=True, batch_size=batch_size, device="cpu"
        )
        return out.detach().numpy()

    return {
        "seqlift": seqlift_ism,
        "seqlift (fast=False)": lambda X: seqlift_ism(X, fast=False),
        "tangermeme": tangermeme_ism,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="bpnet,basset")
    parser.add_argument("--regions", type=int, default=None, help="regions per model (default 1 BPNet, 4 Basset)")
    parser.add_argument("--batch-size", type=int, default=256, help="mutants per model call, both tools")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(
        f"# ISM throughput on cpu\n\n{platform.processor() or platform.machine()}, {args.threads} torch threads, "
        f"torch {torch.__version__}, load average {os.getloadavg()[0]:.2f}; batch {args.batch_size} mutants; "
        f"median of {args.repeats}.\n"
    )
    for name in args.models.split(","):
        length = LENGTHS[name]
        n = args.regions or {"bpnet": 1, "basset": 4}[name]
        model = build_model(name, "cpu")
        X, _ = make_data(n, 1, length)
        X = np.asarray(X, dtype=np.float32)
        times, scores = {}, {}
        for tool, run in runners(model, args.batch_size).items():
            run(X[:1])
            spent = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                scores[tool] = run(X)
                spent.append(time.perf_counter() - start)
            times[tool] = statistics.median(spent)
        print(f"## {name}-like, (N, 4, {length}), {n} regions, {3 * length * n} mutants\n")
        print("| tool | median s | regions/s | seqlift / tool throughput |\n| --- | ---: | ---: | ---: |")
        for tool, t in times.items():
            print(f"| {tool} | {t:.3f} | {n / t:.3f} | {t / times['seqlift']:.2f} |")
        largest = np.abs(scores["seqlift"]).max()
        for tool in ("seqlift (fast=False)", "tangermeme"):
            diff = np.abs(scores["seqlift"] - scores[tool]).max()
            print(f"\nseqlift vs {tool}: max |difference| {diff:.2e} (largest |score| {largest:.2e})")
        print()


if __name__ == "__main__":
    main()
