"""Per-plate files laid out as a run's results folder, with the plate table listing them.

Cross-plate stages find every plate's file from the plate table, under the
results folder above their output's ``collection/``; tests put their files
there with this.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.paths import plate_dir

KEYS = ["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]


def lay_out_plates(results: Path, files: Sequence[Path], relative: str, dataset: str = "cpg-test") -> Path:
    """Link each file (a table with the plate keys) to ``relative`` in its plate's folder; the plate table's path.

    The table lists the plates in the order of ``files``; a second call
    replaces the links and the table.
    """
    rows = []
    for path in files:
        row = pd.read_parquet(path, columns=KEYS).iloc[0]
        link = plate_dir(results, {"Metadata_Dataset": dataset, **row}) / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(Path(path).resolve())
        rows.append(row)
    table = results / "plates.csv"
    pd.DataFrame(rows, columns=KEYS).to_csv(table, index=False)
    return table
