"""Motif discovery from a scores file with modisco-lite, and what it found, in common formats.

:func:`find_motifs` (behind ``seqlift motifs``) runs TF-MoDISco (the
``modiscolite`` package) on the central ``window`` bases of every scored window
and writes into one folder:

==================  ==============================================================
``modisco.h5``      modisco-lite's own results (``modisco report -i``, ``modisco meme -i`` read it)
``logos/*.png``     one contribution-weight-matrix (CWM) logo per motif, and with ``pwm=True``
                    the information-content logo of its seqlets' position weight matrix (PWM)
``motifs.meme``     the motifs' PWMs in minimal MEME format
``seqlets.bed``     every seqlet's motif core in genome coordinates (BED6, 0-based half-open)
``report.html``     motifs, logos, seqlet counts and, with a motif database, TOMTOM matches
==================  ==============================================================

Motif ``pos_pattern_<i>`` / ``neg_pattern_<i>`` is ``pos_patterns/pattern_<i>`` /
``neg_patterns/pattern_<i>`` of ``modisco.h5``. Each motif is trimmed to its
core, the span whose per-position total |CWM| reaches ``TRIM`` of its maximum
(as modisco-lite's reports trim); logos, MEME matrices, TOMTOM queries and
seqlet intervals all use that core.

N bases (all-zero one-hot columns) carry no contribution: modisco-lite
multiplies the hypothetical contributions by the one-hot sequence, and the
hypothetical contributions at N are set to zero here as well, so that they do
not enter the motifs' hypothetical CWMs. A seqlet may still span N columns;
a motif's PWM counts only the called bases at each position.
"""

from __future__ import annotations

import html
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import OutputError, ScoresError, UsageError
from .outputs import atomic_output, check_absent
from .writers import open_scores

if TYPE_CHECKING:  # modiscolite takes most of a second to import (numba); it is imported where it is used
    from modiscolite.core import SeqletSet

#: A motif's core: positions whose total |CWM| is at least this fraction of the largest.
TRIM = 0.3
#: Files that mark a folder as an earlier output of :func:`find_motifs` (replaceable with ``force``).
_OUTPUTS = ("modisco.h5", "motifs.meme", "seqlets.bed", "report.html")
_LETTERS = np.array(list("ACGT"))


@dataclass
class Motif:
    """One motif found by modisco-lite, trimmed to its core.

    Attributes
    ----------
    name : str
        ``pos_pattern_<i>`` or ``neg_pattern_<i>``.
    cwm : np.ndarray, shape=(w, 4)
        Mean actual-base contribution of the seqlets at each core position (channels A, C, G, T).
    ppm : np.ndarray, shape=(w, 4)
        Base frequencies of the seqlets at each core position (rows sum to 1).
    example_idx, start, end : np.ndarray, shape=(n,), dtype=int64
        Each seqlet's core: its window (row of the scores file) and the span in
        the cropped window, 0-based half-open, in the window's orientation.
    revcomp : np.ndarray, shape=(n,), dtype=bool
        Whether the seqlet reads the motif on the window's reverse strand.
    score : np.ndarray, shape=(n,), dtype=float64
        Total actual-base contribution of each seqlet's core.
    matches : list of (str, float, float)
        Best database matches: target name, TOMTOM p-value, q-value; filled by :func:`match_motifs`.
    """

    name: str
    cwm: np.ndarray
    ppm: np.ndarray
    example_idx: np.ndarray
    start: np.ndarray
    end: np.ndarray
    revcomp: np.ndarray
    score: np.ndarray
    matches: list = field(default_factory=list)

    @property
    def consensus(self) -> str:
        """The base of largest contribution at each core position (largest negative one for ``neg_`` motifs)."""
        sign = -1 if self.name.startswith("neg") else 1
        return "".join(_LETTERS[(sign * self.cwm).argmax(axis=1)])


def read_windows(path: str | Path, window: int = 400) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """The central ``window`` bases of every scored window, laid out for modisco-lite.

    Parameters
    ----------
    path : str or Path
        A scores file written by ``seqlift score``.
    window : int
        Bases kept around each window's centre; clipped to the scored length ``L``.

    Returns
    -------
    one_hot : np.ndarray, shape=(N, w, 4), dtype=float32
        Channels A, C, G, T; an all-zero row is an N.
    hypothetical : np.ndarray, shape=(N, w, 4), dtype=float32
        Hypothetical contributions (``shap/seq``), zero at N bases.
    coords : dict
        ``chrom`` (N,) str, ``start``/``end`` (N,) int64 (the scored windows,
        0-based half-open), ``strand`` (N,) str, and ``offset``: the first kept
        base, counted in each window's orientation.
    """
    if window < 1:
        raise UsageError(f"--window must be a positive number of bases, got {window}")
    with open_scores(path) as h5:
        length = h5["raw/seq"].shape[2]
        w = min(window, length)
        offset = (length - w) // 2
        crop = np.s_[:, :, offset : offset + w]
        one_hot = h5["raw/seq"][crop].transpose(0, 2, 1).astype(np.float32)
        hypothetical = h5["shap/seq"][crop].transpose(0, 2, 1).astype(np.float32)
        n = len(one_hot)
        strand = h5["meta/strand"].asstr()[:] if "meta/strand" in h5 else np.full(n, "+")
        coords = {
            "chrom": h5["coords_chrom"].asstr()[:],
            "start": h5["coords_start"][:].astype(np.int64),
            "end": h5["coords_end"][:].astype(np.int64),
            "strand": strand,
            "offset": offset,
        }
    if n == 0:
        raise ScoresError(f"{path} holds no scored windows; score some regions first")
    hypothetical[one_hot.sum(axis=2) == 0] = 0
    return one_hot, hypothetical, coords


def discover(
    one_hot: np.ndarray, hypothetical: np.ndarray, max_seqlets: int = 2000, n_leiden: int = 2
) -> tuple[list[SeqletSet] | None, list[SeqletSet] | None]:
    """Run modisco-lite with the settings of its ``modisco motifs`` command.

    Parameters
    ----------
    one_hot : np.ndarray, shape=(N, w, 4), dtype=float32
        Channels A, C, G, T.
    hypothetical : np.ndarray, shape=(N, w, 4), dtype=float32
        Hypothetical contributions.
    max_seqlets : int
        Most seqlets clustered per sign.
    n_leiden : int
        Leiden clusterings, each with its own seed.

    Returns
    -------
    pos_patterns, neg_patterns : list of modiscolite.core.SeqletSet or None
        Patterns of positive and of negative contribution.
    """
    from modiscolite.tfmodisco import TFMoDISco

    return TFMoDISco(
        one_hot=one_hot,
        hypothetical_contribs=hypothetical,
        max_seqlets_per_metacluster=max_seqlets,
        sliding_window_size=20,
        flank_size=5,
        trim_to_window_size=30,
        initial_flank_to_add=10,
        final_flank_to_add=0,
        target_seqlet_fdr=0.05,
        n_leiden_runs=n_leiden,
    )


def core_span(cwm: np.ndarray, trim: float = TRIM) -> tuple[int, int]:
    """The core of a motif: first and one-past-last position with total |CWM| >= ``trim`` x its maximum.

    Parameters
    ----------
    cwm : np.ndarray, shape=(w, 4)

    Returns
    -------
    (int, int)
        0-based half-open span of positions.
    """
    total = np.abs(cwm).sum(axis=1)
    keep = np.flatnonzero(total >= trim * total.max())
    return int(keep[0]), int(keep[-1]) + 1


def to_motifs(
    pos_patterns: list[SeqletSet] | None,
    neg_patterns: list[SeqletSet] | None,
    one_hot: np.ndarray,
    hypothetical: np.ndarray,
) -> list[Motif]:
    """Core-trimmed :class:`Motif` records of modisco-lite's patterns.

    Parameters
    ----------
    pos_patterns, neg_patterns : list of modiscolite.core.SeqletSet or None
        As :func:`discover` returns them.
    one_hot, hypothetical : np.ndarray, shape=(N, w, 4)
        The arrays the patterns were found in.

    Returns
    -------
    list of Motif
    """
    contrib = (one_hot * hypothetical).sum(axis=2)
    motifs = []
    for sign, patterns in (("pos", pos_patterns), ("neg", neg_patterns)):
        for i, pattern in enumerate(patterns or []):
            lo, hi = core_span(pattern.contrib_scores)
            counts = pattern.sequence[lo:hi]
            called = counts.sum(axis=1, keepdims=True)
            ppm = np.divide(counts, called, out=np.full_like(counts, 0.25), where=called > 0)
            seqlets = pattern.seqlets
            idx = np.array([s.example_idx for s in seqlets], dtype=np.int64)
            s_start = np.array([s.start for s in seqlets], dtype=np.int64)
            s_end = np.array([s.end for s in seqlets], dtype=np.int64)
            revcomp = np.array([bool(s.is_revcomp) for s in seqlets])
            start = np.where(revcomp, s_end - hi, s_start + lo)
            end = start + (hi - lo)
            score = np.array([contrib[j, a:b].sum() for j, a, b in zip(idx, start, end)], dtype=np.float64)
            motifs.append(
                Motif(
                    f"{sign}_pattern_{i}",
                    np.asarray(pattern.contrib_scores[lo:hi]),
                    ppm,
                    idx,
                    start,
                    end,
                    revcomp,
                    score,
                )
            )
    return motifs


def to_genome(
    start: np.ndarray,
    end: np.ndarray,
    strand: np.ndarray,
    win_start: np.ndarray,
    win_end: np.ndarray,
    win_strand: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map spans in windows (in each window's orientation) to genome coordinates.

    Parameters
    ----------
    start, end : np.ndarray, shape=(n,)
        Spans in the scored windows, 0-based half-open, counted from the
        window's first base in its orientation.
    strand : np.ndarray, shape=(n,), dtype=str
        ``+`` or ``-`` relative to the window.
    win_start, win_end : np.ndarray, shape=(n,)
        The windows in the genome, 0-based half-open.
    win_strand : np.ndarray, shape=(n,), dtype=str
        ``-`` for windows scored as the reverse complement; anything else is forward.

    Returns
    -------
    g_start, g_end : np.ndarray, shape=(n,), dtype=int64
        0-based half-open genome spans.
    g_strand : np.ndarray, shape=(n,), dtype=str
    """
    minus = np.asarray(win_strand) == "-"
    g_start = np.where(minus, win_end - end, win_start + start).astype(np.int64)
    g_end = np.where(minus, win_end - start, win_start + end).astype(np.int64)
    flip = {"+": "-", "-": "+"}
    g_strand = np.array([flip[s] if m else s for s, m in zip(strand, minus)], dtype=str)
    return g_start, g_end, g_strand


def write_bed(path: str | Path, motifs: list[Motif], coords: dict[str, Any]) -> None:
    """Write every seqlet core as BED6 (chrom, start, end, motif, score, strand), sorted by position.

    Parameters
    ----------
    path : str or Path
    motifs : list of Motif
    coords : dict
        As :func:`read_windows` returns it; spans are 0-based half-open.
    """
    rows = []
    for m in motifs:
        at = coords["offset"]
        g_start, g_end, g_strand = to_genome(
            m.start + at,
            m.end + at,
            np.where(m.revcomp, "-", "+"),
            coords["start"][m.example_idx],
            coords["end"][m.example_idx],
            coords["strand"][m.example_idx],
        )
        chroms = coords["chrom"][m.example_idx]
        rows += zip(chroms, g_start.tolist(), g_end.tolist(), [m.name] * len(chroms), m.score, g_strand)
    rows.sort(key=lambda r: r[:3])
    Path(path).write_text("".join(f"{c}\t{s}\t{e}\t{n}\t{v:.4g}\t{d}\n" for c, s, e, n, v, d in rows))


def write_meme(path: str | Path, motifs: list[Motif], background: np.ndarray) -> None:
    """Write the motifs' PPMs as minimal MEME text.

    Parameters
    ----------
    path : str or Path
    motifs : list of Motif
    background : np.ndarray, shape=(4,)
        Base frequencies A, C, G, T.
    """
    lines = [
        "MEME version 4",
        "",
        "ALPHABET= ACGT",
        "",
        "strands: + -",
        "",
        "Background letter frequencies",
        " ".join(f"{b} {f:.4f}" for b, f in zip("ACGT", background)),
        "",
    ]
    for m in motifs:
        lines += [
            f"MOTIF {m.name}",
            f"letter-probability matrix: alength= 4 w= {len(m.ppm)} nsites= {len(m.start)} E= 0",
        ]
        lines += [" ".join(f"{p:.6f}" for p in row) for row in m.ppm]
        lines.append("")
    Path(path).write_text("\n".join(lines))


def information(ppm: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Each base's height in an information-content logo: frequency x the position's information (bits).

    Parameters
    ----------
    ppm : np.ndarray, shape=(w, 4)
        Rows sum to 1.
    background : np.ndarray, shape=(4,)

    Returns
    -------
    np.ndarray, shape=(w, 4)
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = np.where(ppm > 0, ppm * np.log2(ppm / background), 0).sum(axis=1, keepdims=True)
    return ppm * bits


def plot_logo(matrix: np.ndarray, path: str | Path, title: str, ylabel: str) -> None:
    """Save a sequence logo of ``matrix``, shape=(w, 4) with channels A, C, G, T, as a PNG."""
    import logomaker
    import pandas as pd
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(3.0, 0.4 * len(matrix) + 1), 2.2))
    ax = fig.subplots()
    logomaker.Logo(pd.DataFrame(matrix, columns=list("ACGT")), ax=ax)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xticks(range(len(matrix)))
    ax.set_xticklabels(range(1, len(matrix) + 1))
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """q-values of the p-values in each row of ``p``, shape=(n, m), over that row."""
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1) * p.shape[1] / np.arange(1, p.shape[1] + 1)
    ranked = np.minimum.accumulate(ranked[:, ::-1], axis=1)[:, ::-1]
    q = np.empty_like(p)
    np.put_along_axis(q, order, np.minimum(ranked, 1), axis=1)
    return q


def match_motifs(motifs: list[Motif], motif_db: str | Path, n: int = 3) -> None:
    """Fill each motif's ``matches`` with its ``n`` best TOMTOM matches (memelite) in a MEME file.

    p-values come from memelite's TOMTOM (both strands); q-values are
    Benjamini-Hochberg over all of the database's motifs, per query.

    Parameters
    ----------
    motifs : list of Motif
        Queries: their PPMs.
    motif_db : str or Path
        MEME file of target motifs.
    n : int
        Matches kept per motif.
    """
    from memelite import tomtom
    from memelite.io import read_meme

    try:
        db = read_meme(str(motif_db))
    except (OSError, ValueError, AttributeError, IndexError) as exc:
        raise ScoresError(f"cannot read motif database {motif_db} as MEME text ({exc}); give a .meme file") from None
    if not db:
        raise ScoresError(
            f"motif database {motif_db} holds no MOTIF with a letter-probability matrix; "
            "give a MEME file such as JASPAR's"
        )
    names = list(db)
    p = tomtom([m.ppm.T for m in motifs], list(db.values()))[0]
    q = benjamini_hochberg(p)
    for m, p_row, q_row in zip(motifs, p, q):
        best = np.argsort(p_row, kind="stable")[:n]
        m.matches = [(names[j], float(p_row[j]), float(q_row[j])) for j in best]


def write_report(
    path: str | Path, motifs: list[Motif], scores: str | Path, pwm: bool = False, motif_db: str | Path | None = None
) -> None:
    """Write one HTML page: a row per motif with its logos (relative paths), seqlet count and matches.

    Parameters
    ----------
    path : str or Path
        ``report.html`` inside the output folder; logos are ``logos/<name>.cwm.png`` (and ``.pwm.png``).
    motifs : list of Motif
    scores : str or Path
        The scores file, named in the page.
    pwm : bool
        Whether PWM logos were drawn.
    motif_db : str or Path or None
        The database the matches come from; None says that no matching was done.
    """
    e = html.escape
    head = ["motif", "seqlets", "consensus", "CWM logo"] + (["PWM logo"] if pwm else []) + ["best matches (TOMTOM)"]
    rows = []
    for m in motifs:
        logos = [f'<img src="logos/{e(m.name)}.cwm.png" alt="{e(m.name)} CWM">']
        if pwm:
            logos.append(f'<img src="logos/{e(m.name)}.pwm.png" alt="{e(m.name)} PWM">')
        if motif_db is None:
            found = "no motif database given"
        else:
            found = "<br>".join(f"{e(t)} (p={p:.2g}, q={q:.2g})" for t, p, q in m.matches)
        cells = [e(m.name), str(len(m.start)), f"<code>{m.consensus}</code>", *logos, found]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    db_line = (
        f"Matches against {e(str(motif_db))} (memelite TOMTOM; q-values Benjamini-Hochberg per motif)."
        if motif_db is not None
        else "No motif database given (--motif-db): motifs were not matched."
    )
    Path(path).write_text(f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>seqlift motifs: {e(Path(scores).name)}</title>
<style>body{{font-family:sans-serif}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px}}</style>
</head><body>
<h1>Motifs in {e(str(scores))}</h1>
<p>{len(motifs)} motifs found by modisco-lite; full results in <a href="modisco.h5">modisco.h5</a>,
PWMs in <a href="motifs.meme">motifs.meme</a>, seqlets in <a href="seqlets.bed">seqlets.bed</a>.</p>
<p>{db_line}</p>
<table>
<tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>
{chr(10).join(rows)}
</table>
</body></html>
""")


def _check_outdir(outdir: Path, force: bool):
    check_absent(outdir, force, folder=True)
    if not outdir.exists():
        return
    if not outdir.is_dir():
        raise OutputError(f"output {outdir} exists and is not a folder; choose another -o")
    if any(outdir.iterdir()) and not any((outdir / name).exists() for name in _OUTPUTS):
        raise OutputError(
            f"output folder {outdir} holds files that 'seqlift motifs' did not write; "
            "--force only replaces an earlier motifs output, so choose another -o"
        )


def find_motifs(
    scores: str | Path,
    outdir: str | Path,
    *,
    max_seqlets: int = 2000,
    window: int = 400,
    n_leiden: int = 2,
    motif_db: str | Path | None = None,
    pwm: bool = False,
    force: bool = False,
    progress: bool = True,
) -> list[Motif]:
    """Discover motifs in a scores file with modisco-lite and write them into ``outdir``.

    Parameters
    ----------
    scores : str or Path
        A scores file written by ``seqlift score`` (windows 0-based half-open).
    outdir : str or Path
        Folder to create; written under ``<outdir>.partial`` and renamed when complete.
    max_seqlets : int
        Most seqlets clustered per sign.
    window : int
        Central bases of each scored window to search; clipped to its length.
    n_leiden : int
        Leiden clusterings in modisco-lite.
    motif_db : str or Path or None
        MEME file to match the motifs against with TOMTOM.
    pwm : bool
        Also draw an information-content logo of each motif's PWM.
    force : bool
        Replace an existing output folder of an earlier run.
    progress : bool
        Print each stage on stderr. (A tqdm bar is not used: its monitor thread
        would stop modisco-lite from compiling its numba kernels in forked
        children, into numba's cache, which it does only in a single-threaded
        process; the run then compiles them in-process each time.)

    Returns
    -------
    list of Motif
        The motifs written, with their matches when ``motif_db`` is given.
    """
    outdir = Path(outdir)
    _check_outdir(outdir, force)
    if motif_db is not None and not Path(motif_db).is_file():
        raise ScoresError(f"motif database {motif_db} does not exist; give a MEME file with --motif-db")
    if max_seqlets < 1 or n_leiden < 1:
        raise UsageError(f"--max-seqlets ({max_seqlets}) and --n-leiden ({n_leiden}) must be at least 1")

    def say(message):
        if progress:
            print(f"seqlift motifs: {message}", file=sys.stderr)

    one_hot, hypothetical, coords = read_windows(scores, window)
    say(f"modisco-lite on {len(one_hot)} windows of {one_hot.shape[1]} bp")
    pos, neg = discover(one_hot, hypothetical, max_seqlets, n_leiden)
    motifs = to_motifs(pos, neg, one_hot, hypothetical)
    if not motifs:
        raise ScoresError(
            f"modisco-lite found no motif in {scores} ({len(one_hot)} windows of {one_hot.shape[1]} bp): too few "
            "seqlets of high contribution; score more regions or check that the model has learnt the task"
        )
    say(f"{len(motifs)} motifs from {sum(len(m.start) for m in motifs)} seqlets; writing {outdir}")
    from modiscolite.io import save_hdf5

    with atomic_output(outdir, force=force, folder=True) as tmp:
        (tmp / "logos").mkdir()
        save_hdf5(str(tmp / "modisco.h5"), pos, neg, one_hot.shape[1])
        called = one_hot.sum(axis=(0, 1))
        background = called / called.sum()
        write_meme(tmp / "motifs.meme", motifs, background)
        write_bed(tmp / "seqlets.bed", motifs, coords)
        for m in motifs:
            plot_logo(
                m.cwm, tmp / "logos" / f"{m.name}.cwm.png", f"{m.name} CWM ({len(m.start)} seqlets)", "contribution"
            )
            if pwm:
                plot_logo(information(m.ppm, background), tmp / "logos" / f"{m.name}.pwm.png", f"{m.name} PWM", "bits")
        if motif_db is not None:
            say(f"matching against {motif_db} (TOMTOM)")
            match_motifs(motifs, motif_db)
        write_report(tmp / "report.html", motifs, scores, pwm, motif_db)
    return motifs
