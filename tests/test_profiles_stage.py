"""The profiles stage called as the rule calls it, on the real plate 218360:
its output equals pycytominer's normalization of the authors' annotated file;
bad input (an empty plate, wells listed twice, no negative controls, a batch
file of another batch) ends with exit 1, a message naming the plate or file,
and no output."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.platemaps import write_platemap_folder
from tests.test_profiles_normalize import BATCH, DMSO, SOURCE, augmented, plate_map, plate_wells, pycytominer_normalized
from workflow_scripts.profiles.__main__ import STAGE, main
from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.provenance import read_provenance

PLATE_ID = f"cpg-test/{SOURCE}/{BATCH}/218360"
ANNOTATION = {"perturbation_columns": ["Metadata_treatment"], "controls": {"column": "treatment", "negcon": [DMSO]}}


def write_inputs(
    tmp_path: Path, wells: pd.DataFrame, platemap: pd.DataFrame, name: str = "218360"
) -> tuple[Path, Path]:
    """The plate's wells table, and a local platemap folder holding its platemap; their paths."""
    folder = tmp_path / name
    (folder / "cellprofiler").mkdir(parents=True)
    wells.to_parquet(folder / "cellprofiler" / "wells.parquet")
    return folder / "cellprofiler" / "wells.parquet", write_platemap_folder(folder / "platemaps", BATCH, name, platemap)


def run(
    tmp_path: Path, wells: Path, platemaps: Path, settings: dict, batch: list[Path] = (), plate_id: str = PLATE_ID
) -> int:
    """``python -m workflow_scripts.profiles`` with the arguments the rule passes, and a plate table."""
    dataset, source, batch_name, plate = plate_id.split("/")
    plates = tmp_path / "plates.csv"
    pd.DataFrame(
        {
            "Metadata_Source": [source],
            "Metadata_Batch": [batch_name],
            "Metadata_Plate": [plate],
            "Metadata_PlateType": ["CRISPR"],
        }
    ).to_csv(plates, index=False)
    annotation = {**settings.get("annotation", {}), "platemaps": str(platemaps)}
    settings = {
        "plates": str(plates),
        "dataset": dataset,
        "features": ["cellprofiler"],
        **settings,
        "annotation": annotation,
    }
    argv = [
        "--settings", json.dumps(settings), "--plate", plate_id,
        "--input", f"wells_cellprofiler={wells}",
        *[arg for path in batch for arg in ("--input", f"batch_wells_cellprofiler={path}")],
        "--output", f"platemap={platemap_output(tmp_path)}",
        "--output", f"profiles_cellprofiler={output(tmp_path)}",
        "--output", f"annotated_cellprofiler={output(tmp_path).with_name('cellprofiler_annotated.parquet')}",
    ]  # fmt: skip
    return main(argv)


def output(tmp_path: Path) -> Path:
    return tmp_path / "out" / "profiles" / "cellprofiler.parquet"


def platemap_output(tmp_path: Path) -> Path:
    return tmp_path / "out" / "fetch" / "platemap.parquet"


def test_stage_output_equals_pycytominer_on_the_annotated_plate(shared_fixtures, tmp_path):
    wells, platemap = write_inputs(tmp_path, plate_wells(shared_fixtures), plate_map(shared_fixtures))
    extra = shared_fixtures / "profiles/plate-218360/cell_counts.tsv"  # joins on plate, well and the platemap's columns
    settings = {"annotation": {**ANNOTATION, "extra_tables": [str(extra)]}}
    assert run(tmp_path, wells, platemap, settings) == 0

    table = pd.read_parquet(output(tmp_path)).set_index("Metadata_Well")
    features = feature_columns(table)
    reference = pycytominer_normalized(shared_fixtures, "mad_robustize", f"Metadata_treatment == '{DMSO}'", features)
    reference = reference.set_index("Metadata_Well").loc[table.index]
    record = read_provenance(output(tmp_path), STAGE)
    flat = record["normalization"]["no_spread_features"]
    has_spread = [f for f in features if f not in set(flat)]
    assert len(features) == 3526 and len(flat) == 124 and table[flat].isna().all().all()
    assert np.abs(table[has_spread].to_numpy() - reference[has_spread].to_numpy()).max() <= 1e-9
    assert (
        table["Metadata_treatment"]
        == augmented(shared_fixtures).set_index("Metadata_Well").loc[table.index, "Metadata_treatment"]
    ).all()
    assert table["Metadata_PertType"].value_counts().to_dict() == {"trt": 45, "negcon": 15}
    assert (
        table["Metadata_cell_count"].astype(int).equals(table["Metadata_Object_Count"].astype(int))
    )  # the extra table
    assert table["Metadata_Object_Count"].dtype == np.int64
    assert record["annotation"]["unmatched_wells"] == {str(platemap_output(tmp_path)): 0, str(extra): 0}
    assert record["plate"] == PLATE_ID and record["features"] == "cellprofiler"
    assert record["normalization"]["reference_wells"] == 15
    assert (table["Metadata_PlateType"] == "CRISPR").all()  # from the plate table
    annotated = pd.read_parquet(output(tmp_path).with_name("cellprofiler_annotated.parquet")).set_index("Metadata_Well")
    assert annotated.drop(columns=features).equals(table.drop(columns=features))  # same rows, same annotation
    raw = plate_wells(shared_fixtures).set_index("Metadata_Well").loc[table.index, features]
    assert np.array_equal(annotated[features].to_numpy(), raw.to_numpy(dtype=float), equal_nan=True)


def test_wellpos_reads_the_batch_wells(shared_fixtures, tmp_path):
    wells_table = plate_wells(shared_fixtures)
    wells, platemap = write_inputs(tmp_path, wells_table, plate_map(shared_fixtures))
    features = feature_columns(wells_table)
    shuffled = pd.DataFrame(wells_table[features].to_numpy()[::-1] * 1.5, columns=features)
    other_table = pd.concat([wells_table.drop(columns=features).assign(Metadata_Plate="218361"), shuffled], axis=1)
    other, _ = write_inputs(tmp_path, other_table, plate_map(shared_fixtures), "218361")
    settings = {"annotation": ANNOTATION, "normalization": {"adjust": ["wellpos"]}}
    assert run(tmp_path, wells, platemap, settings, batch=[wells, other]) == 0  # the plate's own file is used once
    assert read_provenance(output(tmp_path), STAGE)["normalization"]["wellpos"] == {
        "plates": ["218360", "218361"],
        "wells": 120,
    }


def few_features(wells: pd.DataFrame, n: int = 200) -> pd.DataFrame:
    """The plate with its first ``n`` features: enough for the failures, and quick to write."""
    return wells[[c for c in wells.columns if c.startswith("Metadata_")] + feature_columns(wells)[:n]]


def failure(caplog, tmp_path, wells_table, platemap_table, settings, batch=None) -> str:
    """The one error line of a failed run; no output may exist."""
    wells, platemap = write_inputs(tmp_path, wells_table, platemap_table)
    batch_paths = [write_inputs(tmp_path, batch, platemap_table, "other")[0]] if batch is not None else []
    with caplog.at_level(logging.ERROR, logger="workflow_scripts.profiles"):
        assert run(tmp_path, wells, platemap, settings, batch=batch_paths) == 1
    assert not output(tmp_path).exists() and not list((tmp_path / "out" / "profiles").glob("*.parquet"))
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    return record.getMessage()


def test_empty_plate(shared_fixtures, tmp_path, caplog):
    message = failure(
        caplog, tmp_path, plate_wells(shared_fixtures).head(0), plate_map(shared_fixtures), {"annotation": ANNOTATION}
    )
    assert message.startswith("plate 218360: ") and "wells.parquet holds no well profiles" in message
    metadata_only = plate_wells(shared_fixtures)[
        ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well"]
    ]
    caplog.clear()
    message = failure(caplog, tmp_path / "2", metadata_only, plate_map(shared_fixtures), {"annotation": ANNOTATION})
    assert "(60 wells, 0 features)" in message


def test_wells_listed_twice(shared_fixtures, tmp_path, caplog):
    wells = few_features(plate_wells(shared_fixtures))
    twice = pd.concat([wells, wells.iloc[[3]]], ignore_index=True)
    message = failure(caplog, tmp_path, twice, plate_map(shared_fixtures), {"annotation": ANNOTATION})
    assert message == "plate 218360: the well profiles list well(s) B05 twice"
    caplog.clear()
    layout = plate_map(shared_fixtures)
    doubled = pd.concat([layout, layout.iloc[[0]].assign(Metadata_treatment="other")], ignore_index=True)
    message = failure(caplog, tmp_path / "2", wells, doubled, {"annotation": ANNOTATION})
    assert message.endswith(f"218360_map.txt: wells listed more than once: {layout['Metadata_Well'].iloc[0]}")


@pytest.mark.parametrize(
    ("settings", "batch_of", "named"),
    [
        (
            {"annotation": {"perturbation_columns": ["Metadata_treatment"]}},
            None,
            "plate 218360: no negative control wells",
        ),
        (
            {"annotation": ANNOTATION, "normalization": {"adjust": ["wellpos"]}},
            "another_batch",
            "other/cellprofiler/wells.parquet holds Metadata_Batch another_batch, not 2020_06_26",
        ),
        (
            {"annotation": ANNOTATION, "normalization": {"adjust": ["wellpos"]}},
            None,
            "plate 218360: wellpos needs the well profiles of at least two plates of the batch, got ['218360']",
        ),
    ],
)
def test_other_bad_input(shared_fixtures, tmp_path, caplog, settings, batch_of, named):
    wells = few_features(plate_wells(shared_fixtures))
    batch = wells.assign(Metadata_Batch=batch_of, Metadata_Plate="218361") if batch_of else None
    assert named in failure(caplog, tmp_path, wells, plate_map(shared_fixtures), settings, batch)
