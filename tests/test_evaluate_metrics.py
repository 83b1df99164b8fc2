"""AUROC and AUPRC of :mod:`seqlift.evaluate.metrics`: against scikit-learn, and by hand."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from seqlift.evaluate.metrics import auprc, auroc


@pytest.mark.parametrize("seed", range(5))
def test_auroc_auprc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    y = rng.random(n) < rng.uniform(0.05, 0.5)
    y[:2] = [True, False]
    s = rng.normal(size=n) + y * rng.uniform(0, 2)
    if seed % 2:
        s = np.round(s, 1)  # many ties
    assert abs(auroc(y, s) - roc_auc_score(y, s)) < 1e-10
    assert abs(auprc(y, s) - average_precision_score(y, s)) < 1e-10


def test_metrics_by_hand():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auroc([0, 1], [1.0, 1.0]) == 0.5
    assert auprc([1, 0, 1], [3.0, 2.0, 1.0]) == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    with pytest.raises(ValueError, match="one class only"):
        auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"labels of shape \(2,\) and scores of shape \(3,\) differ"):
        auprc([1, 0], [0.1, 0.2, 0.3])
