"""The plate table: JUMP's plate.csv.gz as it is, selection, clear errors."""

from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.plates import PlateTableError, plate_columns, read_plate_table


@pytest.fixture
def jump_plates(shared_fixtures: Path) -> Path:
    return shared_fixtures / "jump-metadata" / "metadata" / "plate.csv.gz"


def test_jump_plate_table_reads_as_is(jump_plates):
    table = read_plate_table(jump_plates, "cpg0016-jump")
    raw = pd.read_csv(jump_plates, dtype=str)
    assert len(table) == len(raw)
    assert (table["Metadata_Dataset"] == "cpg0016-jump").all()
    assert table["Metadata_Plate"].tolist() == raw["Metadata_Plate"].tolist()


def test_selection_narrows_by_source_batch_and_type(jump_plates):
    table = read_plate_table(
        jump_plates, "cpg0016-jump", {"sources": ["source_4"], "batches": ["2021_04_26_Batch1"], "plate_types": ["ORF"]}
    )
    raw = pd.read_csv(jump_plates, dtype=str)
    expected = raw[
        (raw.Metadata_Source == "source_4")
        & (raw.Metadata_Batch == "2021_04_26_Batch1")
        & (raw.Metadata_PlateType == "ORF")
    ]
    assert sorted(table["Metadata_Plate"]) == sorted(expected["Metadata_Plate"])
    assert len(table) > 0


def test_all_digit_plate_names_stay_text(tmp_path):
    path = tmp_path / "plates.csv"
    path.write_text("Metadata_Source,Metadata_Batch,Metadata_Plate\nsource_9,B1,000123\nsource_9,B1,0456\n")
    table = read_plate_table(path, "cpg0016-jump", {"plates": ["000123"]})
    assert table["Metadata_Plate"].tolist() == ["000123"]


def test_dataset_column_overrides_config(tmp_path):
    path = tmp_path / "plates.csv"
    path.write_text(
        "Metadata_Dataset,Metadata_Source,Metadata_Batch,Metadata_Plate\n"
        "cpg0000-jump-pilot,source_4,B1,P1\n,source_4,B1,P2\n"
    )
    table = read_plate_table(path, "cpg0016-jump")
    assert table["Metadata_Dataset"].tolist() == ["cpg0000-jump-pilot", "cpg0016-jump"]


def test_unknown_plate_is_named(jump_plates):
    with pytest.raises(PlateTableError, match="NOT_A_PLATE"):
        read_plate_table(jump_plates, "cpg0016-jump", {"plates": ["BR00117035", "NOT_A_PLATE"]})


def test_empty_selection_is_an_error(jump_plates):
    with pytest.raises(PlateTableError, match="leaves no plate"):
        read_plate_table(jump_plates, "cpg0016-jump", {"sources": ["source_1"], "batches": ["2021_04_26_Batch1"]})


def test_missing_column_and_bad_name(tmp_path):
    path = tmp_path / "plates.csv"
    path.write_text("Metadata_Source,Metadata_Plate\nsource_1,P1\n")
    with pytest.raises(PlateTableError, match="Metadata_Batch"):
        read_plate_table(path, "d")
    path.write_text("Metadata_Source,Metadata_Batch,Metadata_Plate\nsource_1,a/b,P1\n")
    with pytest.raises(PlateTableError, match="row 2: Metadata_Batch"):
        read_plate_table(path, "d")


def test_plate_columns_of_one_jump_plate(jump_plates):
    plate = PlateRef("cpg0016-jump", "source_4", "2021_04_26_Batch1", "BR00117035")
    assert plate_columns(jump_plates, "cpg0016-jump", plate) == {"Metadata_PlateType": "ORF"}
    with pytest.raises(PlateTableError, match=r"plate NOPE \(cpg0016-jump/source_4/2021_04_26_Batch1\) is not in"):
        plate_columns(jump_plates, "cpg0016-jump", PlateRef("cpg0016-jump", "source_4", "2021_04_26_Batch1", "NOPE"))
