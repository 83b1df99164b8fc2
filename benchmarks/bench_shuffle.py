"""Time seqlift's dinucleotide shuffle against tangermeme's on the same sequences.

Both get the same random one-hot batch, shape (N, 4, L), and one seed per
sequence, and both are run once before timing so that numba's compilation is
not counted. tangermeme takes a torch tensor and returns one in the input's
dtype; seqlift takes and returns numpy arrays, float32 here for both.

    python benchmarks/bench_shuffle.py --repeats 5
"""

import argparse
import time

import numpy as np
import torch
from tangermeme.ersatz import dinucleotide_shuffle as tangermeme_shuffle

from seqlift.references import dinucleotide_shuffle


def median_seconds(call, repeats):
    """Median wall time of ``call()`` over ``repeats`` runs, after one warm-up run."""
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the median is reported")
    parser.add_argument("--n-seqs", type=int, default=64, help="sequences per batch (N)")
    parser.add_argument("--n", type=int, default=20, help="shuffles per sequence")
    parser.add_argument("--lengths", type=int, nargs="+", default=[200, 1000, 2114], help="sequence lengths (L)")
    parser.add_argument("--n-jobs", type=int, default=1, help="tangermeme's n_jobs (its default is 1)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    seeds = np.arange(args.n_seqs)
    shuffles = args.n_seqs * args.n
    print(f"N={args.n_seqs}, n={args.n}, median of {args.repeats}, tangermeme n_jobs={args.n_jobs}")
    print(f"{'L':>6} {'seqlift s':>10} {'shuffles/s':>11} {'tangermeme s':>13} {'shuffles/s':>11} {'speed ratio':>12}")
    for length in args.lengths:
        X = np.eye(4, dtype=np.float32)[rng.integers(0, 4, (args.n_seqs, length))].transpose(0, 2, 1).copy()
        X_torch = torch.from_numpy(X)
        ours = median_seconds(lambda X=X: dinucleotide_shuffle(X, n=args.n, seeds=seeds), args.repeats)
        theirs = median_seconds(
            lambda X_torch=X_torch: tangermeme_shuffle(X_torch, n=args.n, random_state=seeds, n_jobs=args.n_jobs),
            args.repeats,
        )
        print(
            f"{length:>6} {ours:>10.4f} {shuffles / ours:>11.0f} {theirs:>13.4f} {shuffles / theirs:>11.0f} "
            f"{theirs / ours:>11.1f}x"
        )


if __name__ == "__main__":
    main()
