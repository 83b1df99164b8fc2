"""Which max rule finds the planted sites? ``pair``, ``sign`` and ``shapley`` on the demo models.

Every demo model max-pools its convolution's output (the CNN twice), so the max rule decides how each
pooled delta is split between the position where the input peaks and the one where the reference peaks.
For each model, max rule, DeepLIFT rule and reference, ``seqlift score`` explains the three tasks (0: GATA,
1: TAL1, 2: both) of the demo's 200 regions in one run, and ``evaluate sites`` gives the signed AUROC and
AUPRC of the actual base's contribution at the planted sites of the task's motif(s).

References: ``shuffle`` (20 dinucleotide shuffles per region, seed 0: the same references for every max
rule) and ``uniform`` (0.25 per base, one reference shared by every region, like the flat background of
the DeepLIFT paper's GATA/TAL1 simulation).

Rows are written to ``benchmarks/results/maxpool.tsv`` (started afresh unless ``--append``) as each run
ends, and a Markdown table of all its rows is printed at the end.

Usage: ``python benchmarks/maxpool_rules.py [--models cnn,bilstm,attention] [--rules rescale,revealcancel]
[--references shuffle,uniform] [--max-rules pair,sign,shapley] [--n-refs 20]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import seqlift
from seqlift.demo import demo_paths
from seqlift.evaluate import site_recovery
from seqlift.writers import open_scores

HERE = Path(__file__).resolve().parent
DEMO = Path(demo_paths()["fasta"]).parent
MODELS = {"cnn": DEMO / "model.pt2", "bilstm": DEMO / "bilstm.pt2", "attention": DEMO / "attention.pt2"}
MOTIFS = {0: ["GATA"], 1: ["TAL1"], 2: ["GATA", "TAL1"]}
COLUMNS = ["model", "rule", "reference", "max_rule", "task", "auroc", "auprc", "max_rel_summation_error", "seconds"]


def _write(rows, path):
    with open(path, "w") as fh:
        fh.write("\t".join(COLUMNS) + "\n")
        for r in rows:
            fh.write("\t".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in COLUMNS) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,bilstm,attention")
    parser.add_argument("--rules", default="rescale")
    parser.add_argument("--references", default="shuffle,uniform")
    parser.add_argument("--max-rules", default="pair,sign,shapley")
    parser.add_argument("--n-refs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(HERE / "results" / "maxpool.tsv"))
    parser.add_argument("--append", action="store_true", help="keep the rows already in --output")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = demo_paths()
    out_dir = Path(tempfile.mkdtemp())
    Path(args.output).parent.mkdir(exist_ok=True)
    rows = []
    if args.append and Path(args.output).exists():
        with open(args.output) as fh:
            header = fh.readline().rstrip("\n").split("\t")
            rows = [dict(zip(header, line.rstrip("\n").split("\t"))) for line in fh]
        for r in rows:
            r.update({c: float(r[c]) for c in ("auroc", "auprc", "max_rel_summation_error", "seconds")})
    for model in args.models.split(","):
        for rule in args.rules.split(","):
            for reference in args.references.split(","):
                for max_rule in args.max_rules.split(","):
                    stem = out_dir / f"{model}-{rule}-{reference}-{max_rule}.h5"
                    t0 = time.perf_counter()
                    outputs = seqlift.score(
                        paths["regions"],
                        paths["fasta"],
                        str(MODELS[model]),
                        stem,
                        target=",".join(map(str, MOTIFS)),
                        rule=rule,
                        max_rule=max_rule,
                        reference=reference,
                        n_refs=args.n_refs,
                        seed=0,
                        batch_size=32,
                        progress=False,
                    )
                    seconds = time.perf_counter() - t0
                    for task, out in zip(MOTIFS, outputs):
                        with open_scores(out) as h5:
                            worst = float(h5["meta/delta_rel_error"][:].max())
                        site = site_recovery(out, paths["sites"], motifs=MOTIFS[task])[0]
                        rows.append(
                            {
                                "model": model,
                                "rule": rule,
                                "reference": reference,
                                "max_rule": max_rule,
                                "task": "+".join(MOTIFS[task]),
                                "auroc": site["auroc_signed"],
                                "auprc": site["auprc_signed"],
                                "max_rel_summation_error": worst,
                                "seconds": seconds,
                            }
                        )
                        print(
                            " ".join(
                                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()
                            ),
                            flush=True,
                        )
                    _write(rows, args.output)
    print("\n| model | rule | reference | task | " + " | ".join(args.max_rules.split(",")) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in args.max_rules.split(",")) + " |")
    keys = sorted(
        {(r["model"], r["rule"], r["reference"], r["task"]) for r in rows},
        key=lambda k: [list(MODELS).index(k[0]), k[1], k[2], k[3]],
    )
    for key in keys:
        cells = {
            r["max_rule"]: f"{r['auroc']:.3f} / {r['auprc']:.3f}"
            for r in rows
            if (r["model"], r["rule"], r["reference"], r["task"]) == key
        }
        print(f"| {' | '.join(key)} | " + " | ".join(cells.get(m, "") for m in args.max_rules.split(",")) + " |")


if __name__ == "__main__":
    main()
