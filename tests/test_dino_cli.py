"""``python -m workflow_scripts.dino``: outputs, metadata, QC handling, model provenance, refusals."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from tests.support.dino_synthetic import sparse_nuclei_field, write_plate
from workflow_scripts.dino.__main__ import main
from workflow_scripts.dino.output import STAGE
from workflow_scripts.dino.vit import build_vit
from workflow_scripts.provenance import read_provenance

PLATE_CHANNELS = ("DNA", "AGP", "RNA", "ER", "Mito")
PLATE = "cpg-test/source_9/2024_01_01/0123"  # an all-digit plate name stays text


def field(seed: int, dense: list[int]) -> np.ndarray:
    """A 448-pixel field: 4 crops, so a ViT-S run stays cheap on CPU."""
    return sparse_nuclei_field(np.random.default_rng(seed), dense, PLATE_CHANNELS.index("DNA"), size=448)


@pytest.fixture(scope="module")
def plate(tmp_path_factory):
    wells = {"A01": [field(0, [0]), field(1, [1, 2])], "B02": [field(2, [])]}
    return write_plate(tmp_path_factory.mktemp("cli") / "0123.ome.zarr", wells, PLATE_CHANNELS)


@pytest.fixture(scope="module")
def qc_table(tmp_path_factory):
    """QC excludes A01 field 1; sites are numbered from 1 and differ from the field index."""
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
            "qc_excluded": [False, True, False],
        }
    )
    path = tmp_path_factory.mktemp("qc") / "fields.parquet"
    table.to_parquet(path)
    return path


@pytest.fixture(scope="module")
def qc_kept(tmp_path_factory, qc_table):
    """The same flags from a QC run with ``qc.exclude_flagged: false``: nothing excluded."""
    path = tmp_path_factory.mktemp("qc-kept") / "fields.parquet"
    pd.read_parquet(qc_table).assign(qc_excluded=False).to_parquet(path)
    return path


def call(plate, qc, out, **embedding) -> int:
    """The stage as its rule calls it, with ``embedding`` settings on top of small test ones."""
    settings = {"embedding": {"workers": 2, "batch_size": 6, **embedding}, "cache_dir": str(out / "cache")}
    return main([
        "--settings", json.dumps(settings),
        "--input", f"plate={plate}", "--input", f"qc={qc}",
        "--output", f"wells={out / 'wells.parquet'}", "--output", f"fields={out / 'fields.parquet'}",
        "--plate", PLATE,
    ])


def run(plate, qc, out, **embedding) -> tuple[pd.DataFrame, pd.DataFrame]:
    assert call(plate, qc, out, **embedding) == 0
    return pd.read_parquet(out / "wells.parquet"), pd.read_parquet(out / "fields.parquet")


def test_random_weights_with_qc_exclusion(tmp_path, plate, qc_table):
    wells, fields = run(plate, qc_table, tmp_path, allow_random_weights=True)

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

    provenance = read_provenance(tmp_path / "wells.parquet", STAGE)
    assert provenance == read_provenance(tmp_path / "fields.parquet", STAGE)
    assert provenance["model"] == "random weights" and provenance["checkpoint_sha256"] is None
    assert provenance["recipe"]["channels"] == ["Mito", "AGP", "RNA", "ER", "DNA"]
    assert provenance["qc_excluded_fields"] == 1 and provenance["precision"] == "float32"
    assert set(provenance["versions"]) >= {"torch", "numpy", "zarr", "python"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["fields.parquet", "wells.parquet"]


def test_checkpoint_is_hashed_and_named(tmp_path, plate, qc_kept):
    checkpoint = tmp_path / "dino.pth"
    model = build_vit("vit_small", seed=11)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    out = tmp_path / "out"

    wells, fields = run(plate, qc_kept, out, checkpoint=str(checkpoint))

    assert (wells["Metadata_Model"] == f"vit_small sha256:{digest}").all()
    provenance = read_provenance(out / "wells.parquet", STAGE)
    assert provenance["checkpoint_sha256"] == digest and provenance["model"] == "checkpoint"
    assert wells.set_index("Metadata_Well")["Metadata_n_fields_excluded"].to_dict() == {"A01": 0, "B02": 0}
    assert fields["Metadata_Site"].tolist() == ["1", "2", "5"]


def test_no_checkpoint_and_no_permission_writes_nothing(tmp_path, plate, qc_table, caplog):
    with caplog.at_level(logging.ERROR):
        assert call(plate, qc_table, tmp_path) == 1
    assert "no embedding checkpoint" in caplog.text
    assert not list(tmp_path.glob("*.parquet"))


def test_qc_table_of_another_plate_is_refused(tmp_path, plate, qc_table, caplog):
    other = pd.read_parquet(qc_table).assign(Metadata_Plate="9999")
    other.to_parquet(tmp_path / "other.parquet")
    with caplog.at_level(logging.ERROR):
        assert call(plate, tmp_path / "other.parquet", tmp_path, allow_random_weights=True) == 1
    assert re.search(r"other.parquet: Metadata_Plate \['9999'\] does not match plate '0123'", caplog.text)


@pytest.mark.parametrize(
    "embedding, message",
    [
        ({"mean": [0.1] * 5}, "config keys embedding.mean and embedding.std go together"),
        ({"batch_size": 0}, "config key embedding.batch_size: 0 is less than the minimum of 1"),
        ({"device": "tpu"}, "config key embedding.device"),
    ],
)
def test_setting_errors_name_the_key(tmp_path, plate, qc_table, caplog, embedding, message):
    with caplog.at_level(logging.ERROR):
        assert call(plate, qc_table, tmp_path, allow_random_weights=True, **embedding) == 1
    assert message in caplog.text
    assert not list(tmp_path.glob("*.parquet"))


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "workflow_scripts.dino", "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    assert "--settings" in done.stdout and "--input" in done.stdout
