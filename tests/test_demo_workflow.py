"""All per-plate stages end to end on the small demo gallery, with real Snakemake."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.support.workflow import plate_dir, run_snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished(demo_gallery, s3_server, tmp_path_factory):
    layout, root = demo_gallery
    results = tmp_path_factory.mktemp("all")
    run_snakemake(results, root / "plates.csv", s3_server.endpoint_url)
    return layout, root, results


def _folders(layout, results):
    for plate in layout.plates:
        yield plate, plate_dir(results, layout.dataset, plate.source, plate.batch, plate.plate)


def test_every_plate_has_every_stage_output(finished):
    layout, _, results = finished
    for plate, folder in _folders(layout, results):
        assert (folder / f"{plate.plate}.ome.zarr" / "zarr.json").exists()
        qc = pd.read_parquet(folder / "qc" / "fields.parquet")
        assert len(qc) == len(layout.wells) * layout.sites
        for metric in ("focus", "nuclei", "intensity", "saturation", "flagged"):
            assert (folder / "qc" / f"heatmap_{metric}.png").stat().st_size > 0


def test_dino_wells_follow_the_profile_convention(finished):
    layout, _, results = finished
    for plate, folder in _folders(layout, results):
        wells = pd.read_parquet(folder / "dino" / "wells.parquet")
        assert sorted(wells["Metadata_Well"]) == sorted(layout.wells)
        assert (wells["Metadata_Plate"] == plate.plate).all() and (wells["Metadata_Batch"] == plate.batch).all()
        features = [c for c in wells.columns if not c.startswith("Metadata_")]
        assert features == [f"dino_{i:03d}" for i in range(384)]
        assert wells[features].notna().all().all()
        assert b"random weights" in pq.read_schema(folder / "dino" / "wells.parquet").metadata[b"dino"]


def test_cellprofiler_wells_reflect_the_demo_backend(finished):
    layout, _, results = finished
    for plate, folder in _folders(layout, results):
        wells = pd.read_parquet(folder / "cellprofiler" / "wells.parquet")
        assert sorted(wells["Metadata_Well"]) == sorted(layout.wells)
        assert (wells["Metadata_Object_Count"] > 0).all()
        features = [c for c in wells.columns if not c.startswith("Metadata_")]
        assert {c.split("_")[0] for c in features} == {"Cells", "Cytoplasm", "Nuclei"}


def test_cross_plate_outputs_follow_the_design(finished):
    """Every feature set's collection: profiles, selection without NaN, one corrected table per method."""
    layout, root, results = finished
    methods = ["none", "sphering", "harmony", "combat", "control_std", "sphering+harmony"]
    for features in ("dino", "cellprofiler"):
        folder = results / "collection" / features
        collected = pd.read_parquet(folder / "profiles.parquet")
        assert set(collected["Metadata_Plate"]) == {plate.plate for plate in layout.plates}
        assert set(collected["Metadata_PertType"]) == {"trt", "negcon", "poscon"}
        selected = pd.read_parquet(folder / "selected.parquet")
        assert not selected.filter(regex="^(?!Metadata_)").isna().any().any()
        for method in methods:
            corrected = pd.read_parquet(folder / "corrected" / f"{method}.parquet")
            assert len(corrected) == len(selected), (features, method)
            assert (folder / "models" / f"{method}.npz").is_file() and (folder / "models" / f"{method}.json").is_file()
        harmony = pd.read_parquet(folder / "corrected" / "harmony.parquet")
        assert any(c.startswith("harmony_") for c in harmony.columns)
