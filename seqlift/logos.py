"""Contribution logos of scored windows, drawn with logomaker.

A logo shows one stretch of a scored window: each base's letter is scaled by
its contribution (``projected_shap/seq``), positive up, negative down. The
optional hypothetical panel shows all four letters (``shap/seq``): what each
base would contribute had it been there.

Coordinates: every function here takes 0-based half-open coordinates, as in
BED, except :func:`parse_region`, which reads the 1-based inclusive region
strings people write (``chr1:1,001-1,100`` is ``("chr1", 1000, 1100)``).
Axis labels show 1-based positions. Minus-strand windows hold the reverse
complement of the genome; they are drawn in genome orientation, so the x axis
always increases along the genome.

Figures are :class:`matplotlib.figure.Figure` objects on the Agg canvas: no
display is needed and nothing is registered with pyplot.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import h5py
import logomaker
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from .errors import OutputError, RegionError
from .genome import ALPHABET, _preview_names, reverse_complement
from .outputs import atomic_output
from .logo_options import WIDTH
from .writers import open_scores as _open_scores

#: Output formats, by file suffix.
FORMATS = (".png", ".pdf", ".svg")

_REGION = re.compile(r"(?P<chrom>\S+):(?P<start>[0-9][0-9,]*)(?:-(?P<end>[0-9][0-9,]*))?")
_REGION_HINT = "write chrom:start-end, 1-based and inclusive, e.g. chr1:1,001-1,100"
_FIELDS = {
    "chrom": "coords_chrom",
    "start": "coords_start",
    "end": "coords_end",
    "strand": "meta/strand",
    "name": "meta/name",
}
_DATASETS = ("projected_shap/seq", "shap/seq", *_FIELDS.values())
_PANEL_HEIGHT = 1.7  # inches per logo panel
_MIN_WIDTH = 6.0  # inches, so that short regions keep a readable title


def parse_region(text: str) -> tuple[str, int, int]:
    """Read a region string as people write it.

    Parameters
    ----------
    text : str
        ``chrom:start-end``, 1-based and inclusive, commas allowed
        (``chr1:1,001-1,100``), or ``chrom:pos`` for a single base. The
        chromosome name may itself hold colons (the last one splits).

    Returns
    -------
    tuple of (str, int, int)
        ``(chrom, start, end)``, 0-based half-open.
    """
    match = _REGION.fullmatch(text.strip())
    if match is None:
        raise RegionError(f"cannot read region {text!r}; {_REGION_HINT}")
    start = int(match["start"].replace(",", ""))
    end = int((match["end"] or match["start"]).replace(",", ""))
    if start < 1:
        raise RegionError(f"region {text!r} starts at {start}, but positions start at 1; {_REGION_HINT}")
    if end < start:
        raise RegionError(f"region {text!r} ends ({end:,}) before it starts ({start:,}); {_REGION_HINT}")
    return match["chrom"], start - 1, end


def format_region(chrom: str, start: int, end: int) -> str:
    """``chrom:start-end``, 1-based inclusive with thousands separators, of a 0-based half-open interval."""
    return f"{chrom}:{start + 1:,}-{end:,}"


def open_scores(path: str | Path) -> h5py.File:
    """Open a score file (written by ``seqlift score``) with the datasets a logo needs."""
    return _open_scores(path, _DATASETS)


def _windows(h5, rows=slice(None)) -> dict:
    """chrom, start, end (0-based half-open), strand and name of ``rows`` of a score file (all by default)."""
    out = {}
    for key, name in _FIELDS.items():
        data = h5[name]
        out[key] = (data.asstr() if h5py.check_string_dtype(data.dtype) else data)[rows]
    return out


def select_rows(
    h5: h5py.File, index: int | None = None, name: str | None = None, region: tuple[str, int, int] | None = None
) -> list[tuple[int, int, int]]:
    """Rows of a score file to draw, and the stretch of each.

    Parameters
    ----------
    h5 : h5py.File
        An open score file (see :func:`open_scores`).
    index : int, optional
        A row of the file (0-based, in the file's order).
    name : str, optional
        A region name (``meta/name``); every row of that name is returned.
        Give ``index`` or ``name``, not both.
    region : tuple of (str, int, int), optional
        ``(chrom, start, end)``, 0-based half-open (see :func:`parse_region`):
        keep the rows whose window contains it, and draw only it.

    Returns
    -------
    list of (int, int, int)
        ``(row, start, end)`` in file order; ``start, end`` (0-based
        half-open) is ``region`` if given, else the whole window.
    """
    if index is not None and name is not None:
        raise ValueError("give index or name, not both")
    file = h5.filename
    win = _windows(h5)
    rows = np.arange(len(win["start"]))
    if index is not None:
        _check_row(h5, index)
        rows = rows[[index]]
    if name is not None:
        rows = rows[win["name"] == name]
        if not len(rows):
            close = difflib.get_close_matches(name, list(dict.fromkeys(win["name"])), n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"names are {_preview_names(win['name'])}"
            raise RegionError(f"no window named {name!r} in {file} ({hint}); give a name from meta/name or use --index")
    if region is None:
        return [(int(r), int(win["start"][r]), int(win["end"][r])) for r in rows]
    chrom, lo, hi = region
    on_chrom = rows[win["chrom"][rows] == chrom]
    inside = on_chrom[(win["start"][on_chrom] <= lo) & (win["end"][on_chrom] >= hi)]
    if len(inside):
        return [(int(r), lo, hi) for r in inside]
    text = format_region(chrom, lo, hi)
    where = f"row {index} of {file}" if index is not None else f"the windows named {name!r} in {file}" if name else file
    if not len(on_chrom):
        raise RegionError(
            f"region {text} lies in no scored window: {where} has no window on {chrom}; "
            f"give a region on {_preview_names(dict.fromkeys(win['chrom'][rows]))}"
        )
    outside = np.maximum(win["start"][on_chrom] - lo, 0) + np.maximum(hi - win["end"][on_chrom], 0)
    r = on_chrom[np.argmin(outside)]
    raise RegionError(
        f"region {text} lies in no scored window of {where}; the nearest is "
        f"{format_region(chrom, win['start'][r], win['end'][r])} (row {r}, {win['name'][r]}): "
        f"give a region inside one window"
    )


def top_rows(h5: h5py.File, n: int, block: int = 1024) -> list[tuple[int, int, int]]:
    """The ``n`` windows with the largest total absolute contribution.

    Parameters
    ----------
    h5 : h5py.File
        An open score file.
    n : int
        How many (all windows if the file holds fewer).
    block : int
        Rows read at a time.

    Returns
    -------
    list of (int, int, int)
        ``(row, start, end)`` of each window (0-based half-open), largest
        ``sum |projected_shap/seq|`` first.
    """
    data = h5["projected_shap/seq"]
    total = np.concatenate(
        [np.abs(data[i : i + block]).sum(axis=(1, 2)) for i in range(0, len(data), block)] or [np.zeros(0)]
    )
    starts, ends = h5["coords_start"][:], h5["coords_end"][:]
    return [(int(r), int(starts[r]), int(ends[r])) for r in np.argsort(-total, kind="stable")[:n]]


def draw_logo(ax: Axes, matrix: np.ndarray, start: int) -> logomaker.Logo:
    """Draw a contribution logo on ``ax``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    matrix : np.ndarray, shape=(4, L)
        Contributions, channels A, C, G, T, in genome orientation.
    start : int
        0-based coordinate of the first column; column ``i`` is drawn at the
        1-based position ``start + 1 + i``.

    Returns
    -------
    logomaker.Logo
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    frame = pd.DataFrame(matrix.T, columns=list(ALPHABET), index=np.arange(start + 1, start + 1 + matrix.shape[1]))
    logo = logomaker.Logo(
        frame,
        ax=ax,
        color_scheme="classic",
        font_name="DejaVu Sans",
        font_weight="bold",
        flip_below=False,
        baseline_width=0.6,
    )
    logo.style_spines(visible=False)
    logo.style_spines(spines=["left", "bottom"], visible=True)
    ax.set_xlim(start + 0.5, start + matrix.shape[1] + 0.5)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{int(x):,}"))
    return logo


def window(h5: h5py.File, row: int) -> dict:
    """One window of a score file.

    Parameters
    ----------
    h5 : h5py.File
        An open score file.
    row : int
        Its row (0-based).

    Returns
    -------
    dict
        ``chrom``, ``start``, ``end`` (0-based half-open), ``strand`` and ``name``.
    """
    _check_row(h5, row)
    win = _windows(h5, row)
    return {**win, "start": int(win["start"]), "end": int(win["end"])}


def matrix(
    h5: h5py.File, row: int, dataset: str = "projected_shap/seq", region: tuple[str, int, int] | None = None
) -> np.ndarray:
    """One window's scores (or one-hot) in genome orientation.

    Parameters
    ----------
    h5 : h5py.File
        An open score file.
    row : int
        Its row (0-based).
    dataset : str
        A (N, 4, L) dataset: ``projected_shap/seq``, ``shap/seq``, ``raw/seq``, ...
    region : tuple of (str, int, int), optional
        ``(chrom, start, end)``, 0-based half-open, inside the window: keep
        only it. Default: the whole window.

    Returns
    -------
    np.ndarray, shape=(4, end - start)
        Channels A, C, G, T along the + strand: a minus-strand window (stored
        as the reverse complement) is flipped back on both axes.
    """
    win = window(h5, row)
    values = h5[dataset][row]
    if win["strand"] == "-":
        values = reverse_complement(values)
    if region is None:
        return values
    chrom, lo, hi = region
    if not (chrom == win["chrom"] and win["start"] <= lo and hi <= win["end"]):
        raise RegionError(
            f"region {format_region(*region)} is not inside row {row} of {h5.filename} "
            f"({format_region(win['chrom'], win['start'], win['end'])}); give a region inside that window"
        )
    return values[:, lo - win["start"] : hi - win["start"]]


def strongest_stretch(h5: h5py.File, row: int, span: int) -> tuple[str, int, int]:
    """The ``span`` bp of a window with the largest total absolute contribution, ``(chrom, start, end)`` 0-based
    half-open; the whole window when ``span`` is 0 or at least its length."""
    win = window(h5, row)
    length = win["end"] - win["start"]
    if not span or span >= length:
        return win["chrom"], win["start"], win["end"]
    per_base = np.abs(matrix(h5, row)).sum(axis=0).astype(np.float64)
    sums = np.convolve(per_base, np.ones(span), mode="valid")
    lo = win["start"] + int(np.argmax(sums))
    return win["chrom"], lo, lo + span


def figure(
    files: Sequence[str | Path],
    row: int,
    region: tuple[str, int, int] | None = None,
    hypothetical: bool = False,
    width: float = WIDTH,
    span: int = 0,
) -> Figure:
    """The logo figure of one window, one panel per score file.

    Parameters
    ----------
    files : list of str or Path
        Score files holding the same window (compared by chrom, start, end and
        strand); ``row`` refers to the first, the window is looked up in the others.
    row : int
        Row of the window in ``files[0]`` (0-based).
    region : tuple of (str, int, int), optional
        ``(chrom, start, end)``, 0-based half-open, inside the window: draw
        only it. Default: ``span`` bp around the strongest contributions.
    hypothetical : bool
        Add the hypothetical contributions of every base (``shap/seq``) in a
        panel under each file's logo.
    width : float
        Figure width in inches per 100 bp.
    span : int
        Without ``region``: draw the ``span`` bp of the window with the largest
        total absolute contribution in the first file (0: the whole window).

    Returns
    -------
    matplotlib.figure.Figure
        Panels share the x axis (1-based genome positions); the title gives
        the region, the window's name and, per file, its method, rule and target.
    """
    files = [Path(f) for f in files]
    with open_scores(files[0]) as h5:
        win = window(h5, row)
        region = region or strongest_stretch(h5, row, span)
    chrom, lo, hi = region
    panels = []  # (title, ylabel, matrix (4, hi - lo))
    for path in files:
        with open_scores(path) as h5:
            r = row if path == files[0] else _same_window(h5, win, files[0], row)
            panels.append((f"{path.name}: {_describe(h5.attrs)}", "contribution", matrix(h5, r, region=region)))
            if hypothetical:
                panels.append((None, "hypothetical", matrix(h5, r, "shap/seq", region)))

    fig_width = max(_MIN_WIDTH, width * (hi - lo) / 100)
    parts = [format_region(chrom, lo, hi)] + ([win["name"]] if win["name"] not in ("", ".") else [])
    suptitle = _wrap(parts + (["(- strand, shown on +)"] if win["strand"] == "-" else []), fig_width, 8.5, "   ")
    titles = [_wrap(title.split(" "), fig_width, 6.5, " ") if title else "" for title, _, _ in panels]
    extra_lines = suptitle.count("\n") + sum(title.count("\n") for title in titles)
    fig = Figure(figsize=(fig_width, _PANEL_HEIGHT * len(panels) + 0.5 + 0.2 * extra_lines), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, title, (_, ylabel, values) in zip(axes, titles, panels):
        draw_logo(ax, values, lo)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left", fontsize="medium")
    label_width = 0.1 * len(f"{hi:,}") + 0.4  # inches per tick label, with a gap
    axes[-1].xaxis.set_major_locator(MaxNLocator(nbins=max(2, int(fig_width / label_width)), steps=[1, 2, 5, 10]))
    axes[-1].set_xlabel(f"{chrom} position (1-based)")
    fig.suptitle(suptitle, fontweight="bold")
    return fig


def _wrap(parts, width: float, char: float, sep: str) -> str:
    """Join ``parts`` with ``sep`` into lines that fit ``width`` inches, at ``char`` points a character."""
    lines = []
    for part in parts:
        if lines and len(lines[-1]) + len(sep) + len(part) <= width * 72 / char:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return "\n".join(lines)


def _check_row(h5, row: int) -> None:
    n = len(h5["coords_start"])
    if not 0 <= row < n:
        raise RegionError(f"index {row} is out of range: {h5.filename} holds {n} windows; give a row from 0 to {n - 1}")


def _same_window(h5, win, first, row) -> int:
    """Row of ``h5`` holding the window ``win`` (row ``row`` of ``first``)."""
    other = _windows(h5)
    same = np.flatnonzero(
        (other["chrom"] == win["chrom"])
        & (other["start"] == win["start"])
        & (other["end"] == win["end"])
        & (other["strand"] == win["strand"])
    )
    if not len(same):
        raise RegionError(
            f"{h5.filename} holds no window {format_region(win['chrom'], win['start'], win['end'])} "
            f"({win['strand']} strand, row {row} of {first}); compare score files of the same regions"
        )
    return int(same[0])


def _describe(attrs) -> str:
    """Method, rule (DeepLIFT only) and target of a score file, from its attributes."""
    method = attrs.get("method", "unknown method")
    rule = f" ({attrs['rule']})" if method == "deeplift" and "rule" in attrs else ""
    return f"{method}{rule}, target {attrs.get('target', '?')}"


def label(name: str, row: int, region: tuple[str, int, int] | None = None) -> str:
    """A file-name-safe label: the region (1-based) if given, else the window's name, else ``row<row>``."""
    if region is not None:
        text = f"{region[0]}_{region[1] + 1}-{region[2]}"
    else:
        text = name if name not in ("", ".") else f"row{row}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def save(figures: Figure | Iterable[Figure], path: str | Path, dpi: int = 150) -> Path:
    """Write figures to ``path`` under a temporary name, then rename it.

    Parameters
    ----------
    figures : Figure or iterable of Figure
        One figure, or (for a ``.pdf``) several, one page each.
    path : str or Path
        Output; the format comes from the suffix (``.png``, ``.pdf`` or ``.svg``).
    dpi : int
        Resolution of PNG output.

    Returns
    -------
    Path
    """
    path = Path(path)
    fmt = path.suffix.lower()
    if fmt not in FORMATS:
        raise OutputError(f"cannot write {path}: unknown format {fmt!r}; end the name in {', '.join(FORMATS)}")
    figures = [figures] if isinstance(figures, Figure) else figures
    with atomic_output(path, force=True) as tmp:
        if fmt == ".pdf":
            with PdfPages(tmp) as pdf:
                for fig in figures:
                    pdf.savefig(fig)
        else:
            [fig] = figures
            fig.savefig(tmp, format=fmt[1:], dpi=dpi)
    return path
