"""Write the demo gallery to disk in the Cell Painting Gallery layout.

Files land under ``{root}/gallery/`` exactly as they would sit in the
bucket, so uploading the tree gives a gallery the workflow cannot tell from
the real one; the ground truth and the plate table go beside it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from workflow_scripts.demo.design import (
    CV8000_PIXEL_SIZE_M,
    NEGATIVE_CONTROL,
    PHENIX_PIXEL_SIZE_M,
    Compound,
    DemoLayout,
    DemoPlate,
    edge_distance,
    effects,
    phenotype_effects,
    stable_seed,
    well_cells,
)
from workflow_scripts.demo.single_cells import write_backend
from workflow_scripts.demo.synth import illumination_function, render_site

log = logging.getLogger("workflow_scripts.demo")

BUCKET = "cellpainting-gallery"
PHENIX_CHANNELS = {"Mito": 1, "AGP": 2, "RNA": 3, "ER": 4, "DNA": 5}
CV8000_CHANNELS = {"DNA": 1, "ER": 2, "RNA": 3, "AGP": 4, "Mito": 5}
COMPLETE = ".complete"
# Bumped whenever what the builder writes changes, so older galleries are rebuilt.
FORMAT_VERSION = 3


def _row_col(well: str) -> tuple[int, int]:
    return ord(well[0]) - ord("A") + 1, int(well[1:])


def image_key(layout: DemoLayout, plate: DemoPlate, well: str, site: int, channel: str) -> str:
    """The object key of one image, in the naming scheme of the plate's microscope."""
    images = f"{layout.dataset}/{plate.source}/images/{plate.batch}/images"
    row, col = _row_col(well)
    field = site - plate.first_site + 1
    if plate.microscope == "phenix":
        number = PHENIX_CHANNELS[channel]
        folder = f"{plate.plate}__2025-01-01T00_00_00-Measurement1/Images"
        return f"{images}/{folder}/r{row:02d}c{col:02d}f{field:02d}p01-ch{number}sk1fk1fl1.tiff"
    number = CV8000_CHANNELS[channel]
    return f"{images}/{plate.plate}/{plate.plate}_{well}_T0001F{field:03d}L01A{number:02d}Z01C{number:02d}.tif"


def illum_key(layout: DemoLayout, plate: DemoPlate, channel: str) -> str:
    return f"{layout.dataset}/{plate.source}/images/{plate.batch}/illum/{plate.plate}/{plate.plate}_Illum{channel}.npy"


def backend_key(layout: DemoLayout, plate: DemoPlate) -> str:
    """The plate's single-cell SQLite backend, where the gallery keeps it."""
    return f"{layout.dataset}/{plate.source}/workspace/backend/{plate.batch}/{plate.plate}/{plate.plate}.sqlite"


def platemaps_key(layout: DemoLayout, plate: DemoPlate) -> str:
    """The folder of the plate's batch's platemap files, where the gallery keeps them."""
    return f"{layout.dataset}/{plate.source}/workspace/metadata/platemaps/{plate.batch}"


def _stored_sites(layout: DemoLayout, plate: DemoPlate, gallery: Path) -> Iterator[tuple[dict, dict]]:
    """Each site's metadata and images as written, for measuring single cells."""
    for well, site in sites_of(layout, plate):
        metadata = {"Metadata_Plate": plate.plate, "Metadata_Well": well, "Metadata_Site": str(site)}
        images = {ch: tifffile.imread(gallery / image_key(layout, plate, well, site, ch)) for ch in PHENIX_CHANNELS}
        yield metadata, images


def site_seed(plate: DemoPlate, well: str, site: int) -> int:
    """A stable seed per site, so the gallery is the same on every machine and every site has its own cells."""
    return stable_seed(plate.plate, well, site)


def sites_of(layout: DemoLayout, plate: DemoPlate) -> Iterator[tuple[str, int]]:
    for well in layout.wells:
        for site in range(plate.first_site, plate.first_site + layout.sites):
            yield well, site


def load_data_rows(layout: DemoLayout, plate: DemoPlate) -> list[dict[str, str]]:
    """LoadData rows in the gallery's ``URL_`` schema, one per site."""
    pixel = PHENIX_PIXEL_SIZE_M if plate.microscope == "phenix" else CV8000_PIXEL_SIZE_M
    rows = []
    for well, site in sites_of(layout, plate):
        row = {f"URL_Orig{ch}": f"s3://{BUCKET}/{image_key(layout, plate, well, site, ch)}" for ch in PHENIX_CHANNELS}
        if plate.illum:
            row |= {f"URL_Illum{ch}": f"s3://{BUCKET}/{illum_key(layout, plate, ch)}" for ch in PHENIX_CHANNELS}
        row_number, col_number = _row_col(well)
        row |= {
            "Metadata_Source": plate.source,
            "Metadata_Batch": plate.batch,
            "Metadata_Plate": plate.plate,
            "Metadata_Well": well,
            "Metadata_Site": str(site),
            "Metadata_Row": str(row_number),
            "Metadata_Col": str(col_number),
            "Metadata_ImageResolutionX": repr(pixel),
            "Metadata_ImageResolutionY": repr(pixel),
            "Metadata_ImageSizeX": str(layout.size),
            "Metadata_ImageSizeY": str(layout.size),
        }
        rows.append(row)
    return rows


def _write_csv(rows: list[dict[str, str]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_plate(layout: DemoLayout, plate: DemoPlate, gallery: Path, workers: int = 2) -> None:
    """Images, illumination functions, LoadData, platemap and single-cell backend of one plate."""
    def render(task: tuple[str, int]) -> None:
        well, site = task
        phenotype, stain = well_cells(plate, well, layout.wells[well])
        channels = render_site(site_seed(plate, well, site), phenotype, plate.effect, layout.size, stain)
        for channel, pixels in channels.items():
            path = gallery / image_key(layout, plate, well, site, channel)
            path.parent.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(path, pixels)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(render, sites_of(layout, plate)))
    illum = None
    if plate.illum:
        function = illumination_function(plate.effect, layout.size)
        illum = {channel: function for channel in PHENIX_CHANNELS}
        for channel in PHENIX_CHANNELS:
            path = gallery / illum_key(layout, plate, channel)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, function)
    write_backend(gallery / backend_key(layout, plate), _stored_sites(layout, plate, gallery), illum)
    folder = gallery / layout.dataset / plate.source / "workspace" / "load_data_csv" / plate.batch / plate.plate
    rows = load_data_rows(layout, plate)
    _write_csv(rows, folder / ("load_data_with_illum.csv" if plate.illum else "load_data.csv"))
    _write_platemap(layout, plate, gallery)


def platemap(layout: DemoLayout, name: str) -> pd.DataFrame:
    """The platemap in the JUMP-Target convention: JUMP's platemap columns joined with
    its compound metadata (``pert_type`` trt/control, ``control_type`` negcon/poscon_cp,
    empty for treatments; DMSO has no ``broad_sample``)."""
    return pd.DataFrame(
        [
            {"plate_map_name": name, "well_position": well, "broad_sample": c.broad_sample, "solvent": NEGATIVE_CONTROL,
             "pert_iname": c.name, "pert_type": c.pert_type, "control_type": c.control,
             "moa": "" if c.control == "negcon" else c.moa, "target": c.target}
            for well, c in layout.wells.items()
        ]
    )


def _write_platemap(layout: DemoLayout, plate: DemoPlate, gallery: Path) -> None:
    """The gallery's platemap files: barcode → platemap name → well contents."""
    folder = gallery / platemaps_key(layout, plate)
    name = f"{layout.dataset}-platemap"
    barcode = folder / "barcode_platemap.csv"
    existing = pd.read_csv(barcode, dtype=str) if barcode.exists() else pd.DataFrame()
    rows = pd.concat([existing, pd.DataFrame([{"Assay_Plate_Barcode": plate.plate, "Plate_Map_Name": name}])])
    folder.mkdir(parents=True, exist_ok=True)
    rows.drop_duplicates().to_csv(barcode, index=False)
    (folder / "platemap").mkdir(exist_ok=True)
    platemap(layout, name).to_csv(folder / "platemap" / f"{name}.txt", sep="\t", index=False)


def _plate_truth(plate: DemoPlate) -> dict[str, object]:
    """One plate's technical effects, one column per number."""
    effect = plate.effect
    return {
        "Metadata_Source": plate.source, "Metadata_Batch": plate.batch, "Metadata_Plate": plate.plate,
        "microscope": plate.microscope, "stress_response": plate.response.name,
        **{f"response_{k}": v for k, v in phenotype_effects(plate.response).items()},
        "density": plate.density,
        **{f"gain_{ch}": effect.gain_for(ch) for ch in PHENIX_CHANNELS},
        **{f"offset_{ch}": effect.offset_for(ch) for ch in PHENIX_CHANNELS},
        "vignetting": effect.vignetting, "gamma": effect.gamma, "blur": effect.blur,
    }


def _well_truth(plate: DemoPlate, well: str, compound: Compound) -> dict[str, object]:
    """What one well of one plate was rendered with: position, seeding, staining, phenotype."""
    phenotype, stain = well_cells(plate, well, compound)
    return {"Metadata_Plate": plate.plate, "Metadata_Well": well, "Metadata_Perturbation": compound.name,
            "edge_distance": edge_distance(well), "stain": stain,
            **{f"effect_{k}": v for k, v in phenotype_effects(phenotype).items()}}


def _effects_readme(described: list[dict[str, object]]) -> str:
    """``effects.json`` in words, for a person opening the folder."""
    lines = [
        "# Ground truth of the demo gallery", "",
        "- `wells.csv`: what each well position holds (perturbation, MoA, potency, control type, MoA phenotype).",
        "- `plates.csv`: each plate's batch and technical effects (gain and offset per channel, vignetting,",
        "  gamma, blur, the batch's stress response to compounds, seeding density).",
        "- `well_conditions.csv`: per plate and well, the distance to the plate edge, the staining factor and",
        "  the phenotype the cells were rendered with (batch stress response and seeding included).",
        "- `effects.json`: the technical effects below, machine-readable.", "",
        "`python -m workflow_scripts.demo separation` measures what survives per-plate normalization:",
        "the cosine silhouettes of the treated wells by batch and by MoA.", "",
        "| effect | level | removed by per-plate normalization | size |", "|---|---|---|---|",
    ]
    lines += [f"| {e['effect']} | {e['level']} | {'yes' if e['removed_by_normalization'] else 'no'} | {e['size']} |"
              for e in described]
    return "\n".join(lines) + "\n"


def write_ground_truth(layout: DemoLayout, root: Path) -> None:
    """The truth later stages are scored against, its description, and the plate table."""
    truth = root / "ground_truth"
    truth.mkdir(parents=True, exist_ok=True)
    wells = [
        {"Metadata_Well": well, "Metadata_Perturbation": c.name, "Metadata_MoA": c.moa, "potency": c.potency,
         "control_type": c.control,
         **{f"effect_{k}": v for k, v in phenotype_effects(c.phenotype()).items()}}
        for well, c in layout.wells.items()
    ]
    pd.DataFrame(wells).to_csv(truth / "wells.csv", index=False)
    pd.DataFrame([_plate_truth(p) for p in layout.plates]).to_csv(truth / "plates.csv", index=False)
    conditions = [_well_truth(p, well, c) for p in layout.plates for well, c in layout.wells.items()]
    pd.DataFrame(conditions).to_csv(truth / "well_conditions.csv", index=False)
    described = effects(layout)
    (truth / "effects.json").write_text(json.dumps(described, indent=1) + "\n")
    (truth / "README.md").write_text(_effects_readme(described))
    table = pd.DataFrame(
        [{"Metadata_Source": p.source, "Metadata_Batch": p.batch, "Metadata_Plate": p.plate,
          "Metadata_PlateType": "COMPOUND"} for p in layout.plates]
    )
    table.to_csv(root / "plates.csv", index=False)


def build_gallery(layout: DemoLayout, root: Path, workers: int = 2) -> Path:
    """Write the whole demo under ``root`` unless a complete one is already there.

    Returns the gallery folder (the bucket's contents). A marker written last,
    holding a fingerprint of the layout, tells a complete gallery of this
    layout from one a killed run (or another layout) left behind.
    """
    root = Path(root)
    gallery = root / "gallery"
    fingerprint = hashlib.sha256(f"{FORMAT_VERSION}:{layout!r}".encode()).hexdigest()
    marker = root / COMPLETE
    if marker.exists() and marker.read_text().strip() == fingerprint:
        return gallery
    marker.unlink(missing_ok=True)
    shutil.rmtree(gallery, ignore_errors=True)
    for plate in layout.plates:
        log.info("demo: writing plate %s (%s)", plate.plate, plate.microscope)
        write_plate(layout, plate, gallery, workers)
    write_ground_truth(layout, root)
    marker.write_text(fingerprint + "\n")
    return gallery
