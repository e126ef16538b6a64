"""A local platemap folder, laid out as the gallery's ``workspace/metadata/platemaps``.

The profiles stage fetches each plate's platemap itself (``annotation.platemaps``
names a local folder in place of the gallery); tests write one with this.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def write_platemap_folder(folder: Path, batch: str, plate: str, wells: pd.DataFrame) -> Path:
    """``folder/{batch}/barcode_platemap.csv`` naming ``{plate}_map``, and that platemap from ``wells``.

    ``wells`` is a platemap as the fetch stage writes it (``Metadata_Well`` and
    annotation columns); it is written back as the gallery's text file.
    """
    name = f"{plate}_map"
    (folder / batch / "platemap").mkdir(parents=True, exist_ok=True)
    barcodes = folder / batch / "barcode_platemap.csv"
    rows = pd.read_csv(barcodes, dtype=str) if barcodes.is_file() else pd.DataFrame()
    row = pd.DataFrame({"Assay_Plate_Barcode": [plate], "Plate_Map_Name": [name]})
    pd.concat([rows, row], ignore_index=True).drop_duplicates().to_csv(barcodes, index=False)
    text = wells.rename(columns={"Metadata_Well": "well_position"})
    text.to_csv(folder / batch / "platemap" / f"{name}.txt", sep="\t", index=False)
    return folder
