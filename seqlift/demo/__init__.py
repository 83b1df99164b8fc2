"""A bundled demo: a synthetic genome with planted motifs and a model trained on them.

``scripts/make_demo.py`` generates every file here from a seed:

- ``genome.fa`` (+ ``.fai``): two chromosomes, ``chr1`` and ``chr2``, with
  soft-masked stretches and one N run;
- ``regions.bed``: 200 narrowPeak regions of 200 bp, each holding GATA motifs,
  TAL1 motifs, both or neither (the class ends the region name); a few have an
  off-centre summit;
- ``motif_sites.bed``: every planted motif instance (BED6, 0-based half-open),
  the ground truth for evaluation;
- ``model.safetensors`` and ``model.pt2``: the weights of
  :class:`seqlift.demo.model.DemoCNN` and the same model as a ``torch.export``
  program (task 0 = contains GATA, 1 = contains TAL1, 2 = contains both);
- ``bilstm.*`` and ``attention.*``: the same tasks learnt by
  :class:`~seqlift.demo.model.DemoBiLSTM` (convolution + bidirectional LSTM) and
  :class:`~seqlift.demo.model.DemoAttention` (convolution + transformer encoder
  layer), to compare attribution methods on recurrent and attention networks.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def demo_paths():
    """Return the absolute paths of the demo files.

    Returns
    -------
    dict
        ``fasta``, ``regions``, ``sites``, ``model_pt2``, ``weights``, ``bilstm_pt2``,
        ``attention_pt2`` and ``config``
        (``configs/demo.yaml`` of the source tree, whose paths are relative to its
        root), each an absolute path as a str.
    """
    return {
        "fasta": str(_HERE / "genome.fa"),
        "regions": str(_HERE / "regions.bed"),
        "sites": str(_HERE / "motif_sites.bed"),
        "model_pt2": str(_HERE / "model.pt2"),
        "weights": str(_HERE / "model.safetensors"),
        "bilstm_pt2": str(_HERE / "bilstm.pt2"),
        "attention_pt2": str(_HERE / "attention.pt2"),
        "config": str(_HERE.parents[1] / "configs" / "demo.yaml"),
    }
