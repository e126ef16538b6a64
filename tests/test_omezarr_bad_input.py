"""Bad files make failed channels, not failed fields or plates; bad tables and all-bad plates are errors."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest
import tifffile

from tests.support.sample_plate import conversion_status, real_fields, sample_fields, truncate, write_fetched_plate
from tests.support.settings import conversion_options
from workflow_scripts.omezarr.__main__ import main as convert_main
from workflow_scripts.omezarr.reader import open_plate
from workflow_scripts.omezarr.writer import convert_plate, temp_path

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
SHAPE = (96, 128)


@pytest.fixture(scope="module")
def real(shared_fixtures):
    return real_fields(shared_fixtures / "jump-pixels", CHANNELS)[0]


def _corrupt(path):
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def _zero_fill(path):
    path.write_bytes(bytes(path.stat().st_size))


def _wrong_shape(path):
    tifffile.imwrite(path, np.ones((SHAPE[0] + 8, SHAPE[1]), np.uint16))


def _wrong_dtype(path):
    tifffile.imwrite(path, np.ones(SHAPE, np.uint8))


# (damage, expected reason, the detail names)
DAMAGE = {
    ("A01", "2", "ER"): (truncate, "unreadable", "failed to read"),
    ("A02", "1", "Mito"): (_corrupt, "unreadable", "Mito:"),
    ("A02", "2", "DNA"): (_zero_fill, "unreadable", "DNA:"),  # zero-filled file: not even a TIFF header
    ("B01", "1", "AGP"): (lambda path: path.unlink(), "missing file", "does not exist"),
    ("B01", "2", "RNA"): (_wrong_shape, "shape mismatch", f"{(SHAPE[0] + 8, SHAPE[1])}"),
    ("B02", "1", "ER"): (_wrong_dtype, "dtype mismatch", "uint8"),
}


@pytest.fixture(scope="module")
def damaged(real, tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    plate = write_fetched_plate(root, sample_fields(real, ["A01", "A02", "B01", "B02"], ["1", "2"], SHAPE), CHANNELS)
    for (well, site, channel), (damage, _, _) in DAMAGE.items():
        damage(plate.tiff(well, site, channel))
    return plate


def test_plate_converts_and_records_each_failure(damaged, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    result = convert_plate(damaged.load_data, damaged.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())
    reader = open_plate(result.output)
    failed = {(info.well, info.site): info for info in reader.iter_fields() if not info.ok}
    assert set(failed) == {(well, site) for well, site, _ in DAMAGE}
    for (well, site, channel), (_, reason, detail) in DAMAGE.items():
        info = failed[(well, site)]
        assert info.reason == reason
        assert detail in info.detail and f"{channel}:" in info.detail
        (failure,) = conversion_status(result.output, well, info.field)["failed_channels"]
        assert (failure["channel"], failure["reason"]) == (channel, reason)
        assert f"{channel}: {failure['detail']}" == info.detail
        stored = reader.read_field(well, info.field)
        for c, name in enumerate(CHANNELS):
            if name == channel:
                assert not stored[c].any(), "the failed channel is zeros"
            else:
                np.testing.assert_array_equal(stored[c], tifffile.imread(damaged.tiff(well, site, name)))
        assert any(well in m and reason in m and f"zeros in {channel}" in m for m in caplog.messages), (
            f"log names {well} {reason} {channel}"
        )
    good = reader.read_field("B02", 1)
    np.testing.assert_array_equal(good[0], tifffile.imread(damaged.tiff("B02", "2", "DNA")))
    assert result.fields["failed"] == len(DAMAGE) and result.fields["total"] == 8
    assert dict(reader.root.attrs)["field_summary"]["failed_by_reason"] == {
        "dtype mismatch": 1,
        "missing file": 1,
        "shape mismatch": 1,
        "unreadable": 3,
    }
    assert result.fields["failed_by_channel"] == {"AGP": 1, "DNA": 1, "ER": 2, "Mito": 1, "RNA": 1}
    assert conversion_status(result.output, "B02", 1)["failed_channels"] == []


def test_zero_filled_pixels_are_converted_for_qc_to_judge(real, tmp_path):
    fields = sample_fields(real, ["A01"], ["1", "2"], SHAPE)
    fields[("A01", "2")][:] = 0
    plate = write_fetched_plate(tmp_path, fields, CHANNELS)
    result = convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())
    assert all(info.ok for info in open_plate(result.output).iter_fields())


def test_plate_where_every_field_keeps_a_channel_converts(real, tmp_path):
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["A01"], ["1", "2"], SHAPE), CHANNELS)
    for channel in CHANNELS[1:]:
        truncate(plate.tiff("A01", "1", channel))
    plate.tiff("A01", "2", "Mito").unlink()
    result = convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())
    assert result.fields["failed"] == 2 and result.fields["failed_by_channel"]["Mito"] == 2
    np.testing.assert_array_equal(
        open_plate(result.output).read_field("A01", 0)[0], tifffile.imread(plate.tiff("A01", "1", "DNA"))
    )


def test_plate_where_every_field_fails_is_an_error_naming_it(real, tmp_path):
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["A01"], ["1", "2"], SHAPE), CHANNELS, plate="BR0042")
    for site in ["1", "2"]:
        for channel in CHANNELS:
            truncate(plate.tiff("A01", site, channel))
    plate.tiff("A01", "2", "Mito").unlink()  # a second reason within a failed field
    output = tmp_path / "BR0042.ome.zarr"
    with pytest.raises(ValueError, match=r"plate BR0042: every one of its 2 fields failed"):
        convert_plate(plate.load_data, plate.cache_dir, output, CHANNELS, conversion_options())
    assert not output.exists() and not temp_path(output).exists()


def test_cli_exits_nonzero_naming_the_plate(real, tmp_path, caplog):
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["A01"], ["1"], SHAPE), CHANNELS, plate="BR0043")
    for channel in CHANNELS:
        truncate(plate.tiff("A01", "1", channel))
    plate.tiff("A01", "1", "AGP").unlink()
    code = convert_main(
        [
            "--settings",
            json.dumps({"channels": CHANNELS, "cache_dir": str(plate.cache_dir)}),
            "--input",
            f"load_data={plate.load_data}",
            "--output",
            f"plate={tmp_path / 'out.ome.zarr'}",
        ]
    )
    assert code == 1
    assert any("plate BR0043" in m for m in caplog.messages)


def test_eight_bit_plate_is_rejected_up_front(tmp_path):
    fields = {("A01", "1"): np.ones((len(CHANNELS), *SHAPE), np.uint8)}
    plate = write_fetched_plate(tmp_path, fields, CHANNELS, plate="P8")
    with pytest.raises(ValueError, match=r"plate P8: TIFFs are uint8, expected uint16"):
        convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.drop(columns="URL_OrigMito"), r"missing columns \['URL_OrigMito'\]"),
        (lambda t: t.assign(Metadata_Plate=["P1", "P2"]), r"expected one plate, column Metadata_Plate"),
        (lambda t: t.assign(Metadata_Site="1"), r"plate PLATE1: well/site listed twice"),
        (lambda t: t.assign(Metadata_Well=["A01", "Z99"]), r"plate PLATE1: well 'Z99'"),
        (lambda t: t.assign(URL_OrigDNA=[None, "s3://b/k"]), r"empty values in column URL_OrigDNA"),
        (lambda t: t.assign(Metadata_ImageResolutionX=["5e-7", "6e-7"]), r"Metadata_ImageResolutionX must be one"),
        (lambda t: t.assign(Metadata_ImageResolutionX="0.6 um"), r"plate PLATE1: Metadata_ImageResolutionX is not a"),
        (lambda t: t.assign(URL_IllumDNA="s3://b/i.npy"), r"illumination columns incomplete"),
    ],
)
def test_malformed_load_data_is_an_error_naming_the_problem(real, tmp_path, edit, message):
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["A01"], ["1", "2"], SHAPE), CHANNELS)
    edit(pd.read_parquet(plate.load_data)).to_parquet(plate.load_data)
    with pytest.raises(ValueError, match=message):
        convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="shard_per_field needs NGFF 0.5"):
        conversion_options(ngff_version="0.4", shard_per_field=True)
    with pytest.raises(ValueError, match="pyramid_levels must be >= 2"):
        dataclasses.replace(conversion_options(), pyramid_levels=1)
    with pytest.raises(ValueError, match="config key convert.pyramid_levels: 1 is less than the minimum of 2"):
        conversion_options(pyramid_levels=1)
