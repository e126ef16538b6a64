"""Harmony on a PCA of the profiles, as JUMP's profiling recipe runs it.

The profiles are projected on their first principal components
(``correction.harmony.n_components``, capped by the data), and harmonypy (≥ 2,
C++ backend) corrects those PCs; the corrected PCs are the output features
``harmony_000`` …. harmonypy 2 passes batches to its backend as one index
per row (no dense cells x batches matrix) and gives the same result for any
number of threads; with the seed fixed the step is deterministic.

Harmony has no out-of-sample transform (its correction is fitted jointly
with soft cluster assignments of the rows it saw), so it cannot be locked;
the PCA and the cluster centroids are saved for lineage only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workflow_scripts.correct.batched import Params
from workflow_scripts.correct.groups import Group


def feature_names(n_components: int) -> list[str]:
    """The output features: one per corrected principal component."""
    return [f"harmony_{position:03d}" for position in range(n_components)]


def principal_components(values: np.ndarray, n_components: int) -> tuple[np.ndarray, Params]:
    """The rows projected on their first ``n_components`` PCs, and the projection."""
    from sklearn.decomposition import PCA  # imported here: a second of start-up the other methods do not need

    pca = PCA(n_components=n_components, svd_solver="covariance_eigh")
    projected = pca.fit_transform(values)
    return projected, {"pca_mean": pca.mean_, "pca_components": pca.components_}


def correct(
    values: np.ndarray, group: Group, n_components: int, settings: dict, threads: int
) -> tuple[np.ndarray, Params]:
    """``group``'s rows as Harmony-corrected PCs, and the fitted PCA and centroids."""
    import harmonypy  # imported here, as PCA is

    projected, params = principal_components(values[group.index], n_components)
    options = settings["harmony"]
    result = harmonypy.run_harmony(
        projected,
        pd.DataFrame({"batch": group.batch[group.index]}),
        "batch",
        max_iter_harmony=options["max_iter"],
        random_state=options["seed"],
        ncores=threads,
        verbose=False,
    )
    return np.asarray(result.Z_corr), {**params, "centroids": np.asarray(result.Y)}
