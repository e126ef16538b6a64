"""LoadData parsing: both gallery schemas on real files, and clear errors."""

from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.fetch.load_data import (
    LoadDataError,
    image_urls,
    normalize_load_data,
    read_load_data_file,
    restrict_sample,
)

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
LOAD_DATA = "load-data/minimal_dataset/cpg0016-jump/source_4/workspace/load_data_csv/2021_04_26_Batch1/BR00117035"
OLD_SCHEMA = (
    "cellprofiler/pycytominer-tests/tests/test_data/cell_locations_example_data/"
    "test_BR00126114_load_data_with_illum.parquet"
)


def test_url_schema_with_illum(shared_fixtures: Path):
    path = shared_fixtures / LOAD_DATA / "load_data_with_illum.csv"
    sites = normalize_load_data(read_load_data_file(path), str(path), CHANNELS, plate="BR00117035")
    raw = pd.read_csv(path, dtype=str)
    assert len(sites) == len(raw)
    for channel in CHANNELS:
        assert sites[f"URL_Orig{channel}"].tolist() == raw[f"URL_Orig{channel}"].tolist()
        assert sites[f"URL_Illum{channel}"].tolist() == raw[f"URL_Illum{channel}"].tolist()
    assert "URL_OrigBrightfield" not in sites.columns
    metadata = [c for c in sites.columns if c.startswith("Metadata_")]
    assert set(metadata) == {c for c in raw.columns if c.startswith("Metadata_")}
    assert all(str(sites[c].dtype) == "string" for c in metadata)
    assert sites.loc[0, "Metadata_ImageResolutionX"] == raw.loc[0, "Metadata_ImageResolutionX"]


def test_url_schema_without_illum(shared_fixtures: Path):
    path = shared_fixtures / LOAD_DATA / "load_data.csv"
    sites = normalize_load_data(read_load_data_file(path), str(path), CHANNELS)
    assert not any(c.startswith("URL_Illum") for c in sites.columns)


def test_filename_pathname_schema(shared_fixtures: Path):
    path = shared_fixtures / OLD_SCHEMA
    raw = pd.read_parquet(path)
    sites = normalize_load_data(read_load_data_file(path), str(path), CHANNELS, plate="BR00126114")
    for channel in CHANNELS:
        expected = [
            f"{p.rstrip('/')}/{f}" for p, f in zip(raw[f"PathName_Orig{channel}"], raw[f"FileName_Orig{channel}"])
        ]
        assert sites[f"URL_Orig{channel}"].tolist() == expected
        assert sites[f"URL_Orig{channel}"].str.startswith("s3://cellpainting-gallery/").all()
    assert sites["Metadata_Site"].tolist() == [str(s) for s in raw["Metadata_Site"]]
    urls = image_urls(sites)
    assert len(urls) == len(sites) * len(CHANNELS) + len(CHANNELS)


def _table(**overrides) -> pd.DataFrame:
    row = {"Metadata_Plate": "P1", "Metadata_Well": "A01", "Metadata_Site": "0"}
    row |= {f"URL_Orig{ch}": f"s3://b/P1/{ch}.tiff" for ch in CHANNELS}
    row |= overrides
    return pd.DataFrame([row])


def test_missing_channel_column_names_file_and_column():
    table = _table().drop(columns=["URL_OrigER"])
    with pytest.raises(LoadDataError, match=r"plate_x\.csv.*URL_OrigER"):
        normalize_load_data(table, "plate_x.csv", CHANNELS)


def test_bad_well_names_file_column_and_value():
    with pytest.raises(LoadDataError, match=r"plate_x\.csv: column Metadata_Well, row 2: 'Z99x'"):
        normalize_load_data(_table(Metadata_Well="Z99x"), "plate_x.csv", CHANNELS)


def test_well_names_are_normalised_and_sites_kept_as_found():
    sites = normalize_load_data(_table(Metadata_Well="b7"), "f.csv", CHANNELS)
    assert sites.loc[0, "Metadata_Well"] == "B07"
    assert sites.loc[0, "Metadata_Site"] == "0"


def test_non_s3_url_and_wrong_plate_are_errors():
    with pytest.raises(LoadDataError, match="not an s3:// URL"):
        normalize_load_data(_table(URL_OrigDNA="/local/file.tiff"), "f.csv", CHANNELS)
    with pytest.raises(LoadDataError, match="'P2' was expected"):
        normalize_load_data(_table(), "f.csv", CHANNELS, plate="P2")


def test_sample_restriction():
    table = pd.concat([_table(Metadata_Well=w, Metadata_Site=s) for w in ("A01", "B02") for s in "12"])
    sites = normalize_load_data(table, "f.csv", CHANNELS)
    kept = restrict_sample(sites, ["b2"], [2], "P1")
    assert kept[["Metadata_Well", "Metadata_Site"]].values.tolist() == [["B02", "2"]]
    with pytest.raises(LoadDataError, match="plate P1.*match no site"):
        restrict_sample(sites, ["H12"], [], "P1")
