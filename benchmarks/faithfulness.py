"""Which method finds the bases that matter? DeepLIFT against gradient x input, integrated gradients and ISM.

For each bundled demo model (the CNN, the conv + BiLSTM and the conv + attention network, all trained on
the demo's GATA/TAL1 simulation by ``scripts/make_demo.py``), every method scores the demo's regions for
a task, and two checks are made with ``seqlift evaluate``:

- ``sites``: AUROC and AUPRC of the actual base's contribution at the planted sites of that task's motif
  (signed scores, since a planted site raises the logit);
- ``perturb``: the mean change of the target when the top-k scored bases are mutated, minus the same for
  k random bases (more negative is more faithful), for k = 1 and k = 5.

Methods: DeepLIFT (Rescale and RevealCancel rules, 20 dinucleotide shuffles), gradient x input, integrated
gradients (the same 20 shuffles, 32 Gauss-Legendre steps) and in-silico mutagenesis. Results are printed
as a Markdown table and written to ``benchmarks/results/faithfulness.tsv``.

Usage: ``python benchmarks/faithfulness.py [--models cnn,bilstm,attention] [--tasks 0,1]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import seqlift
from seqlift.demo import demo_paths
from seqlift.evaluate import perturbation, site_recovery
from seqlift.writers import open_scores

HERE = Path(__file__).resolve().parent
DEMO = Path(demo_paths()["fasta"]).parent
MODELS = {"cnn": DEMO / "model.pt2", "bilstm": DEMO / "bilstm.pt2", "attention": DEMO / "attention.pt2"}
MOTIF = {0: "GATA", 1: "TAL1"}
METHODS = {
    "deeplift (rescale)": {"method": "deeplift", "rule": "rescale"},
    "deeplift (revealcancel)": {"method": "deeplift", "rule": "revealcancel"},
    "gradient x input": {"method": "gradient-x-input"},
    "integrated gradients": {"method": "integrated-gradients", "steps": 32},
    "ism": {"method": "ism"},
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,bilstm,attention")
    parser.add_argument("--tasks", default="0,1")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = demo_paths()
    rows = []
    out_dir = Path(tempfile.mkdtemp())
    for model_name in args.models.split(","):
        for task in map(int, args.tasks.split(",")):
            for label, options in METHODS.items():
                out = out_dir / f"{model_name}-{task}-{label.replace(' ', '_')}.h5"
                t0 = time.perf_counter()
                seqlift.score(
                    paths["regions"],
                    paths["fasta"],
                    str(MODELS[model_name]),
                    out,
                    target=task,
                    n_refs=20,
                    seed=0,
                    batch_size=32,
                    progress=False,
                    **options,
                )
                seconds = time.perf_counter() - t0
                with open_scores(out) as h5:
                    worst = float(h5["meta/delta_rel_error"][:].max())
                site = site_recovery(out, paths["sites"], motifs=[MOTIF[task]])[0]
                table = {
                    r["k"]: r for r in perturbation(out, str(MODELS[model_name]), ks=(1, 5), seed=0, progress=False)
                }
                rows.append(
                    {
                        "model": model_name,
                        "task": MOTIF[task],
                        "method": label,
                        "seconds": seconds,
                        "auroc": site["auroc_signed"],
                        "auprc": site["auprc_signed"],
                        "top1_minus_random": table[1]["mean_delta_top"] - table[1]["mean_delta_random"],
                        "top5_minus_random": table[5]["mean_delta_top"] - table[5]["mean_delta_random"],
                        "max_rel_summation_error": worst if options["method"] == "deeplift" else float("nan"),
                    }
                )
                print(
                    " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()),
                    flush=True,
                )
    columns = list(rows[0])
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "faithfulness.tsv", "w") as fh:
        fh.write("\t".join(columns) + "\n")
        for r in rows:
            fh.write("\t".join(f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in columns) + "\n")
    print("\n| model | motif | method | site AUROC | site AUPRC | top-1 − random | top-5 − random | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['task']} | {r['method']} | {r['auroc']:.3f} | {r['auprc']:.3f} | "
            f"{r['top1_minus_random']:.3f} | {r['top5_minus_random']:.3f} | {r['seconds']:.1f} |"
        )


if __name__ == "__main__":
    main()
