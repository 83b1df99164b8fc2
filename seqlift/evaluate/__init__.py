"""Evaluating contribution scores: faithfulness by perturbation, and recovery of known motif sites.

Perturbation (:func:`perturbation`, :mod:`seqlift.evaluate.perturb`)
    Mutate each region's top-k scored bases and, as a control, k random ones;
    faithful scores lower the model's target far more with their top positions
    than at random. ``seqlift evaluate perturb`` runs :func:`evaluate_perturbation`.

Motif sites (:func:`site_recovery`, :mod:`seqlift.evaluate.sites`)
    With known sites (a BED of planted or annotated motif instances), AUROC and
    AUPRC of the per-base contributions, positions inside a site against every
    other scored position. ``seqlift evaluate sites`` runs :func:`evaluate_sites`.

Metrics (:mod:`seqlift.evaluate.metrics`)
    :func:`auroc` and :func:`auprc` in numpy alone.

Tables (:mod:`seqlift.evaluate.tables`)
    What both evaluations share: :func:`open_scores` (a scores file with the
    datasets they read) and :func:`write_table` (the TSV they write).

Coordinates are 0-based half-open throughout. The names below are re-exported
here; each module is named after its subcommand (``evaluate perturb``,
``evaluate sites``), so no module shares a name with a function.
"""

from .metrics import auprc, auroc
from .perturb import (
    FLIP_NOTE,
    MUTATIONS,
    PERTURB_COLUMNS,
    evaluate_perturbation,
    parse_ks,
    perturbation,
    plot_perturbation,
)
from .sites import SITE_COLUMNS, evaluate_sites, read_sites, site_labels, site_recovery
from .tables import open_scores, write_table

__all__ = [
    "FLIP_NOTE",
    "MUTATIONS",
    "PERTURB_COLUMNS",
    "SITE_COLUMNS",
    "auprc",
    "auroc",
    "evaluate_perturbation",
    "evaluate_sites",
    "open_scores",
    "parse_ks",
    "perturbation",
    "plot_perturbation",
    "read_sites",
    "site_labels",
    "site_recovery",
    "write_table",
]
