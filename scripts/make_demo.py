"""Generate the bundled demo: genome, regions, motif sites and trained models.

The design follows the DeepLIFT paper's simulation: i.i.d. background sequence
(40% GC) with GATA and TAL1 motif instances sampled from position probability
matrices and planted at random positions and strands. A small CNN learns three
tasks: contains GATA, contains TAL1, contains both. Everything is deterministic
given ``--seed``.

``--arch`` picks the network: ``cnn`` (``model.*``, :class:`DemoCNN`), ``bilstm``
(``bilstm.*``, a DanQ-style conv + BiLSTM) or ``attention`` (``attention.*``, conv +
transformer encoder layer). ``--model-only`` trains on the same simulated data
without rewriting the genome and BED files.

Usage: ``python scripts/make_demo.py --out seqlift/demo --seed 0 [--arch bilstm --model-only]``
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyfaidx
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from seqlift.demo.model import DemoAttention, DemoBiLSTM, DemoCNN

#: --arch -> (class, file stem)
ARCHS = {"cnn": (DemoCNN, "model"), "bilstm": (DemoBiLSTM, "bilstm"), "attention": (DemoAttention, "attention")}

BACKGROUND = np.array([0.3, 0.2, 0.2, 0.3])  # A, C, G, T: 40% GC

# Position probability matrices, rows = positions, columns = A, C, G, T.
MOTIFS = {
    "GATA": np.array(
        [  # consensus AGATAAGA
            [0.93, 0.02, 0.03, 0.02],
            [0.01, 0.01, 0.96, 0.02],
            [0.98, 0.01, 0.005, 0.005],
            [0.005, 0.005, 0.01, 0.98],
            [0.98, 0.01, 0.005, 0.005],
            [0.96, 0.01, 0.02, 0.01],
            [0.03, 0.02, 0.93, 0.02],
            [0.90, 0.03, 0.04, 0.03],
        ]
    ),
    "TAL1": np.array(
        [  # consensus ACCAGCTGTC, core CAGCTG or CATCTG
            [0.60, 0.14, 0.13, 0.13],
            [0.05, 0.85, 0.05, 0.05],
            [0.01, 0.97, 0.01, 0.01],
            [0.97, 0.01, 0.01, 0.01],
            [0.02, 0.01, 0.60, 0.37],
            [0.01, 0.97, 0.01, 0.01],
            [0.01, 0.01, 0.01, 0.97],
            [0.01, 0.01, 0.97, 0.01],
            [0.08, 0.09, 0.08, 0.75],
            [0.13, 0.60, 0.14, 0.13],
        ]
    ),
}
CLASSES = ("gata", "tal", "both", "none")
SEQ_LEN = 200
PLANT_LO, PLANT_HI = 25, 175  # motifs go inside the central 150 bp

# ASCII byte -> code 0..3 for A, C, G, T (either case), 4 for anything else.
LOOKUP = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    LOOKUP[_b] = LOOKUP[_b + 32] = _i


def one_hot(codes):
    """One-hot encode base codes.

    Parameters
    ----------
    codes : np.ndarray, shape=(N, L), uint8
        0..3 for A, C, G, T; 4 for N.

    Returns
    -------
    np.ndarray, shape=(N, 4, L), float32
        Channels A, C, G, T; an N is an all-zero column.
    """
    return np.eye(5, 4, dtype=np.float32)[codes].transpose(0, 2, 1)


def sample_background(rng, n, length):
    """Draw i.i.d. background codes, shape=(n, length)."""
    return rng.choice(4, size=(n, length), p=BACKGROUND).astype(np.uint8)


def motif_names(rng, cls):
    """Draw the motifs to plant for a class: 1-3 for one motif, 2-3 for both, none for none."""
    if cls == "none":
        return []
    if cls == "both":
        names = ["GATA", "TAL1"] + list(rng.choice(["GATA", "TAL1"], size=rng.integers(0, 2)))
        return [names[i] for i in rng.permutation(len(names))]
    return ["GATA" if cls == "gata" else "TAL1"] * int(rng.integers(1, 4))


def plant(rng, seq, names):
    """Plant motif instances sampled from their PPMs into ``seq`` in place.

    Instances do not overlap and lie inside ``[PLANT_LO, PLANT_HI)`` of ``seq``.

    Returns
    -------
    list of tuple
        ``(start, end, name, strand)`` per instance, 0-based half-open in ``seq``.
    """
    sites = []
    for name in names:
        ppm = MOTIFS[name]
        width = len(ppm)
        while True:
            start = int(rng.integers(PLANT_LO, PLANT_HI - width + 1))
            if all(start + width < s or e < start for s, e, _, _ in sites):
                break
        inst = np.array([rng.choice(4, p=row) for row in ppm], dtype=np.uint8)
        strand = "+" if rng.random() < 0.5 else "-"
        seq[start : start + width] = inst if strand == "+" else 3 - inst[::-1]
        sites.append((start, start + width, name, strand))
    return sites


def make_training_set(rng, n):
    """Simulate ``n`` sequences with labels (contains GATA, contains TAL1, contains both).

    Returns
    -------
    X : np.ndarray, shape=(n, 4, SEQ_LEN), float32
    y : np.ndarray, shape=(n, 3), float32
    """
    codes = sample_background(rng, n, SEQ_LEN)
    y = np.zeros((n, 3), dtype=np.float32)
    for i, cls in enumerate(rng.choice(CLASSES, size=n)):
        names = motif_names(rng, cls)
        plant(rng, codes[i], names)
        y[i, 0], y[i, 1] = "GATA" in names, "TAL1" in names
    y[:, 2] = y[:, 0] * y[:, 1]
    return one_hot(codes), y


def auroc(y, score):
    """Area under the ROC curve by the rank-sum statistic (ties get average ranks)."""
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    n_pos = y.sum()
    n_neg = len(y) - n_pos
    return (ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def predict(model, X, batch_size=500):
    """Logits of ``model`` in eval mode, shape=(N, n_tasks), for X, shape=(N, 4, L)."""
    model.eval()
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(X[i : i + batch_size])) for i in range(0, len(X), batch_size)]).numpy()


def train(X, y, X_val, y_val, seed, min_auroc, min_epochs, max_epochs, cls=DemoCNN):
    """Train a ``cls`` network until validation AUROC of tasks 0 and 1 exceeds ``min_auroc``.

    X, X_val : np.ndarray, shape=(N, 4, L), float32; y, y_val : np.ndarray, shape=(N, 3), float32.
    Trains at least ``min_epochs`` and at most ``max_epochs`` epochs.
    """
    torch.manual_seed(seed)
    model = cls()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    for epoch in range(1, max_epochs + 1):
        model.train()
        for idx in torch.randperm(len(X)).split(64):
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(model(X[idx]), y[idx]).backward()
            opt.step()
        pred = predict(model, X_val)
        aucs = [auroc(y_val[:, t], pred[:, t]) for t in range(y_val.shape[1])]
        print(f"epoch {epoch}: validation AUROC " + " ".join(f"task{t}={a:.4f}" for t, a in enumerate(aucs)))
        if epoch >= min_epochs and min(aucs[:2]) > min_auroc:
            return model.eval()
    raise SystemExit(f"validation AUROC stayed at or below {min_auroc} after {max_epochs} epochs; raise --max-epochs")


def make_genome(rng, lengths):
    """Simulate a genome with 100 planted 200 bp windows per chromosome.

    Returns
    -------
    genome : dict of str to np.ndarray
        Base codes per chromosome, shape=(length,).
    regions : list of tuple
        ``(chrom, window_start, class, sites)``; sites are ``(start, end, name, strand)``
        in chromosome coordinates, all 0-based half-open.
    """
    genome, regions = {}, []
    classes = rng.permutation(np.repeat(CLASSES, 50))
    slot = 1400
    for c, (chrom, length) in enumerate(lengths.items()):
        seq = sample_background(rng, 1, length)[0]
        for k in range(100):
            ws = 1000 + k * slot + int(rng.integers(300, 901))
            cls = str(classes[c * 100 + k])
            sites = plant(rng, seq[ws : ws + SEQ_LEN], motif_names(rng, cls))
            regions.append((chrom, ws, cls, sorted((ws + s, ws + e, n, st) for s, e, n, st in sites)))
        genome[chrom] = seq
    return genome, regions


def write_fasta(path, genome, rng, width=60):
    """Write the genome with soft-masked stretches and one N run after the last region."""
    chars = np.frombuffer(b"ACGTN", dtype=np.uint8)
    with open(path, "w") as f:
        for i, (chrom, codes) in enumerate(genome.items()):
            seq = chars[codes].copy()
            for _ in range(4):
                start = int(rng.integers(0, len(seq) - 3000))
                seq[start : start + int(rng.integers(300, 3000))] |= 32  # lowercase
            if i == len(genome) - 1:
                seq[-2000:-1950] = ord("N")
            text = seq.tobytes().decode()
            f.write(f">{chrom}\n")
            f.writelines(text[j : j + width] + "\n" for j in range(0, len(text), width))


def write_beds(regions_path, sites_path, regions, rng, n_off_centre=10):
    """Write narrowPeak regions (some with motifs get off-centre summits) and BED6 motif sites."""
    with_sites = [i for i, region in enumerate(regions) if region[3]]
    off = set(rng.choice(with_sites, size=n_off_centre, replace=False).tolist())
    with open(regions_path, "w") as fr, open(sites_path, "w") as fs:
        for i, (chrom, ws, cls, sites) in enumerate(regions):
            if i in off:  # the 200 bp window centred on the summit is the planted one
                length = int(rng.integers(300, 401))
                summit = int(rng.choice(np.r_[30 : length // 2 - 60, length // 2 + 61 : length - 29]))
            else:
                length, summit = SEQ_LEN, SEQ_LEN // 2
            start = ws + SEQ_LEN // 2 - summit
            signal = 2.0 + 3.0 * len(sites) + rng.random()
            fields = [
                chrom,
                start,
                start + length,
                f"region_{i:04d}_{cls}",
                min(1000, int(100 * signal)),
                ".",
                f"{signal:.3f}",
                f"{3 * signal:.3f}",
                f"{2.5 * signal:.3f}",
                summit,
            ]
            fr.write("\t".join(map(str, fields)) + "\n")
            for s, e, name, strand in sites:
                fs.write(f"{chrom}\t{s}\t{e}\t{name}\t0\t{strand}\n")


def export_model(model, path):
    """Export ``model`` with a dynamic batch dimension, save it, and check the reloaded program."""
    ep = torch.export.export(model.eval(), (torch.zeros(2, 4, SEQ_LEN),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(ep, path)
    loaded = torch.export.load(path).module()
    gen = torch.Generator().manual_seed(1)
    for n in (1, 3, 7):
        x = F.one_hot(torch.randint(0, 4, (n, SEQ_LEN), generator=gen), 4).float().transpose(1, 2)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=1e-6)
    return ep


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("seqlift/demo"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--n-train", type=int, default=12000, help="simulated training sequences")
    parser.add_argument("--n-val", type=int, default=2000, help="simulated validation sequences")
    parser.add_argument("--min-auroc", type=float, default=0.95, help="validation AUROC to reach (tasks 0, 1)")
    parser.add_argument("--min-epochs", type=int, default=12, help="train at least this many epochs")
    parser.add_argument("--max-epochs", type=int, default=40, help="give up after this many epochs")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="cnn", help="network to train")
    parser.add_argument("--model-only", action="store_true", help="keep the genome and BED files as they are")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    cls, stem = ARCHS[args.arch]

    genome, regions = make_genome(rng, {"chr1": 150_000, "chr2": 148_317})
    # with --model-only the files are written aside (the draws stay the same) and the bundled ones read
    scratch = Path(tempfile.mkdtemp()) if args.model_only else args.out
    write_fasta(scratch / "genome.fa", genome, rng)
    write_beds(scratch / "regions.bed", scratch / "motif_sites.bed", regions, rng)
    fasta = args.out / "genome.fa"
    if not args.model_only:
        Path(f"{fasta}.fai").unlink(missing_ok=True)
        pyfaidx.Faidx(str(fasta)).close()

    X, y = make_training_set(rng, args.n_train)
    X_val, y_val = make_training_set(rng, args.n_val)
    print("training positives per task: " + " ".join(f"{p:.3f}" for p in y.mean(0)))
    t0 = time.perf_counter()
    model = train(X, y, X_val, y_val, args.seed, args.min_auroc, args.min_epochs, args.max_epochs, cls)
    print(f"training took {time.perf_counter() - t0:.1f} s")

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out / f"{stem}.safetensors")
    ep = export_model(model, args.out / f"{stem}.pt2")
    ops = sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"})
    print(f"exported ops: {', '.join(ops)}")

    with pyfaidx.Fasta(str(fasta)) as fa:
        seqs = [str(fa[c][ws : ws + SEQ_LEN]) for c, ws, _, _ in regions]
    codes = LOOKUP[np.frombuffer("".join(seqs).encode(), np.uint8)].reshape(len(seqs), -1)
    pred = predict(model, one_hot(codes))
    labels = np.array([[cls in ("gata", "both"), cls in ("tal", "both")] for _, _, cls, _ in regions])
    n_sites = sum(len(s) for *_, s in regions)
    sizes = ", ".join(f"{c} {len(s):,} bp" for c, s in genome.items())
    print(
        f"genome: {sizes}; {len(regions)} regions, "
        f"{n_sites} motif sites; AUROC on genome regions task0={auroc(labels[:, 0], pred[:, 0]):.4f} "
        f"task1={auroc(labels[:, 1], pred[:, 1]):.4f}"
    )
    for p in sorted(args.out.iterdir()):
        if p.suffix in {".fa", ".fai", ".bed", ".safetensors", ".pt2"}:
            print(f"{p}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
