"""Negative-control drift: a plate whose controls moved is flagged, plates follow acquisition order,
only control rows are read, and a plate without controls says so."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.support.plate_layout import lay_out_plates
from workflow_scripts.errors import InputError
from workflow_scripts.evaluate.__main__ import main
from workflow_scripts.evaluate.drift import control_drift, read_controls

SETTINGS = {"robust_z": 3.5, "order_column": "Metadata_AcquisitionDate"}
BATCHES = ["2021_06_14_Batch2", "2021_05_31_Batch1"]


def plate(name: str, batch: str, shift: float, rng: np.random.Generator, negcon: int = 8) -> pd.DataFrame:
    """One plate's annotated wells: ``negcon`` controls and 8 treated wells, 20 features."""
    n = negcon + 8
    values = rng.normal(0, 1, (n, 20)) * np.linspace(1, 50, 20)  # features on very different scales
    values[:negcon] += shift * np.linspace(1, 50, 20)
    meta = pd.DataFrame(
        {
            "Metadata_Source": "source_1",
            "Metadata_Batch": batch,
            "Metadata_Plate": name,
            "Metadata_Well": [f"A{i + 1:02d}" for i in range(n)],
            "Metadata_PertType": ["negcon"] * negcon + ["trt"] * 8,
        }
    )
    return pd.concat([meta, pd.DataFrame(values, columns=[f"f{i}" for i in range(20)])], axis=1)


def write_plates(tmp_path, shifts: dict[str, float]) -> list:
    rng = np.random.default_rng(0)
    paths = []
    for position, (name, shift) in enumerate(shifts.items()):
        path = tmp_path / f"{name}.parquet"
        plate(name, BATCHES[position % 2], shift, rng).to_parquet(path)
        paths.append(path)
    return paths


def test_a_drifting_plate_is_flagged_and_plates_follow_acquisition_order(tmp_path):
    shifts = {f"P{i}": 0.0 for i in range(8)} | {"P8": 3.0}
    controls, plates = read_controls(write_plates(tmp_path, shifts), SETTINGS["order_column"])
    assert set(controls["Metadata_PertType"]) == {"negcon"} and len(controls) == 9 * 8
    table = control_drift(controls, plates, SETTINGS)
    assert table.loc[table["flagged"], "Metadata_Plate"].tolist() == ["P8"]
    assert table.set_index("Metadata_Plate").loc["P8", "robust_z"] > 10
    assert "robust z 3.5" in table.set_index("Metadata_Plate").loc["P8", "note"]
    # Batch1 (2021-05-31) was imaged before Batch2: its plates come first, in table order.
    assert table["acquired"].tolist() == ["2021-05-31"] * 4 + ["2021-06-14"] * 5
    assert table["Metadata_Plate"].tolist()[:4] == ["P1", "P3", "P5", "P7"]
    assert table["order"].tolist() == list(range(9)) and (table["n_controls"] == 8).all()


def test_order_column_of_the_plate_table_wins(tmp_path):
    paths = write_plates(tmp_path, {"P0": 0.0, "P1": 0.0})
    for path, date in zip(paths, ["2024-02-01", "2024-01-01"]):
        pd.read_parquet(path).assign(Metadata_AcquisitionDate=date).to_parquet(path)
    table = control_drift(*read_controls(paths, SETTINGS["order_column"]), SETTINGS)
    assert table["Metadata_Plate"].tolist() == ["P1", "P0"]


def test_a_plate_without_controls_is_listed_with_a_note(tmp_path):
    paths = write_plates(tmp_path, {"P0": 0.0, "P1": 0.0, "P2": 0.0})
    rng = np.random.default_rng(1)
    plate("P3", BATCHES[0], 0.0, rng, negcon=0).to_parquet(tmp_path / "P3.parquet")
    table = control_drift(*read_controls([*paths, tmp_path / "P3.parquet"], "none"), SETTINGS)
    row = table.set_index("Metadata_Plate").loc["P3"]
    assert row["n_controls"] == 0 and row["note"] == "no negative controls" and not row["flagged"]


def test_no_controls_anywhere_is_an_error(tmp_path):
    rng = np.random.default_rng(2)
    plate("P0", BATCHES[0], 0.0, rng, negcon=0).to_parquet(tmp_path / "P0.parquet")
    with pytest.raises(InputError, match="no plate has negative-control wells"):
        control_drift(*read_controls([tmp_path / "P0.parquet"], "none"), SETTINGS)


def test_stage_writes_the_drift_table(tmp_path):
    paths = write_plates(tmp_path, {f"P{i}": 0.0 for i in range(5)} | {"P5": 4.0})
    plates = lay_out_plates(tmp_path / "results", paths, "profiles/cellprofiler_annotated.parquet")
    out = tmp_path / "results" / "collection" / "cellprofiler" / "drift.parquet"
    settings = {"plates": str(plates), "dataset": "cpg-test", "select": {}}
    argv = [
        "drift",
        "--settings",
        json.dumps(settings),
        "--wildcard",
        "features=cellprofiler",
        "--output",
        f"drift={out}",
    ]
    assert main(argv) == 0
    table = pd.read_parquet(out)
    assert list(table.columns) == [
        "features", "Metadata_Source", "Metadata_Batch", "Metadata_Plate", "order", "acquired", "n_controls",
        "centroid_distance", "dispersion", "robust_z", "flagged", "note",
    ]  # fmt: skip
    assert (
        table.loc[table["flagged"], "Metadata_Plate"].tolist() == ["P5"] and (table["features"] == "cellprofiler").all()
    )
    assert b"evaluate" in pq.read_schema(out).metadata
