"""Whether the demo poses the problem real plates pose: after per-plate normalization
against DMSO, treated wells still group by batch, and they group by MoA.

A demo whose batch effects normalization removes entirely leaves batch
correction nothing to do; one whose biology drowns in them leaves it nothing
to keep. Both are measured as cosine silhouettes among the treated wells,
on the CellProfiler well profiles (medians of the demo's single-cell
backends) and, optionally, on DINO embeddings from the untrained ViT.
Everything is read from the written gallery (backends, platemaps, images),
as the workflow would read it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from pycytominer import normalize
from sklearn.metrics import silhouette_score

from workflow_scripts.demo.build import backend_key, image_key, platemaps_key, sites_of
from workflow_scripts.demo.design import DemoLayout, DemoPlate
from workflow_scripts.demo.single_cells import COMPARTMENTS, feature_names

NEGCON_QUERY = "Metadata_control_type == 'negcon'"
GROUPINGS = {"batch": "Metadata_Batch", "moa": "Metadata_moa"}


def _plate_metadata(layout: DemoLayout, plate: DemoPlate, gallery: Path) -> pd.DataFrame:
    """The plate's wells annotated from the gallery's platemap files, as ``Metadata_`` columns."""
    folder = gallery / platemaps_key(layout, plate)
    barcodes = pd.read_csv(folder / "barcode_platemap.csv", dtype=str)
    name = barcodes.set_index("Assay_Plate_Barcode").loc[plate.plate, "Plate_Map_Name"]
    platemap = pd.read_csv(folder / "platemap" / f"{name}.txt", sep="\t", dtype=str, keep_default_na=False)
    platemap = platemap.rename(columns={"well_position": "Well"}).drop(columns="plate_map_name")
    meta = platemap.add_prefix("Metadata_")
    meta.insert(0, "Metadata_Plate", plate.plate)
    meta.insert(0, "Metadata_Batch", plate.batch)
    return meta


def cellprofiler_wells(layout: DemoLayout, plate: DemoPlate, gallery: Path) -> pd.DataFrame:
    """Median per well of every single-cell feature of the plate's backend, compartments side
    by side, and the well's cell count (``Metadata_Object_Count``)."""
    with sqlite3.connect(gallery / backend_key(layout, plate)) as con:
        wells = pd.read_sql("SELECT ImageNumber, Metadata_Well FROM Image", con)
        medians = []
        for compartment in COMPARTMENTS:
            names = feature_names(compartment)
            columns = ", ".join(f'"{n}"' for n in ["ImageNumber", *names])
            objects = pd.read_sql(f"SELECT {columns} FROM {compartment}", con).merge(wells, on="ImageNumber")
            per_well = objects.groupby("Metadata_Well")
            medians.append(per_well[names].median())
    counts = per_well.size().rename("Metadata_Object_Count")  # every compartment has one object per cell
    return pd.concat([counts, *medians], axis=1).rename_axis("Metadata_Well").reset_index()


def _stacked_sites(
    layout: DemoLayout, plate: DemoPlate, gallery: Path, channels: tuple[str, ...]
) -> Iterator[tuple[str, np.ndarray]]:
    """(well, (C, Y, X) uint16 pixels in ``channels`` order) of every site of the plate."""
    for well, site in sites_of(layout, plate):
        yield well, np.stack([tifffile.imread(gallery / image_key(layout, plate, well, site, ch)) for ch in channels])


def dino_wells(layout: DemoLayout, plate: DemoPlate, gallery: Path) -> pd.DataFrame:
    """The embedding stage's recipe on the stored pixels, with the untrained ViT-S/16:
    the mean CLS token over every kept crop of a well's sites."""
    import torch

    from workflow_scripts.dino.preprocess import DEFAULT_CHANNELS, Recipe, default_statistics, prepare_fields
    from workflow_scripts.dino.vit import build_vit

    recipe = Recipe(DEFAULT_CHANNELS, *default_statistics(DEFAULT_CHANNELS), "dataset", "mean")
    model = build_vit("vit_small", in_chans=len(DEFAULT_CHANNELS)).eval()
    crops: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for well, pixels in _stacked_sites(layout, plate, gallery, DEFAULT_CHANNELS):
            prepared = prepare_fields(torch.from_numpy(pixels.astype(np.int32))[None], recipe)
            crops.setdefault(well, []).append(model(prepared.crops))
    embeddings = {well: torch.cat(found).mean(dim=0).numpy() for well, found in crops.items()}
    table = pd.DataFrame.from_dict(embeddings, orient="index")
    table.columns = [f"dino_{i:03d}" for i in table.columns]
    return table.rename_axis("Metadata_Well").reset_index()


FEATURE_SETS = {"cellprofiler": cellprofiler_wells, "dino": dino_wells}


def well_profiles(layout: DemoLayout, gallery: Path, features: str) -> pd.DataFrame:
    """Annotated well profiles of every plate in one feature set (``cellprofiler`` or ``dino``)."""
    plates = []
    for plate in layout.plates:
        measured = FEATURE_SETS[features](layout, plate, gallery)
        plates.append(_plate_metadata(layout, plate, gallery).merge(measured, on="Metadata_Well", validate="1:1"))
    return pd.concat(plates, ignore_index=True)


def feature_columns(profiles: pd.DataFrame) -> list[str]:
    """Every column that is not ``Metadata_``: the pycytominer convention."""
    return [c for c in profiles.columns if not c.startswith("Metadata_")]


def normalize_per_plate(profiles: pd.DataFrame) -> pd.DataFrame:
    """Each plate's features robust-z-scored against its DMSO wells (median, MAD), as the workflow does."""
    features, meta = feature_columns(profiles), [c for c in profiles.columns if c.startswith("Metadata_")]
    plates = [
        normalize(plate, features=features, meta_features=meta, samples=NEGCON_QUERY, method="mad_robustize")
        for _, plate in profiles.groupby("Metadata_Plate", sort=False)
    ]
    return pd.concat(plates, ignore_index=True)


def standardize_globally(profiles: pd.DataFrame) -> pd.DataFrame:
    """One shift and scale per feature for all plates together: the 'before' state, where
    only the features' units are removed, not any plate's or batch's offsets."""
    features = feature_columns(profiles)
    values = profiles[features]
    out = profiles.copy()
    out[features] = (values - values.mean()) / values.std(ddof=0).replace(0, 1)
    return out


def control_spread(profiles: pd.DataFrame) -> pd.DataFrame:
    """Per plate and feature, the median absolute deviation over the DMSO wells."""
    controls = profiles.query(NEGCON_QUERY)
    features = feature_columns(profiles)
    return controls.groupby("Metadata_Plate")[features].agg(lambda x: float(np.median(np.abs(x - np.median(x)))))


def silhouettes(profiles: pd.DataFrame) -> dict[str, float]:
    """Cosine silhouettes of the treated wells by batch and by MoA.

    Features that are not finite in every treated well (a zero control
    spread) are left out, as feature selection would drop them.
    """
    treated = profiles[profiles["Metadata_pert_type"] == "trt"]
    values = treated[feature_columns(treated)]
    values = values.loc[:, np.isfinite(values).all()].to_numpy()
    return {name: float(silhouette_score(values, treated[column], metric="cosine")) for name, column in GROUPINGS.items()}


def separation_table(layout: DemoLayout, gallery: Path, feature_sets: tuple[str, ...]) -> pd.DataFrame:
    """Silhouettes by batch and MoA per feature set, before and after per-plate normalization."""
    rows = []
    for features in feature_sets:
        profiles = well_profiles(layout, gallery, features)
        for state, transform in (("before", standardize_globally), ("after", normalize_per_plate)):
            scores = silhouettes(transform(profiles))
            treated = int((profiles["Metadata_pert_type"] == "trt").sum())
            rows.append({"features": features, "normalization": state, "treated_wells": treated,
                         **{f"silhouette_{k}": v for k, v in scores.items()}})
    return pd.DataFrame(rows)
