"""Every stage end to end on the small demo gallery, with real Snakemake: per-plate outputs, the
collection, KPIs, the gate's choice, drift, the report in a real browser, and `snakemake --report`."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.support.browser import open_in_chromium
from tests.support.workflow import plate_dir, run_snakemake
from workflow_scripts.evaluate.kpi import CATALOGUE
from workflow_scripts.evaluate.retrieval import BiologyEvaluator
from workflow_scripts.settings import complete

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
            assert (folder / "qc" / "heatmaps" / f"heatmap_{metric}.png").stat().st_size > 0


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
    for features in ("dino", "cellprofiler"):
        folder = results / "collection" / features
        collected = pd.read_parquet(folder / "profiles.parquet")
        assert set(collected["Metadata_Plate"]) == {plate.plate for plate in layout.plates}
        assert set(collected["Metadata_PertType"]) == {"trt", "negcon", "poscon"}
        selected = pd.read_parquet(folder / "selected.parquet")
        assert not selected.filter(regex="^(?!Metadata_)").isna().any().any()
        for method in METHODS:
            corrected = pd.read_parquet(folder / "corrected" / f"{method}.parquet")
            assert len(corrected) == len(selected), (features, method)
            assert (folder / "models" / f"{method}.npz").is_file() and (folder / "models" / f"{method}.json").is_file()
        harmony = pd.read_parquet(folder / "corrected" / "harmony.parquet")
        assert any(c.startswith("harmony_") for c in harmony.columns)


METHODS = ["none", "sphering", "harmony", "combat", "control_std", "sphering+harmony"]
KPI_COLUMNS = ["features", "method", "kpi", "value", "direction", "n_profiles", "note"]


def test_kpis_cover_every_method_and_kpi_without_silent_nan(finished):
    _, _, results = finished
    for features in ("dino", "cellprofiler"):
        kpis = pd.read_parquet(results / "collection" / features / "kpis.parquet")
        assert list(kpis.columns) == KPI_COLUMNS
        assert set(kpis["method"]) == set(METHODS) and (kpis["features"] == features).all()
        for method in METHODS:
            assert kpis.loc[kpis["method"] == method, "kpi"].tolist() == list(CATALOGUE), method
        assert (kpis["direction"] == kpis["kpi"].map(lambda k: CATALOGUE[k][1])).all()
        missing = kpis[kpis["value"].isna()]
        assert missing["note"].str.startswith("not computable: ").all(), missing
        assert (kpis.loc[kpis["value"].notna(), "n_profiles"] > 0).all()
        assert kpis["value"].notna().sum() >= 0.8 * len(kpis)  # the demo has MoAs, targets, 2 sources, 2 batches
        activity = pd.read_parquet(results / "collection" / features / "activity.parquet")
        assert set(activity["method"]) == set(METHODS) and set(activity["reference"]) == {"negcon", "nonrep"}
        assert activity["q_value"].between(0, 1).all()


def test_the_gate_chose_a_correction_and_says_why(finished):
    _, _, results = finished
    for features in ("dino", "cellprofiler"):
        choice = json.loads((results / "collection" / features / "selected_method.json").read_text())
        assert [m["method"] for m in choice["methods"]] == sorted(METHODS)
        assert choice["selected"] is None or choice["selected"] in METHODS
        assert choice["reason"] and all(m["reason"] for m in choice["methods"])
        assert choice["weights"] == {"batch": 0.4, "biology": 0.6}


def test_harmony_lowers_batch_separability_and_moa_retrieval_beats_shuffled_labels(finished):
    """The demo's planted batch effect: batches separate less after Harmony (silhouette, classifier). Its planted
    MoAs: the chosen correction's MoA retrieval beats the same profiles with MoAs dealt to perturbations at random."""
    _, _, results = finished
    folder = results / "collection" / "cellprofiler"
    kpis = pd.read_parquet(folder / "kpis.parquet").pivot(index="kpi", columns="method", values="value")
    for kpi in ("silhouette_batch", "batch_classifier_accuracy"):
        assert kpis.loc[kpi, "harmony"] < kpis.loc[kpi, "none"], kpi
    chosen = json.loads((folder / "selected_method.json").read_text())["selected"] or "none"
    table = pd.read_parquet(folder / "corrected" / f"{chosen}.parquet")
    meta, values = table.filter(regex="^Metadata_"), table.filter(regex="^(?!Metadata_)").to_numpy()
    settings = complete({"plates": "unused"})["evaluation"]
    moa_of = meta.dropna(subset="Metadata_MoA").drop_duplicates("Metadata_Perturbation")
    moa_of = moa_of.set_index("Metadata_Perturbation")["Metadata_MoA"]
    rng, shuffled_maps = np.random.default_rng(0), []
    for _ in range(10):  # MoAs dealt to the perturbations at random
        dealt = pd.Series(rng.permutation(moa_of.to_numpy()), index=moa_of.index)
        shuffled = meta.assign(Metadata_MoA=meta["Metadata_Perturbation"].map(dealt))
        result = BiologyEvaluator(shuffled, settings, threads=2).evaluate(values)
        shuffled_maps += [k.value for k in result.kpis if k.kpi == "map_moa_consensus"]
    assert kpis.loc["map_moa_consensus", chosen] > np.mean(shuffled_maps) + 2 * np.std(shuffled_maps)


def test_drift_lists_every_plate_in_acquisition_order(finished):
    layout, _, results = finished
    for features in ("dino", "cellprofiler"):
        drift = pd.read_parquet(results / "collection" / features / "drift.parquet")
        assert sorted(drift["Metadata_Plate"]) == sorted(p.plate for p in layout.plates)
        assert drift["acquired"].is_monotonic_increasing and drift["order"].tolist() == list(range(len(drift)))
        assert (drift["n_controls"] > 0).all() and drift["centroid_distance"].notna().all()


def test_report_opens_offline_in_a_browser(finished):
    layout, _, results = finished
    page = open_in_chromium(results / "report" / "index.html")
    assert page.images and all(image["decoded"] and image["width"] and image["height"] for image in page.images)
    assert page.foreign_requests == [] and page.errors == [] and page.dialogs == []
    for plate in layout.plates:
        assert plate.plate in page.text
    assert "random weights" in page.text.lower()  # the demo's DINO has no checkpoint


def test_snakemake_report_carries_the_main_outputs_with_captions(finished, demo_gallery, s3_server):
    _, root, results = finished
    target = results / "snakemake_report.zip"
    run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, "--report", str(target))
    with zipfile.ZipFile(target) as archive:
        names = archive.namelist()
        text = "".join(archive.read(n).decode(errors="ignore") for n in names if n.endswith((".html", ".js")))
    assert any(n.endswith("/index.html") for n in names)
    assert any(n.endswith("selected_method.json") for n in names) and any(n.endswith("kpis.parquet") for n in names)
    assert "min-max scaled across methods" in text and "robust z" in text


def test_a_finished_run_has_nothing_left_to_do(finished, demo_gallery, s3_server):
    _, root, results = finished
    dry = run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, "--dry-run")
    assert "Nothing to be done" in dry.stdout + dry.stderr
