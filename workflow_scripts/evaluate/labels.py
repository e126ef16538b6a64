"""Which wells the KPIs read, and their labels as text: one definition for the batch and biology KPIs.

A treated well names what it holds (the replicate key is set) and is not a
negative control; controls are the anchors corrections normalise to, so
the KPIs of batch signal and of biology leave them out (retrieval uses them
as its reference).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERT_TYPE_KEY = "Metadata_PertType"
NEGCON = "negcon"


def text(meta: pd.DataFrame, column: str) -> np.ndarray | None:
    """``column`` as stripped text whatever its dtype (object, string, categorical), "" where missing;
    None where the table lacks it."""
    if column not in meta.columns:
        return None
    return meta[column].astype("string").fillna("").str.strip().to_numpy(dtype=object)


def treated(meta: pd.DataFrame, replicate_key: str) -> np.ndarray:
    """Per well: is it treated? None is, where the table has no replicate key column."""
    key = text(meta, replicate_key)
    if key is None:
        return np.zeros(len(meta), dtype=bool)
    pert_type = text(meta, PERT_TYPE_KEY)
    return (key != "") & (pert_type != NEGCON if pert_type is not None else True)
