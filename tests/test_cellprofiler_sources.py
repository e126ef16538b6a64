"""How the stage treats each kind of CellProfiler output once fetched: per-site
analysis CSVs aggregated (their QC-excluded site folders left out), the
well-level tables taken as they are (QC exclusion recorded as not applied),
and the errors that name what is wrong. Which output is fetched, and how, is
tested in test_fetch_backend.py.

References: pycytominer's aggregate() for per-site CSVs and the gallery's own
well-level tables for the sources taken as is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_cellprofiler_aggregate import TOLERANCE, assert_matches_pycytominer
from tests.test_cellprofiler_stage import as_profiles, key, new_bucket, put, run_stage
from workflow_scripts.cellprofiler.aggregate import aggregate_single_cells
from workflow_scripts.cellprofiler.analysis_csv import AnalysisCsvs
from workflow_scripts.cellprofiler.output import STAGE
from workflow_scripts.cellprofiler.well_tables import read_well_table
from workflow_scripts.demo.s3server import upload_tree
from workflow_scripts.provenance import read_provenance
from workflow_scripts.wells import well_name

COLLATE = "cellprofiler/pycytominer-tests/tests/test_data/collate"
COLLATE_BATCH, COLLATE_PLATE = "2021_04_20_Target2", "BR00121431"
NOT_APPLIED = "not applied: the {kind} source is aggregated per well already, so its fields cannot be left out"


def features_of(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if not c.startswith("Metadata_")]


def test_missing_sqlite_falls_back_to_backend_csv(shared_fixtures, s3_server, tmp_path):
    """The backend CSV has a row per well: QC's excluded sites cannot be taken
    out of it, and the provenance and the (empty) count say so."""
    bucket = new_bucket(s3_server)
    csv = shared_fixtures / COLLATE / "backend" / COLLATE_BATCH / COLLATE_PLATE / f"{COLLATE_PLATE}_main.csv"
    put(s3_server, bucket, csv, key(COLLATE_BATCH, COLLATE_PLATE, "csv"))
    out = run_stage(s3_server, bucket, tmp_path, COLLATE_BATCH, COLLATE_PLATE, excluded={("A01", "1")})
    ours = pd.read_parquet(out)
    stored = pd.read_csv(csv, float_precision="round_trip")  # exact, as the stage parses
    features = [c for c in stored.columns if not c.startswith("Metadata_")]
    assert features_of(ours) == features
    np.testing.assert_array_equal(ours[features].to_numpy(), stored[features].to_numpy(np.float64))
    assert list(ours["Metadata_Object_Count"]) == list(stored["Metadata_Object_Count"])
    assert ours["Metadata_n_fields_excluded"].isna().all()
    provenance = read_provenance(out, STAGE)
    assert provenance["source"] == "csv" and provenance["operation"] == "as stored in the source"
    assert provenance["qc_exclusion"] == {
        "sites_excluded_by_qc": 1, "applied": False, "note": NOT_APPLIED.format(kind="csv"),
    }


def analysis_reference(site_folders: list[Path], operation: str) -> pd.DataFrame:
    """pycytominer.aggregate per compartment over the CSVs, with the column
    prefixes cytominer-database gives them."""
    from pycytominer import aggregate

    parts = []
    for compartment in ("Cells", "Cytoplasm", "Nuclei"):
        frames = []
        for folder in site_folders:
            cells = pd.read_csv(folder / f"{compartment}.csv")
            well = pd.read_csv(folder / "Image.csv")["Metadata_Well"].iloc[0]
            cells = cells.drop(columns=["ImageNumber", "ObjectNumber"]).add_prefix(f"{compartment}_")
            cells = cells.drop(columns=[c for c in cells if c in ("Cytoplasm_Parent_Cells", "Cytoplasm_Parent_Nuclei")])
            metadata = pd.DataFrame({"Metadata_Well": well, "Metadata_ObjectNumber": 1}, index=cells.index)
            frames.append(pd.concat([metadata, cells], axis=1))
        population = pd.concat(frames, ignore_index=True)
        profiles = aggregate(
            population, strata=["Metadata_Well"], operation=operation,
            compute_object_count=compartment == "Cells",
        ).set_index("Metadata_Well")
        parts.append(profiles)
    wells = pd.DataFrame({"Metadata_Well": parts[0].index}, index=parts[0].index)
    return pd.concat([wells, *parts], axis=1).reset_index(drop=True)


@pytest.fixture
def analysis(shared_fixtures) -> Path:
    return shared_fixtures / COLLATE / "analysis" / COLLATE_BATCH / COLLATE_PLATE / "analysis"


def test_analysis_csvs_listed_on_the_server_match_pycytominer(analysis, s3_server, tmp_path):
    """Listed and read with unsigned requests, as the public gallery allows."""
    operation = "median"
    bucket = new_bucket(s3_server)
    complete = [analysis / f"{COLLATE_PLATE}-A01-1", analysis / f"{COLLATE_PLATE}-A02-1"]
    root = key(COLLATE_BATCH, COLLATE_PLATE, "analysis")
    for folder in complete:
        upload_tree(s3_server.admin_client(), bucket, folder, root + folder.name)
    out = run_stage(s3_server, bucket, tmp_path, COLLATE_BATCH, COLLATE_PLATE, operation=operation, anonymous=True)
    ours = pd.read_parquet(out)
    reference = analysis_reference(complete, operation)
    assert_matches_pycytominer(as_profiles(ours), reference)
    assert read_provenance(out, STAGE)["objects"] == 8


def shifted_site(folder: Path, target: Path, site: int) -> Path:
    """A copy of a site folder as another site of its well, every measurement
    doubled: were it read, its well's profile would change."""
    target.mkdir(parents=True)
    for table in ("Cells", "Cytoplasm", "Nuclei"):
        cells = pd.read_csv(folder / f"{table}.csv")
        measured = [c for c in cells.columns if c not in ("ImageNumber", "ObjectNumber")]
        cells[measured] = cells[measured] * 2
        cells.to_csv(target / f"{table}.csv", index=False)
    pd.read_csv(folder / "Image.csv").assign(Metadata_Site=site).to_csv(target / "Image.csv", index=False)
    return target


def test_analysis_site_folders_excluded_by_qc_are_left_out(analysis, s3_server, tmp_path):
    """A01 has sites 1 and 3, site 3 excluded; A02 has site 1 only, excluded:
    A01 equals pycytominer over its site 1, A02 keeps its row without cells."""
    bucket = new_bucket(s3_server)
    local = tmp_path / "gallery"
    folders = [analysis / f"{COLLATE_PLATE}-A01-1", analysis / f"{COLLATE_PLATE}-A02-1"]
    folders.append(shifted_site(folders[0], local / f"{COLLATE_PLATE}-A01-3", 3))
    root = key(COLLATE_BATCH, COLLATE_PLATE, "analysis")
    for folder in folders:
        upload_tree(s3_server.admin_client(), bucket, folder, root + folder.name)
    out = run_stage(s3_server, bucket, tmp_path, COLLATE_BATCH, COLLATE_PLATE, excluded={("A01", "3"), ("A02", "1")})

    ours = pd.read_parquet(out).set_index("Metadata_Well")
    assert list(ours["Metadata_n_fields_excluded"]) == [1, 1]
    assert ours.loc["A02", "Metadata_Object_Count"] == 0 and ours.loc["A02", "Metadata_Flag_NoCells"]
    assert ours.loc["A02", features_of(ours)].isna().all()
    assert_matches_pycytominer(as_profiles(ours.reset_index()), analysis_reference(folders[:1], "median"))
    assert read_provenance(out, STAGE)["qc_exclusion"]["fields_excluded"] == 2


def test_profiles_source_is_taken_as_is(shared_fixtures, s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    stored = pd.read_csv(shared_fixtures / "profiles/plate-218360/218360.csv.gz")
    parquet = tmp_path / "218360.parquet"
    stored.to_parquet(parquet)
    put(s3_server, bucket, parquet, key("b1", "218360", "profiles"))
    out = run_stage(s3_server, bucket, tmp_path, "b1", "218360", sources=["profiles"], excluded={("B02", "4")})
    ours = pd.read_parquet(out).set_index("Metadata_Well")
    features = [c for c in stored.columns if c.startswith(("Cells_", "Cytoplasm_", "Nuclei_"))]
    expected = stored.assign(Metadata_Well=stored["Metadata_Well"]).set_index("Metadata_Well").sort_index()
    assert features_of(ours) == features
    np.testing.assert_allclose(ours[features].to_numpy(), expected[features].to_numpy(np.float64), rtol=0, atol=TOLERANCE)
    assert ours["Metadata_Object_Count"].isna().all() == ("Metadata_Object_Count" not in stored.columns)
    assert ours["Metadata_n_fields_excluded"].isna().all()
    exclusion = read_provenance(out, STAGE)["qc_exclusion"]
    assert exclusion["applied"] is False and exclusion["note"] == NOT_APPLIED.format(kind="profiles")


@pytest.mark.parametrize(("spelled", "well"), [("A01", "A01"), ("a1", "A01"), ("P24", "P24"), (" H7 ", "H07")])
def test_well_spellings_are_normalised(spelled, well):
    assert well_name(spelled, "test") == well


@pytest.mark.parametrize("bad", ["Q01", "A25", "A00", "", "r01c01", None])
def test_impossible_wells_are_named(bad):
    with pytest.raises(ValueError, match=r"plate Z, Image.Metadata_Well: .* is not a well"):
        well_name(bad, "plate Z, Image.Metadata_Well")


def test_non_numeric_site_csv_column_is_named(analysis, tmp_path):
    folders = [tmp_path / name for name in (f"{COLLATE_PLATE}-A01-1", f"{COLLATE_PLATE}-A02-1")]
    for folder in folders:
        shutil.copytree(analysis / folder.name, folder)
    nuclei = pd.read_csv(folders[1] / "Nuclei.csv")
    nuclei["AreaShape_Area"] = nuclei["AreaShape_Area"].astype(str)
    nuclei.loc[3, "AreaShape_Area"] = "large"
    nuclei.to_csv(folders[1] / "Nuclei.csv", index=False)
    source = AnalysisCsvs(folders, "plate BR00121431")
    with pytest.raises(ValueError, match=r"A02-1/Nuclei.csv: feature column 'AreaShape_Area' is not numeric"):
        aggregate_single_cells(source, "median")


def test_site_folder_without_site_column_is_named_only_when_excluding(analysis, tmp_path):
    """The site is needed only to leave sites out."""
    folder = tmp_path / f"{COLLATE_PLATE}-A01-1"
    shutil.copytree(analysis / folder.name, folder)
    pd.read_csv(folder / "Image.csv").drop(columns="Metadata_Site").to_csv(folder / "Image.csv", index=False)
    assert AnalysisCsvs([folder], "plate BR00121431").fields_excluded == [0]
    with pytest.raises(ValueError, match=r"A01-1/Image.csv: neither Metadata_Site nor Image_Metadata_Site"):
        AnalysisCsvs([folder], "plate BR00121431", {("A01", "1")})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.assign(Cells_AreaShape_Area=t["Cells_AreaShape_Area"].astype(str)), "'Cells_AreaShape_Area' is not numeric"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "a well appears more than once"),
        (lambda t: t.drop(columns="Metadata_Well"), "no Metadata_Well column"),
    ],
)
def test_bad_well_tables_are_named(shared_fixtures, tmp_path, change, message):
    stored = pd.read_csv(shared_fixtures / "profiles/plate-218360/218360.csv.gz")
    path = tmp_path / "218360.parquet"
    change(stored).to_parquet(path)
    with pytest.raises(ValueError, match=rf"218360\.parquet: .*{message}"):
        read_well_table(path, "profiles")
