"""pycytominer's ``correlation_threshold``, vectorized.

pycytominer decides each highly correlated pair in a Python ``apply`` over
the pairs: on one CellProfiler plate (3,400 features, 60 wells) that is a
minute, on a collection far more. The rule is kept exactly, so the same
features go:

1. the correlation matrix (numpy's ``corrcoef`` for Pearson without NaN or
   inf, else pandas' pairwise-complete ``DataFrame.corr``);
2. features ordered by the sum of their absolute correlations, ascending
   (pandas' sort, so ties fall the same way);
3. for every pair whose (signed) correlation exceeds the threshold, the
   member later in that order is excluded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workflow_scripts.errors import InputError


def correlation_threshold(profiles: pd.DataFrame, features: Sequence[str], threshold: float, method: str) -> list[str]:
    """The features pycytominer's ``correlation_threshold`` would exclude."""
    if not 0 <= threshold <= 1:
        raise InputError(f"selection: corr_threshold {threshold} is not between 0 and 1")
    data = profiles.loc[:, list(features)]
    values = data.to_numpy(np.float64)
    if method == "pearson" and np.isfinite(values).all():
        correlation = np.corrcoef(values.T)
    else:
        correlation = data.corr(method=method).to_numpy()
    order = pd.DataFrame(correlation).abs().sum().sort_values().index.to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    a, b = np.nonzero(np.tril(correlation > threshold, k=-1))
    excluded = np.where(rank[a] > rank[b], a, b)
    return [features[i] for i in sorted(set(excluded.tolist()))]
