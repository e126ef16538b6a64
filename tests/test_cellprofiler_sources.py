"""Which source the stage takes, and how it treats each: fallbacks in the
configured order, per-site analysis CSVs listed on the S3 server, the
well-level tables taken as they are, and the errors that name what is wrong.

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
from tests.test_cellprofiler_stage import (  # noqa: F401
    PREFIX,
    as_profiles,
    credentials,
    new_bucket,
    put,
    run_stage,
)
from workflow_scripts.cellprofiler.aggregate import aggregate_single_cells
from workflow_scripts.cellprofiler.analysis_csv import AnalysisCsvs
from workflow_scripts.wells import well_name
from workflow_scripts.cellprofiler.output import read_provenance
from workflow_scripts.cellprofiler.sources import source_key
from workflow_scripts.cellprofiler.well_tables import read_well_table
from workflow_scripts.s3server import upload_tree

COLLATE = "cellprofiler/pycytominer-tests/tests/test_data/collate"
COLLATE_BATCH, COLLATE_PLATE = "2021_04_20_Target2", "BR00121431"


def test_missing_sqlite_falls_back_to_backend_csv(shared_fixtures, s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    csv = shared_fixtures / COLLATE / "backend" / COLLATE_BATCH / COLLATE_PLATE / f"{COLLATE_PLATE}_main.csv"
    put(s3_server, bucket, csv, source_key(PREFIX, COLLATE_BATCH, COLLATE_PLATE, "csv"))
    out = run_stage(s3_server, bucket, tmp_path, COLLATE_BATCH, COLLATE_PLATE)
    ours = pd.read_parquet(out)
    stored = pd.read_csv(csv)
    features = [c for c in stored.columns if not c.startswith("Metadata_")]
    assert list(ours.columns[6:]) == features
    np.testing.assert_array_equal(ours[features].to_numpy(), stored[features].to_numpy(np.float64))
    assert list(ours["Metadata_Object_Count"]) == list(stored["Metadata_Object_Count"])
    provenance = read_provenance(out)
    assert provenance["source"] == "csv" and provenance["operation"] == "as stored in the source"


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


def test_analysis_csvs_listed_on_the_server_match_pycytominer(shared_fixtures, s3_server, tmp_path):
    """Listed and read with unsigned requests, as the public gallery allows."""
    operation = "median"
    bucket = new_bucket(s3_server)
    analysis = shared_fixtures / COLLATE / "analysis" / COLLATE_BATCH / COLLATE_PLATE / "analysis"
    complete = [analysis / f"{COLLATE_PLATE}-A01-1", analysis / f"{COLLATE_PLATE}-A02-1"]
    root = source_key(PREFIX, COLLATE_BATCH, COLLATE_PLATE, "analysis")
    for folder in complete:
        upload_tree(s3_server.admin_client(), bucket, folder, root + folder.name)
    out = run_stage(s3_server, bucket, tmp_path, COLLATE_BATCH, COLLATE_PLATE, "--operation", operation, "--anonymous")
    ours = pd.read_parquet(out)
    reference = analysis_reference(complete, operation)
    assert_matches_pycytominer(as_profiles(ours), reference)
    assert read_provenance(out)["objects"] == 8


@pytest.mark.usefixtures("credentials")
def test_incomplete_site_folder_names_the_missing_key(shared_fixtures, s3_server, tmp_path):
    """Listed with signed requests; a site folder without Cells.csv is an error."""
    bucket = new_bucket(s3_server)
    analysis = shared_fixtures / COLLATE / "analysis" / COLLATE_BATCH / COLLATE_PLATE / "analysis"
    root = source_key(PREFIX, COLLATE_BATCH, COLLATE_PLATE, "analysis")
    upload_tree(s3_server.admin_client(), bucket, analysis, root)
    with pytest.raises(FileNotFoundError, match=rf"s3://{bucket}/{root}{COLLATE_PLATE}-A01-2/Cells.csv"):
        run_stage(s3_server, bucket, tmp_path, COLLATE_BATCH, COLLATE_PLATE, "--sources", "analysis", "--signed")


def test_no_source_names_every_key_tried(s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    with pytest.raises(FileNotFoundError) as error:
        run_stage(s3_server, bucket, tmp_path, "b1", "P1")
    message = str(error.value)
    assert "plate P1" in message
    for kind in ("sqlite", "csv", "analysis"):
        assert f"s3://{bucket}/{source_key(PREFIX, 'b1', 'P1', kind)} ({kind})" in message
    assert not (tmp_path / "cellprofiler" / "wells.parquet").exists()


def test_profiles_source_is_taken_as_is(shared_fixtures, s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    stored = pd.read_csv(shared_fixtures / "profiles/plate-218360/218360.csv.gz")
    parquet = tmp_path / "218360.parquet"
    stored.to_parquet(parquet)
    put(s3_server, bucket, parquet, source_key(PREFIX, "b1", "218360", "profiles"))
    out = run_stage(s3_server, bucket, tmp_path, "b1", "218360", "--sources", "profiles")
    ours = pd.read_parquet(out).set_index("Metadata_Well")
    features = [c for c in stored.columns if c.startswith(("Cells_", "Cytoplasm_", "Nuclei_"))]
    expected = stored.assign(Metadata_Well=stored["Metadata_Well"]).set_index("Metadata_Well").sort_index()
    assert list(ours.columns[5:]) == features
    np.testing.assert_allclose(ours[features].to_numpy(), expected[features].to_numpy(np.float64), rtol=0, atol=TOLERANCE)
    assert ours["Metadata_Object_Count"].isna().all() == ("Metadata_Object_Count" not in stored.columns)


@pytest.mark.parametrize(("spelled", "well"), [("A01", "A01"), ("a1", "A01"), ("P24", "P24"), (" H7 ", "H07")])
def test_well_spellings_are_normalised(spelled, well):
    assert well_name(spelled, "test") == well


@pytest.mark.parametrize("bad", ["Q01", "A25", "A00", "", "r01c01", None])
def test_impossible_wells_are_named(bad):
    with pytest.raises(ValueError, match=r"plate Z, Image.Metadata_Well: .* is not a well"):
        well_name(bad, "plate Z, Image.Metadata_Well")


def test_non_numeric_site_csv_column_is_named(shared_fixtures, tmp_path):
    analysis = shared_fixtures / COLLATE / "analysis" / COLLATE_BATCH / COLLATE_PLATE / "analysis"
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
