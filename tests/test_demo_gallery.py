"""The demo gallery poses the problem real plates pose: replicate variability, controls
with a spread, batch effects that survive per-plate normalization, recoverable biology,
and platemaps in the JUMP-Target convention."""

from __future__ import annotations

import hashlib
import json
from statistics import mean

import pandas as pd
import pytest

from workflow_scripts.demo.build import image_key, platemaps_key, site_seed, sites_of
from workflow_scripts.demo.design import (
    BATCHES,
    NEGATIVE_CONTROL,
    compounds,
    default_layout,
    edge_distance,
    well_condition,
)
from workflow_scripts.demo.separation import (
    NEGCON_QUERY,
    control_spread,
    normalize_per_plate,
    silhouettes,
    well_profiles,
)

#: The acceptance threshold: a cosine silhouette this high is a visible grouping.
MIN_SILHOUETTE = 0.1


@pytest.fixture(scope="module")
def cellprofiler_profiles(demo_gallery) -> pd.DataFrame:
    """Well medians of the small gallery's single-cell backends, annotated from its platemaps."""
    layout, root = demo_gallery
    return well_profiles(layout, root / "gallery", "cellprofiler")


def test_site_seeds_differ_for_every_site_of_the_default_layout():
    layout = default_layout()
    seeds = [site_seed(p, well, site) for p in layout.plates for well, site in sites_of(layout, p)]
    assert len(set(seeds)) == len(seeds)


def test_every_site_has_its_own_pixels(demo_gallery):
    layout, root = demo_gallery
    digests = [
        hashlib.sha256((root / "gallery" / image_key(layout, p, well, site, "DNA")).read_bytes()).hexdigest()
        for p in layout.plates
        for well, site in sites_of(layout, p)
    ]
    assert len(set(digests)) == len(digests) == len(layout.plates) * len(layout.wells) * layout.sites


def test_cell_counts_vary_between_replicate_wells(cellprofiler_profiles):
    counts = cellprofiler_profiles.query(NEGCON_QUERY).groupby("Metadata_Plate")["Metadata_Object_Count"]
    assert (counts.std() / counts.mean() > 0.05).all(), counts.describe()


def test_dmso_wells_spread_in_every_cellprofiler_feature(cellprofiler_profiles):
    spread = control_spread(cellprofiler_profiles)
    flat = spread.columns[(spread == 0).any()]
    assert list(flat) == [], f"features with no spread over a plate's DMSO wells: {list(flat)}"


def test_treated_wells_group_by_batch_and_by_moa_after_normalization(cellprofiler_profiles):
    scores = silhouettes(normalize_per_plate(cellprofiler_profiles))
    assert scores["batch"] >= MIN_SILHOUETTE, f"batch effects did not survive normalization: {scores}"
    assert scores["moa"] >= MIN_SILHOUETTE, f"the MoAs are not recoverable: {scores}"


def test_platemap_follows_the_jump_target_convention(demo_gallery):
    layout, root = demo_gallery
    for plate in layout.plates:
        folder = root / "gallery" / platemaps_key(layout, plate)
        barcodes = pd.read_csv(folder / "barcode_platemap.csv", dtype=str)
        assert list(barcodes.columns) == ["Assay_Plate_Barcode", "Plate_Map_Name"]
        name = barcodes.set_index("Assay_Plate_Barcode").loc[plate.plate, "Plate_Map_Name"]
        platemap = pd.read_csv(folder / "platemap" / f"{name}.txt", sep="\t", dtype=str, keep_default_na=False)
        assert {"well_position", "broad_sample", "pert_type", "control_type", "moa", "target"} <= set(platemap)
        assert sorted(platemap["well_position"]) == sorted(layout.wells)
        roles = platemap.groupby(["pert_type", "control_type"])["pert_iname"].agg(set).to_dict()
        assert set(roles) == {("trt", ""), ("control", "negcon"), ("control", "poscon_cp")}
        assert roles[("control", "negcon")] == {NEGATIVE_CONTROL}
        dmso = platemap[platemap["control_type"] == "negcon"]
        assert (dmso["broad_sample"] == "").all(), "JUMP-Target lists DMSO without a broad_sample"
        others = platemap[platemap["control_type"] != "negcon"]
        assert others["broad_sample"].str.fullmatch(r"BRD-K\d{8}-\d{3}-\d{2}-\d").all()
        assert (others["moa"] != "").all() and (others["target"] != "").all()


def test_platemap_roles_are_those_jump_target_uses(shared_fixtures, demo_gallery):
    layout, root = demo_gallery
    real = pd.read_csv(
        shared_fixtures / "jump-labels" / "JUMP-Target" / "JUMP-Target-1_compound_metadata.tsv", sep="\t", dtype=str
    )
    real_platemap = pd.read_csv(
        shared_fixtures / "jump-labels" / "JUMP-Target" / "JUMP-Target-1_compound_platemap.tsv", sep="\t", nrows=1
    )
    plate = layout.plates[0]
    folder = root / "gallery" / platemaps_key(layout, plate) / "platemap"
    ours = pd.read_csv(next(folder.glob("*.txt")), sep="\t", dtype=str, keep_default_na=False)
    assert set(real_platemap.columns) <= set(ours.columns)
    assert set(ours["pert_type"]) <= set(real["pert_type"])
    assert set(ours["control_type"]) - {""} <= set(real["control_type"].dropna())


def test_ground_truth_describes_every_effect(demo_gallery):
    layout, root = demo_gallery
    truth = root / "ground_truth"
    described = json.loads((truth / "effects.json").read_text())
    levels = {e["level"] for e in described}
    assert {"site", "well", "well position", "plate", "batch"} <= levels
    assert any(not e["removed_by_normalization"] for e in described if e["level"] == "batch")
    readme = (truth / "README.md").read_text()
    assert all(e["effect"] in readme for e in described)
    plates = pd.read_csv(truth / "plates.csv")
    assert {"gamma", "blur", "stress_response", "density", "gain_DNA"} <= set(plates.columns)
    conditions = pd.read_csv(truth / "well_conditions.csv", dtype={"Metadata_Plate": str})
    assert len(conditions) == len(layout.plates) * len(layout.wells)


def test_edge_wells_lose_cells_and_staining():
    plate = default_layout().plates[0]
    edge = [well_condition(plate, w) for w in ("A05", "P12", "H01", "H24")]
    inner = [well_condition(plate, w) for w in ("H05", "G12", "J10", "E20")]
    assert [edge_distance(w) for w in ("A05", "H01", "B02", "H12")] == [0, 0, 1, 7]
    assert mean(c.density for c in edge) < 0.9 * mean(c.density for c in inner)
    assert mean(c.stain for c in edge) < mean(c.stain for c in inner)


def test_stress_responses_act_on_compounds_by_potency_and_never_on_dmso():
    dmso, full, analog = compounds()[:3]
    for batch in BATCHES.values():
        assert dmso.phenotype(batch.response) == dmso.phenotype()
    cytotoxic = BATCHES["2025_03_03_Batch3"].response
    loss = [1 - c.phenotype(cytotoxic).cell_scale / c.phenotype().cell_scale for c in (full, analog)]
    assert loss[0] > loss[1] > 0
    assert len({b.response for b in BATCHES.values()}) == len(BATCHES), "each batch responds its own way"
