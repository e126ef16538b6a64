"""Profile tables built in Arrow: metadata columns, then one float64 column per feature.

The profiles and correct stages both write tables of thousands of feature
columns; building them through pandas takes seconds per table, handing each
column of a Fortran-ordered matrix to Arrow takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def profile_table(metadata: pa.Table, features: Sequence[str], values: np.ndarray) -> pa.Table:
    """``metadata``'s columns, then ``values`` (rows × ``features``) as float64 columns."""
    by_column = np.asfortranarray(values, dtype=np.float64)
    columns = [pa.array(by_column[:, position]) for position in range(len(features))]
    return pa.Table.from_arrays([*metadata.columns, *columns], names=[*metadata.column_names, *features])
