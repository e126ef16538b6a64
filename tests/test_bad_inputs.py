"""Bad input, one row per kind: refused with a message naming the plate, file, key or column, or
recorded and skipped while the good data beside it is processed; and one workflow run in which a
plate the gallery lacks fails alone under ``--keep-going``.

Kinds other modules already cover are not repeated here: damaged TIFFs
(test_omezarr_bad_input, test_qc_plate), missing channels and wrong pixels
(test_load_data, test_omezarr_bad_input, test_dino_pipeline), checkpoints
that do not fit (test_dino_checkpoint), bad config through Snakemake
(test_workflow_config), platemaps (test_fetch_platemap, test_profiles_annotate).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.support.cellprofiler_synthetic import write_qc_fields
from tests.support.settings import section
from tests.support.workflow import plate_dir, run_snakemake
from tests.test_dino_checkpoint import meta_vit
from tests.test_load_data import _table
from workflow_scripts.cellprofiler.__main__ import main as cellprofiler_main
from workflow_scripts.cellprofiler.output import STAGE as CELLPROFILER
from workflow_scripts.cellprofiler.well_tables import read_well_table
from workflow_scripts.demo.build import BUCKET
from workflow_scripts.dino.checkpoint import CheckpointError, load_checkpoint
from workflow_scripts.errors import InputError
from workflow_scripts.fetch.backend import backend_key
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.fetch.load_data import LoadDataError, normalize_load_data
from workflow_scripts.fetch.plate import FetchSettings, fetch_plate
from workflow_scripts.fetch.platemap import platemap_wells
from workflow_scripts.omezarr.__main__ import main as omezarr_main
from workflow_scripts.omezarr.reader import open_plate
from workflow_scripts.plates import PlateTableError, read_plate_table
from workflow_scripts.profiles.annotate import NamedTable, annotate_profiles
from workflow_scripts.profiles.normalize import normalize_plate
from workflow_scripts.provenance import read_provenance
from workflow_scripts.settings import SettingsError, complete
from workflow_scripts.stage import StageCall

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
LOAD_DATA = "s3://gallery/cpg/source_1/workspace/load_data_csv/B1/P1/load_data.csv"


def plate_table(tmp: Path, *plates: str) -> Path:
    path = tmp / "plates.csv"
    rows = "".join(f"source_1,B1,{plate}\n" for plate in plates)
    path.write_text("Metadata_Source,Metadata_Batch,Metadata_Plate\n" + rows)
    return path


class Payload:
    """A pickled object whose unpickling would touch ``marker``: code a checkpoint must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def checkpoint(tmp: Path, content: object, save: Callable[[object, Path], None] = torch.save) -> Path:
    path = tmp / "weights.pth"
    save(content, path)
    return path


def truncated_checkpoint(tmp: Path) -> Path:
    path = checkpoint(tmp, {"cls_token": torch.zeros(1, 1, 384)})
    path.write_bytes(path.read_bytes()[:200])
    return path


def pickled(content: object, path: Path) -> None:
    path.write_bytes(pickle.dumps(content))


@dataclass(frozen=True)
class Refused:
    """A bad input: ``feed`` hands it to the function that must refuse it; the message holds ``named``
    (``{tmp}`` is the test's folder)."""

    feed: Callable[[Path], object]
    error: type[Exception]
    named: tuple[str, ...]


REFUSED = {
    "load_data-well-outside-plate": Refused(
        lambda tmp: normalize_load_data(_table(Metadata_Well="Q25"), LOAD_DATA, CHANNELS, plate="P1"),
        LoadDataError,
        (LOAD_DATA, "column Metadata_Well, row 2: 'Q25'"),
    ),
    "load_data-duplicate-site": Refused(
        lambda tmp: normalize_load_data(pd.concat([_table(), _table()]), LOAD_DATA, CHANNELS, plate="P1"),
        LoadDataError,
        (LOAD_DATA, "site 0 of well A01 is listed more than once"),
    ),
    "load_data-missing-column": Refused(
        lambda tmp: normalize_load_data(_table().drop(columns="Metadata_Site"), LOAD_DATA, CHANNELS),
        LoadDataError,
        (LOAD_DATA, "missing column(s) ['Metadata_Site']"),
    ),
    "platemap-well-outside-plate": Refused(
        lambda tmp: platemap_wells(pd.DataFrame({"well_position": ["A01", "Q25"], "broad_sample": "x"}), "map.txt"),
        InputError,
        ("map.txt, well_position, row 3: 'Q25' is not a well of a 384-well plate",),
    ),
    "well-table-well-outside-plate": Refused(
        lambda tmp: read_well_table(
            _parquet(tmp, pd.DataFrame({"Metadata_Well": ["A01", "Q25"], "Cells_Area": [1.0, 2.0]})), "profiles"
        ),
        InputError,
        ("{tmp}/wells.parquet, Metadata_Well: 'Q25' is not a well of a 384-well plate",),
    ),
    "plate-name-trailing-space": Refused(
        lambda tmp: read_plate_table(plate_table(tmp, "BR01", "BR02 "), "cpg-demo"),
        PlateTableError,
        ("plate table {tmp}/plates.csv, row 3: Metadata_Plate 'BR02 ' has leading or trailing whitespace",),
    ),
    "config-unknown-key": Refused(
        lambda tmp: complete({"fetch": {"concurency": 4}}),
        SettingsError,
        ("config key fetch.concurency is not a known key (did you mean fetch.concurrency?)",),
    ),
    "config-unknown-section": Refused(
        lambda tmp: complete({"feautres": ["dino"]}),
        SettingsError,
        ("config key feautres is not a known key (did you mean features?)",),
    ),
    "config-wrong-type": Refused(
        lambda tmp: complete({"fetch": {"concurrency": "many"}}),
        SettingsError,
        ("config key fetch.concurrency: 'many' is not of type 'integer'",),
    ),
    "config-wrong-type-in-list": Refused(
        lambda tmp: complete({"sample": {"wells": ["A01", "Q25"]}}),
        SettingsError,
        ("config key sample.wells.1: 'Q25'",),
    ),
    "checkpoint-pickled-object": Refused(
        lambda tmp: load_checkpoint(meta_vit("vit_small"), checkpoint(tmp, {"teacher": Payload(tmp / "ran")})),
        CheckpointError,
        ("checkpoint {tmp}/weights.pth: cannot be read: refused by torch.load(weights_only=True)",),
    ),
    "checkpoint-plain-pickle": Refused(
        lambda tmp: load_checkpoint(meta_vit("vit_small"), checkpoint(tmp, {"cls_token": torch.zeros(1)}, pickled)),
        CheckpointError,
        ("checkpoint {tmp}/weights.pth: cannot be read: refused by torch.load(weights_only=True)",),
    ),
    "checkpoint-truncated": Refused(
        lambda tmp: load_checkpoint(meta_vit("vit_small"), truncated_checkpoint(tmp)),
        CheckpointError,
        ("checkpoint {tmp}/weights.pth: cannot be read",),
    ),
    "checkpoint-wrong-layout": Refused(
        lambda tmp: load_checkpoint(
            meta_vit("vit_small"), checkpoint(tmp, {"model": {"cls_token": torch.zeros(1)}, "epoch": 3})
        ),
        CheckpointError,
        ("checkpoint {tmp}/weights.pth: expected a state dict of tensors", "entry 'model' is a dict"),
    ),
    "checkpoint-nan-weights": Refused(
        lambda tmp: load_checkpoint(
            meta_vit("vit_small"), checkpoint(tmp, {"teacher": {"backbone.cls_token": torch.full((1,), np.nan)}})
        ),
        CheckpointError,
        ("checkpoint {tmp}/weights.pth: tensor 'backbone.cls_token' holds NaN or infinite values",),
    ),
}


def _parquet(tmp: Path, table: pd.DataFrame) -> Path:
    path = tmp / "wells.parquet"
    table.to_parquet(path)
    return path


@pytest.mark.parametrize("case", list(REFUSED.values()), ids=list(REFUSED))
def test_bad_input_is_refused_naming_it(case: Refused, tmp_path):
    with pytest.raises(case.error) as error:
        case.feed(tmp_path)
    message = str(error.value)
    assert "\n" not in message, "one line"
    for named in case.named:
        assert named.format(tmp=tmp_path) in message


def test_a_pickled_payload_never_runs(tmp_path):
    with pytest.raises(CheckpointError):
        REFUSED["checkpoint-pickled-object"].feed(tmp_path)
    assert (tmp_path / "weights.pth").is_file() and not (tmp_path / "ran").exists()


# --- Kept: the bad part is recorded and named, the rest processed ---


def test_platemap_missing_wells_keeps_them_unannotated_and_names_them(caplog):
    wells = pd.DataFrame(
        {"Metadata_Source": "s", "Metadata_Batch": "b", "Metadata_Plate": "P1",
         "Metadata_Well": ["A01", "A02", "A03", "A04"], "f": [1.0, 2.0, 3.0, 4.0]}
    )  # fmt: skip
    platemap = pd.DataFrame({"Metadata_Well": ["A01", "A02", "A04"], "Metadata_pert_iname": ["DMSO", "x", "y"]})
    caplog.set_level(logging.WARNING)
    result = annotate_profiles(wells, NamedTable("map.txt", platemap), [], None, section("annotation"), "P1")
    out = result.table.set_index("Metadata_Well")
    assert list(out.index) == ["A01", "A02", "A03", "A04"] and out["f"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out.loc["A03", "Metadata_pert_iname"] is pd.NA and out.loc["A04", "Metadata_pert_iname"] == "y"
    assert result.report["unmatched_wells"] == {"map.txt": 1}
    assert result.report["unmatched_well_names"] == {"map.txt": ["A03"]}
    assert "plate P1: 1 of 4 wells not matched by map.txt, kept without its annotation: A03" in caplog.messages


def test_cellprofiler_nan_columns_are_kept_and_named(s3_server, tmp_path, caplog):
    """The gallery's well table of a plate, with a feature NaN in every well and one NaN in one well with cells."""
    plate = PlateRef("cpg-demo", "source_1", "B1", "P1")
    wells = ["A01", "A02", "A03", "B01"]
    table = pd.DataFrame(
        {
            "Metadata_Well": wells,
            "Metadata_Object_Count": [10, 12, 0, 9],  # A03 has no cells: NaN throughout, flagged, not named
            "Cells_AreaShape_Area": [5.0, 6.0, np.nan, 7.0],
            "Cells_Texture_Empty": np.nan,
            "Nuclei_Intensity_Partial": [1.0, np.nan, np.nan, 2.0],
        }
    )
    bucket = "bad-inputs-nan"
    s3_server.admin_client().create_bucket(Bucket=bucket, ACL="public-read")
    body = _parquet(tmp_path, table).read_bytes()
    s3_server.admin_client().put_object(Bucket=bucket, Key=backend_key(plate, "profiles"), Body=body, ACL="public-read")
    config = {"gallery": {"bucket": bucket, "endpoint_url": s3_server.endpoint_url},
              "cache_dir": str(tmp_path / "cache"), "cellprofiler": {"sources": ["profiles"]}}  # fmt: skip
    qc = write_qc_fields(tmp_path / "fields.parquet", "P1", [(well, "1") for well in wells])
    out = tmp_path / "cellprofiler" / "wells.parquet"
    caplog.set_level(logging.WARNING)
    code = cellprofiler_main(
        ["--settings", json.dumps(config), "--plate", "cpg-demo/source_1/B1/P1", "--input", f"qc={qc}",
         "--output", f"backend={tmp_path / 'cellprofiler.parquet'}", "--output", f"wells={out}"]
    )  # fmt: skip
    assert code == 0
    written = pd.read_parquet(out)
    assert written["Metadata_Well"].tolist() == wells
    assert written["Metadata_Flag_NoCells"].tolist() == [False, False, True, False]
    assert written["Cells_Texture_Empty"].isna().all()
    assert read_provenance(out, CELLPROFILER)["nan_features"] == {
        "wells_with_cells": 3,
        "in_every_well": ["Cells_Texture_Empty"],
        "in_some_wells": {"Nuclei_Intensity_Partial": 1},
    }
    assert (
        "plate P1: 1 feature(s) have no value in any of the 3 wells with cells, kept as NaN: Cells_Texture_Empty"
        in caplog.messages
    )
    assert (
        "plate P1: 1 feature(s) have no value in some wells with cells, NaN there: Nuclei_Intensity_Partial (1 wells)"
        in caplog.messages
    )


def test_profile_feature_without_values_is_nan_and_listed():
    """Per plate a feature without values on the controls is NaN and listed; feature selection drops it."""
    profiles = pd.DataFrame(
        {
            "Metadata_PertType": ["negcon", "negcon", "negcon", "trt"],
            "Metadata_Well": ["A01", "A02", "A03", "A04"],
            "f_empty": np.nan,
            "f_ok": [1.0, 2.0, 4.0, 8.0],
        }
    )
    normalized = normalize_plate(profiles, ["f_empty", "f_ok"], section("normalization"), "P1")
    assert np.isnan(normalized.values[:, 0]).all() and np.isfinite(normalized.values[:, 1]).all()
    assert normalized.report["no_spread_features"] == ["f_empty"]


# --- Plate names with spaces, or digits only ---


@pytest.mark.parametrize("name", ["BR 0042", "000123"])
def test_plate_names_with_spaces_or_digits_only_go_through_fetch_and_conversion(
    demo_gallery, s3_server, tmp_path, name
):
    """The name stays text (no 123 for 000123) from the plate table to the stage call, LoadData and OME-Zarr."""
    layout, root = demo_gallery
    demo = layout.plates[0]
    plate_id = f"{layout.dataset}/{demo.source}/{demo.batch}/{name}"
    assert read_plate_table(plate_table(tmp_path, name), layout.dataset)["Metadata_Plate"].tolist() == [name]
    plate = StageCall({}, {}, {}, plate_id, 1).plate
    assert plate == PlateRef(layout.dataset, demo.source, demo.batch, name)
    source = next((root / "gallery").rglob(f"{demo.plate}/load_data_with_illum.csv"))
    copied = pd.read_csv(source, dtype=str).assign(Metadata_Plate=name)
    s3_server.admin_client().put_object(
        Bucket=BUCKET, Key=plate.load_data_keys()[0], Body=copied.to_csv(index=False).encode(), ACL="public-read"
    )
    config = {"cache_dir": str(tmp_path / "cache"), "channels": CHANNELS, "sample": {"wells": ["A01", "B02"], "sites": [1]},
              "gallery": {"bucket": BUCKET, "endpoint_url": s3_server.endpoint_url}}  # fmt: skip
    folder = tmp_path / name
    fetch_plate(
        plate, FetchSettings.from_config(complete(config)), folder / "load_data.parquet", folder / "manifest.parquet"
    )
    assert pd.read_parquet(folder / "load_data.parquet")["Metadata_Plate"].unique().tolist() == [name]
    zarr = folder / f"{name}.ome.zarr"
    code = omezarr_main(
        ["--settings", json.dumps(config), "--plate", plate_id,
         "--input", f"load_data={folder / 'load_data.parquet'}", "--output", f"plate={zarr}"]
    )  # fmt: skip
    assert code == 0
    converted = open_plate(zarr)
    assert converted.name == name and sorted(converted.wells) == ["A01", "B02"]
    assert all(info.ok for info in converted.iter_fields())


# --- One workflow run: a plate the gallery lacks among good plates ---


@pytest.mark.workflow
def test_a_plate_the_gallery_lacks_fails_alone_under_keep_going(demo_gallery, s3_server, tmp_path):
    layout, _ = demo_gallery
    good = [layout.plates[0], layout.plates[1]]
    absent = "ABSENT 0042"  # a space, too: the name must reach the job intact to be named
    plates = pd.DataFrame(
        [{"Metadata_Source": p.source, "Metadata_Batch": p.batch, "Metadata_Plate": p.plate} for p in good]
        + [{"Metadata_Source": good[0].source, "Metadata_Batch": good[0].batch, "Metadata_Plate": absent}]
    ).assign(Metadata_PlateType="COMPOUND")
    plates.to_csv(tmp_path / "plates.csv", index=False)
    results = tmp_path / "results"
    result = run_snakemake(
        results, tmp_path / "plates.csv", s3_server.endpoint_url, "--keep-going",
        config={"features": ["cellprofiler"]}, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    looked_in = f"{layout.dataset}/{good[0].source}/workspace/load_data_csv/{good[0].batch}/{absent}/"
    logs = [path.read_text() for path in (results / "logs").rglob("*.log") if absent in str(path)]
    errors = [line for text in logs for line in text.splitlines() if " ERROR " in line]
    assert any(f"plate {absent}: no LoadData in s3://{BUCKET}/" in line and looked_in in line for line in errors), logs
    assert absent in result.stderr
    per_plate = [
        "load_data.parquet", "fetch/manifest.parquet", "fetch/cellprofiler.parquet", "fetch/platemap.parquet",
        "qc/fields.parquet", "cellprofiler/wells.parquet",
        "profiles/cellprofiler.parquet", "profiles/cellprofiler_annotated.parquet",
    ]  # fmt: skip
    for demo in good:
        folder = plate_dir(results, layout.dataset, demo.source, demo.batch, demo.plate)
        assert (folder / f"{demo.plate}.ome.zarr" / "zarr.json").is_file(), demo.plate
        for name in per_plate:
            assert (folder / name).is_file(), (demo.plate, name)
    bad = plate_dir(results, layout.dataset, good[0].source, good[0].batch, absent)
    assert not bad.exists() or not any(path.is_file() for path in bad.rglob("*")), "nothing of the absent plate"
    assert not (results / "collection").exists(), "nothing across plates while one plate is missing"
