"""``collection collect`` as the rule calls it, on per-plate profiles the
profiles stage made from the real plate 218360 (and a second plate of its
wells in another order), and the real LINCS plate SQ00015054, whose
CellProfiler features differ: the same file whatever the input order, and
disagreeing feature columns refused (exit 1, plates and columns named,
nothing written) unless ``selection.keep_shared_columns``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from tests.support.plate_layout import lay_out_plates
from tests.test_profiles_normalize import LINCS_PLATE, plate_map, plate_wells
from tests.test_profiles_stage import ANNOTATION, output, run, write_inputs
from workflow_scripts.collection.__main__ import STAGE, main
from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.provenance import read_provenance

SOURCE, BATCH = "source_cellhealth", "2020_06_26"


@pytest.fixture(scope="session")
def plate_profiles(shared_fixtures, tmp_path_factory) -> list[Path]:
    """``profiles/cellprofiler.parquet`` of two plates, made by the profiles stage."""
    root = tmp_path_factory.mktemp("plates")
    wells = plate_wells(shared_fixtures)
    features = feature_columns(wells)
    moved = pd.concat(
        [
            wells.drop(columns=features).assign(Metadata_Plate="218361"),
            wells[features].iloc[::-1].reset_index(drop=True),
        ],
        axis=1,
    )
    outputs = []
    for table in (wells, moved):
        plate = table["Metadata_Plate"].iloc[0]
        folder = root / plate
        wells_path, platemaps = write_inputs(folder, table, plate_map(shared_fixtures), plate)
        assert (
            run(
                folder, wells_path, platemaps, {"annotation": ANNOTATION}, plate_id=f"cpg-test/{SOURCE}/{BATCH}/{plate}"
            )
            == 0
        )
        outputs.append(output(folder))
    return outputs


@pytest.fixture(scope="session")
def lincs_profiles(shared_fixtures, tmp_path_factory) -> Path:
    """The LINCS plate as a plate's profiles: another CellProfiler pipeline's features."""
    table = pd.read_csv(shared_fixtures / LINCS_PLATE, dtype={"Metadata_Plate": str, "Metadata_Well": str})
    keys = pd.DataFrame({"Metadata_Source": "broad_lincs", "Metadata_Batch": "2016_04_01"}, index=table.index)
    table = pd.concat([keys, table], axis=1)
    path = tmp_path_factory.mktemp("lincs") / "cellprofiler.parquet"
    table.to_parquet(path)
    return path


def collect(tmp_path: Path, inputs: list[Path], **selection) -> tuple[int, Path]:
    """``python -m workflow_scripts.collection collect`` on ``inputs`` laid out as a run's plates; status and output.

    The stage finds each plate's file from the plate table, which lists the
    plates in the order of ``inputs``.
    """
    plates = lay_out_plates(tmp_path, inputs, "profiles/cellprofiler.parquet")
    settings = {"selection": selection, "plates": str(plates), "dataset": "cpg-test", "select": {}}
    out = tmp_path / "collection" / "cellprofiler" / "profiles.parquet"
    argv = [
        "collect",
        "--settings",
        json.dumps(settings),
        "--wildcard",
        "features=cellprofiler",
        "--output",
        f"profiles={out}",
    ]
    return main(argv), out


def test_collect_is_sorted_and_independent_of_input_order(plate_profiles, tmp_path):
    status, first = collect(tmp_path, plate_profiles)
    assert status == 0
    written = first.read_bytes()
    status, second = collect(tmp_path, plate_profiles[::-1])  # the plate table in the other order
    assert status == 0
    assert second.read_bytes() == written
    table = pd.read_parquet(first)
    assert len(table) == 120 and list(table["Metadata_Plate"].unique()) == ["218360", "218361"]
    assert table.groupby("Metadata_Plate")["Metadata_Well"].apply(lambda w: list(w) == sorted(w)).all()
    assert feature_columns(table) == feature_columns(pd.read_parquet(plate_profiles[0]))
    record = read_provenance(first, STAGE)
    assert [p["plate"] for p in record["plates"]] == [f"{SOURCE}/{BATCH}/218360", f"{SOURCE}/{BATCH}/218361"]
    assert record["features"] == 3526 and record["dropped_columns"] == []


def test_plates_disagreeing_on_features_are_refused(plate_profiles, lincs_profiles, tmp_path, caplog):
    with caplog.at_level(logging.ERROR, logger="workflow_scripts.collection"):
        status, out = collect(tmp_path, [*plate_profiles, lincs_profiles])
    assert status == 1 and not out.exists() and not list((tmp_path / "collection").rglob("*.parquet"))
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"plate(s) {SOURCE}/{BATCH}/218360, {SOURCE}/{BATCH}/218361 lack " in message
    assert "plate(s) broad_lincs/2016_04_01/SQ00015054 lack " in message
    assert "selection.keep_shared_columns" in message


def test_keep_shared_columns_keeps_the_intersection(plate_profiles, lincs_profiles, tmp_path):
    status, out = collect(tmp_path, [*plate_profiles, lincs_profiles], keep_shared_columns=True)
    assert status == 0
    table = pd.read_parquet(out)
    shared = set(feature_columns(pd.read_parquet(plate_profiles[0]))) & set(
        feature_columns(pd.read_parquet(lincs_profiles))
    )
    assert set(feature_columns(table)) == shared and 0 < len(shared) < 454
    record = read_provenance(out, STAGE)
    assert record["features"] == len(shared) and len(record["dropped_columns"]) == 3526 + 454 - 2 * len(shared)
    keys = ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well"]
    assert table[keys].equals(table[keys].sort_values(keys, ignore_index=True))
    assert table["Metadata_Plate"].iloc[0] == "SQ00015054"  # broad_lincs < source_cellhealth
    assert table.loc[table["Metadata_Plate"] == "SQ00015054", "Metadata_PertType"].isna().all()  # metadata: union
