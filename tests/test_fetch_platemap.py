"""Platemaps found through the batch's barcode table, from a real S3 server or a
local folder (JUMP-Target and JUMP-MOA platemaps of ../shared/fixtures), and
annotation tables read as text through the fetch engine."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
import pytest

from workflow_scripts.errors import InputError
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.fetch.platemap import STAGE, fetch_platemap, fetch_tables, platemap_wells
from workflow_scripts.provenance import read_provenance
from workflow_scripts.settings import complete

DATASET, SOURCE, BATCH = "cpg0000-jump-pilot", "source_4", "2020_11_04_CPJUMP1"
TARGET_MAP = "jump-labels/JUMP-Target/JUMP-Target-1_compound_platemap.tsv"
MOA_MAP = "jump-labels/JUMP-MOA/JUMP-MOA_compound_platemap.tsv"
_buckets = itertools.count()


def new_bucket(s3_server) -> str:
    """A fresh public-read bucket per test: the server is shared by the session."""
    name = f"platemap-{next(_buckets)}"
    s3_server.admin_client().create_bucket(Bucket=name, ACL="public-read")
    return name


def config(tmp_path: Path, bucket: str = "unused", endpoint: str | None = None, platemaps: str | None = None) -> dict:
    """The sections ``fetch_platemap`` reads, completed from the schema."""
    return complete(
        {
            "gallery": {"bucket": bucket, "endpoint_url": endpoint},
            "cache_dir": str(tmp_path / "cache"),
            "annotation": {"platemaps": platemaps},
        }
    )


def barcodes(*rows: tuple[str, str]) -> bytes:
    return pd.DataFrame(rows, columns=["Assay_Plate_Barcode", "Plate_Map_Name"]).to_csv(index=False).encode()


def upload_batch(s3_server, bucket: str, maps: dict[str, bytes], barcode_rows: list[tuple[str, str]]) -> str:
    """A batch's platemap folder in the gallery layout; its key prefix."""
    client, prefix = s3_server.admin_client(), f"{DATASET}/{SOURCE}/workspace/metadata/platemaps/{BATCH}"
    client.put_object(
        Bucket=bucket, Key=f"{prefix}/barcode_platemap.csv", Body=barcodes(*barcode_rows), ACL="public-read"
    )
    for name, body in maps.items():
        client.put_object(Bucket=bucket, Key=f"{prefix}/platemap/{name}.txt", Body=body, ACL="public-read")
    return prefix


def write_batch(root: Path, maps: dict[str, bytes], barcode_rows: list[tuple[str, str]]) -> Path:
    """The same layout in a local folder (``annotation.platemaps``)."""
    (root / BATCH / "platemap").mkdir(parents=True)
    (root / BATCH / "barcode_platemap.csv").write_bytes(barcodes(*barcode_rows))
    for name, body in maps.items():
        (root / BATCH / "platemap" / f"{name}.txt").write_bytes(body)
    return root


def test_gallery_platemap_through_s3(shared_fixtures, s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    maps = {
        "JUMP-Target-1_compound_platemap": (shared_fixtures / TARGET_MAP).read_bytes(),
        "JUMP-MOA_compound_platemap": (shared_fixtures / MOA_MAP).read_bytes(),
    }
    prefix = upload_batch(
        s3_server,
        bucket,
        maps,
        [("BR00116991", "JUMP-Target-1_compound_platemap"), ("0042", "JUMP-MOA_compound_platemap")],
    )
    out = tmp_path / "fetch" / "platemap.parquet"
    wells = fetch_platemap(
        PlateRef(DATASET, SOURCE, BATCH, "BR00116991"), config(tmp_path, bucket, s3_server.endpoint_url), out
    )

    source = pd.read_csv(shared_fixtures / TARGET_MAP, sep="\t", dtype=str)
    written = pd.read_parquet(out)
    pd.testing.assert_frame_equal(written, wells)
    assert list(written.columns) == [
        "Metadata_Well",
        "Metadata_broad_sample",
        "Metadata_solvent",
        "Metadata_Plate_Map_Name",
    ]
    assert all(written[c].dtype == "string" for c in written.columns)
    assert list(written["Metadata_Well"]) == list(source["well_position"])
    assert written["Metadata_broad_sample"].isna().sum() == source["broad_sample"].isna().sum() > 0
    assert set(written["Metadata_Plate_Map_Name"]) == {"JUMP-Target-1_compound_platemap"}
    record = read_provenance(out, STAGE)
    assert record["platemap"] == f"s3://{bucket}/{prefix}/platemap/JUMP-Target-1_compound_platemap.txt"
    assert record["wells"] == 384

    digits = fetch_platemap(
        PlateRef(DATASET, SOURCE, BATCH, "0042"),
        config(tmp_path, bucket, s3_server.endpoint_url),
        tmp_path / "p2.parquet",
    )
    assert digits["Metadata_broad_sample"].iloc[0] == "BRD-K80935598-001-01-1"


def test_plate_missing_from_barcode_table_names_plate_and_where(shared_fixtures, s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    prefix = upload_batch(s3_server, bucket, {}, [("BR00116991", "JUMP-Target-1_compound_platemap")])
    out = tmp_path / "platemap.parquet"
    with pytest.raises(InputError) as error:
        fetch_platemap(
            PlateRef(DATASET, SOURCE, BATCH, "BR99999999"), config(tmp_path, bucket, s3_server.endpoint_url), out
        )
    assert "BR99999999" in str(error.value) and f"s3://{bucket}/{prefix}/barcode_platemap.csv" in str(error.value)
    assert not out.exists()


def test_platemap_file_missing_names_plate_and_key(s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    upload_batch(s3_server, bucket, {}, [("BR00116991", "absent_map")])
    with pytest.raises(Exception, match=r"plate BR00116991: .*platemap/absent_map\.txt"):
        fetch_platemap(
            PlateRef(DATASET, SOURCE, BATCH, "BR00116991"),
            config(tmp_path, bucket, s3_server.endpoint_url),
            tmp_path / "p.parquet",
        )


def test_local_folder_and_duplicate_wells(shared_fixtures, tmp_path):
    moa = pd.read_csv(shared_fixtures / MOA_MAP, sep="\t", dtype=str)
    twice = pd.concat([moa, moa.iloc[[5, 9]].assign(well_position=["a1", "B2"])])
    maps = {"moa": moa.to_csv(sep="\t", index=False).encode(), "twice": twice.to_csv(sep="\t", index=False).encode()}
    root = write_batch(tmp_path / "platemaps", maps, [("P1", "moa"), ("P2", "twice")])
    settings = config(tmp_path, platemaps=str(root))

    wells = fetch_platemap(PlateRef(DATASET, SOURCE, BATCH, "P1"), settings, tmp_path / "p1.parquet")
    assert len(wells) == 384 and wells["Metadata_Well"].iloc[0] == "A01"

    out = tmp_path / "p2.parquet"
    with pytest.raises(InputError) as error:
        fetch_platemap(PlateRef(DATASET, SOURCE, BATCH, "P2"), settings, out)
    assert str(root / BATCH / "platemap" / "twice.txt") in str(error.value) and "A01, B02" in str(error.value)
    assert not out.exists()


def test_platemap_columns_that_differ_in_case_are_merged(tmp_path):
    raw = pd.DataFrame(
        {"well_position": ["A1", "A2"], "moa": ["x", None], "MoA": ["x", "y"], "plate_map_name": ["m", "m"]}
    )
    wells = platemap_wells(raw.astype("string"), "map.txt")
    assert list(wells.columns) == ["Metadata_Well", "Metadata_MoA", "Metadata_plate_map_name"]
    assert list(wells["Metadata_MoA"]) == ["x", "y"]
    with pytest.raises(InputError, match="map.txt: columns 'Metadata_moa' and 'Metadata_MoA'"):
        platemap_wells(raw.assign(MoA=["z", "y"]).astype("string"), "map.txt")


def test_tables_from_s3_and_local_are_text(shared_fixtures, s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    controls = shared_fixtures / "jump-metadata/metadata/perturbation_control.csv"
    orf = shared_fixtures / "jump-metadata/metadata/orf.csv.gz"
    s3_server.admin_client().put_object(Bucket=bucket, Key="meta/orf.csv.gz", Body=orf.read_bytes(), ACL="public-read")
    local = tmp_path / "controls.parquet"
    pd.read_csv(controls).assign(number=7).to_parquet(local)
    tsv = tmp_path / "plates.tsv"
    tsv.write_text("Metadata_Plate\tn\n00123\t4\n")

    tables = fetch_tables(
        [f"s3://{bucket}/meta/orf.csv.gz", str(local), str(tsv)], config(tmp_path, bucket, s3_server.endpoint_url)
    )
    assert [len(t) for t in tables] == [15132, 18, 1]
    assert all(dtype == "string" for table in tables for dtype in table.dtypes)
    assert tables[0]["Metadata_NCBI_Gene_ID"].iloc[0] == "9" and tables[1]["number"].iloc[0] == "7"
    assert tables[2]["Metadata_Plate"].iloc[0] == "00123"
    with pytest.raises(InputError, match="nope.csv: no such file"):
        fetch_tables([str(tmp_path / "nope.csv")], config(tmp_path))
    (tmp_path / "table.xlsx").write_bytes(b"PK")
    with pytest.raises(InputError, match="table.xlsx: not a table"):
        fetch_tables([str(tmp_path / "table.xlsx")], config(tmp_path))
