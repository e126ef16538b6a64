"""``python -m workflow_scripts.embed``: outputs, metadata, QC handling, model provenance, refusals."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from workflow_scripts.embed.__main__ import main
from workflow_scripts.embed.outputs import read_provenance
from workflow_scripts.embed.synthetic import sparse_nuclei_field, write_plate
from workflow_scripts.embed.vit import build_vit

PLATE_CHANNELS = ("DNA", "AGP", "RNA", "ER", "Mito")
KEYS = ["--source", "source_9", "--batch", "2024_01_01", "--plate", "0123"]  # an all-digit plate name stays text


def field(seed: int, dense: list[int]) -> np.ndarray:
    """A 448-pixel field: 4 crops, so a ViT-S run stays cheap on CPU."""
    return sparse_nuclei_field(np.random.default_rng(seed), dense, PLATE_CHANNELS.index("DNA"), size=448)


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    wells = {"A01": [field(0, [0]), field(1, [1, 2])], "B02": [field(2, [])]}
    return write_plate(tmp_path_factory.mktemp("cli") / "0123.ome.zarr", wells, PLATE_CHANNELS)


@pytest.fixture(scope="module")
def qc_table(tmp_path_factory):
    """QC flags A01 field 1; sites are numbered from 1 and differ from the field index."""
    table = pd.DataFrame(
        {
            "Metadata_Source": "source_9",
            "Metadata_Batch": "2024_01_01",
            "Metadata_Plate": "0123",
            "Metadata_Well": ["A01", "A01", "B02"],
            "Metadata_Site": ["1", "2", "5"],
            "Metadata_Field": [0, 1, 0],
            "qc_pass": [True, False, True],
            "qc_reason": ["", "out of focus", ""],
        }
    )
    path = tmp_path_factory.mktemp("qc") / "fields.parquet"
    table.to_parquet(path)
    return path


def run(plate, out, *extra: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    args = ["--plate-zarr", str(plate), "--out-wells", str(out / "wells.parquet")]
    args += ["--out-fields", str(out / "fields.parquet"), *KEYS, "--workers", "2", "--batch-size", "6", *extra]
    assert main(args) == 0
    return pd.read_parquet(out / "wells.parquet"), pd.read_parquet(out / "fields.parquet")


def test_random_weights_with_qc_exclusion(tmp_path, plate, qc_table):
    wells, fields = run(plate, tmp_path, "--allow-random-weights", "--qc-fields", str(qc_table), "--exclude-flagged")

    features = [c for c in wells.columns if c.startswith("dino_")]
    assert features == [f"dino_{i:03d}" for i in range(384)]
    assert all(wells[c].dtype == np.float64 for c in features) and not wells[features].isna().any().any()
    for column in ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well", "Metadata_Model"]:
        assert wells[column].dtype == "string" and fields[column].dtype == "string"
    assert wells["Metadata_Plate"].tolist() == ["0123", "0123"]
    assert wells["Metadata_Model"].str.contains("random weights").all()
    by_well = wells.set_index("Metadata_Well")
    assert by_well["Metadata_n_fields"].to_dict() == {"A01": 1, "B02": 1}
    assert by_well["Metadata_n_fields_excluded"].to_dict() == {"A01": 1, "B02": 0}
    assert by_well["Metadata_n_crops"].to_dict() == {"A01": 1, "B02": 1}
    assert fields[["Metadata_Well", "Metadata_Site", "Metadata_Field"]].values.tolist() == [
        ["A01", "1", 0],
        ["B02", "5", 0],
    ]

    provenance = read_provenance(tmp_path / "wells.parquet")
    assert provenance == read_provenance(tmp_path / "fields.parquet")
    assert provenance["model"] == "random weights" and provenance["checkpoint_sha256"] is None
    assert provenance["recipe"]["channels"] == ["Mito", "AGP", "RNA", "ER", "DNA"]
    assert provenance["exclude_flagged"] is True and provenance["precision"] == "float32"
    assert set(provenance["versions"]) >= {"torch", "numpy", "zarr", "python"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fields.parquet", "wells.parquet"]


def test_checkpoint_is_hashed_and_named(tmp_path, plate, qc_table):
    checkpoint = tmp_path / "dino.pth"
    model = build_vit("vit_small", seed=11)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    out = tmp_path / "out"

    wells, fields = run(plate, out, "--checkpoint", str(checkpoint), "--qc-fields", str(qc_table))

    assert (wells["Metadata_Model"] == f"vit_small sha256:{digest}").all()
    provenance = read_provenance(out / "wells.parquet")
    assert provenance["checkpoint_sha256"] == digest and provenance["model"] == "checkpoint"
    assert wells.set_index("Metadata_Well")["Metadata_n_fields_excluded"].to_dict() == {"A01": 0, "B02": 0}
    assert fields["Metadata_Site"].tolist() == ["1", "2", "5"]


def test_no_checkpoint_and_no_permission_writes_nothing(tmp_path, plate):
    with pytest.raises(ValueError, match="no embedding checkpoint"):
        run(plate, tmp_path)
    assert not list(tmp_path.iterdir())


def test_qc_table_of_another_plate_is_refused(tmp_path, plate, qc_table):
    other = pd.read_parquet(qc_table).assign(Metadata_Plate="9999")
    other.to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match=r"other.parquet: Metadata_Plate \['9999'\] does not match plate '0123'"):
        run(plate, tmp_path, "--allow-random-weights", "--qc-fields", str(tmp_path / "other.parquet"))


def test_argument_errors_exit_with_usage(tmp_path, plate):
    for extra in (["--exclude-flagged"], ["--mean", "0.1", "0.2"], ["--batch-size", "0"]):
        with pytest.raises(SystemExit) as error:
            run(plate, tmp_path, "--allow-random-weights", *extra)
        assert error.value.code == 2


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "workflow_scripts.embed", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "--plate-zarr" in done.stdout and "--allow-random-weights" in done.stdout
