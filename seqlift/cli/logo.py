"""``seqlift logo``: contribution logos of scored windows."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from .helpers import readable_scores
from .options import config_option, force_option, quiet_option
from ..errors import OutputError
from ..outputs import check_absent
from ..progress import progress_bar
from ..logo_options import SPAN, WIDTH


@click.command()
@click.argument("scores", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--region", "-r", help="Stretch to draw, 1-based inclusive: chr1:1,001-1,100. Must lie in one window.")
@click.option("--index", "-i", type=click.IntRange(min=0), help="Window to draw: its row in the score file (0-based).")
@click.option("--name", "-n", help="Window to draw: its region name (BED column 4).")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    metavar="N",
    help="Draw the N windows of largest total |contribution|: one page each of a PDF if --out ends "
    "in .pdf, else one PNG each in the folder --out.",
)
@click.option("--hypothetical", is_flag=True, help="Add a panel of the hypothetical contributions of all four bases.")
@click.option(
    "--out",
    "--output",
    "-o",
    "output",
    type=click.Path(),
    help="Figure to write (.png, .pdf or .svg); default STEM.LABEL.png next to the first score file, "
    "STEM the score files' stems joined by '+' (a folder STEM.topN with --top).",
)
@click.option(
    "--width",
    type=click.FloatRange(min=0, min_open=True),
    default=WIDTH,
    show_default=True,
    help="Figure width in inches per 100 bp.",
)
@click.option(
    "--span",
    type=click.IntRange(min=0),
    default=SPAN,
    show_default=True,
    help="Without --region, draw this many bp around the strongest contributions; 0 for the whole window.",
)
@click.option("--dpi", type=click.IntRange(min=10), default=150, show_default=True, help="Resolution of PNGs.")
@force_option()
@quiet_option()
@config_option
def logo(scores, region, index, name, top, hypothetical, output, width, span, dpi, force, quiet):
    """Draw the contribution logo of one window (or part of it) of SCORES.

    Pick the window with --index, --name or --region (the first window that
    contains the region), or rank them with --top. Several score files of
    the same regions (say, two methods) are stacked as panels to compare.
    """
    from ..logos import figure, label, open_scores, parse_region, save, select_rows, top_rows

    if top is not None and (region or index is not None or name):
        raise click.UsageError("--top ranks every window; give it without --region, --index or --name")
    if top is None and not (region or index is not None or name):
        raise click.UsageError("say what to draw: --region, --index, --name or --top")
    if index is not None and name:
        raise click.UsageError("give --index or --name, not both")
    first = Path(scores[0])
    stem = first.with_name("+".join(Path(path).stem for path in scores))  # several files: a+b.LABEL.png
    stretch = parse_region(region) if region else None

    with readable_scores(scores):
        with open_scores(first) as h5:
            if top is not None:
                picks = top_rows(h5, top)
            else:
                picks = select_rows(h5, index=index, name=name, region=stretch)
            names = h5["meta/name"].asstr()[:]

        if top is None:
            if len(picks) > 1 and name:
                warnings.warn(
                    f"{len(picks)} windows of {first} are named {name!r}; drawing the first (row "
                    f"{picks[0][0]}); use --index to pick another",
                    stacklevel=2,
                )
            row = picks[0][0]
            out = Path(output) if output else Path(f"{stem}.{label(names[row], row, stretch)}.png")
            check_absent(out, force)
            save(figure(scores, row, stretch, hypothetical, width, span), out, dpi)
        else:
            out = Path(output) if output else Path(f"{stem}.top{top}")
            if out.suffix.lower() in (".png", ".svg") or (out.is_file() and out.suffix.lower() != ".pdf"):
                raise OutputError(
                    f"--top writes one PDF or a folder of PNGs, not {out}; give --out top.pdf or a folder"
                )
            check_absent(out, force)
            ranked = progress_bar(picks, desc="logos", unit="logo", show=not quiet)
            if out.suffix.lower() == ".pdf":
                save((figure(scores, row, None, hypothetical, width, span) for row, _, _ in ranked), out, dpi)
            else:
                created = not out.exists()
                out.mkdir(exist_ok=True)
                digits = len(str(len(picks)))
                written = []
                try:
                    for rank, (row, _, _) in enumerate(ranked, 1):
                        fig = figure(scores, row, None, hypothetical, width, span)
                        written.append(save(fig, out / f"{rank:0{digits}d}_{label(names[row], row)}.png", dpi))
                except BaseException:  # no half-written folder: take back the logos of this run
                    for path in written:
                        path.unlink(missing_ok=True)
                    if created and not any(out.iterdir()):
                        out.rmdir()
                    raise
    if not quiet:
        click.echo(f"wrote {out}", err=True)
