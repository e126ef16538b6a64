"""TIFF -> OME-Zarr: every pixel survives, the plate is valid NGFF, metadata is right."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import ome_zarr_models
import pandas as pd
import pytest
import tifffile
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr.writer import write_multiscales_metadata
from skimage.transform import downscale_local_mean
from zarr.core.group import GroupMetadata

import workflow_scripts
from tests.support.sample_plate import conversion_status, real_fields, sample_fields, truncate, write_fetched_plate
from tests.support.settings import QC_DEFAULTS, conversion_options, qc_thresholds
from workflow_scripts.omezarr.arrays import blosc, create_array, write_chunks, write_metadata
from workflow_scripts.omezarr.display import omero, percentiles
from workflow_scripts.omezarr.multiscales import datasets, field_attributes, ngff_format
from workflow_scripts.omezarr.reader import open_plate
from workflow_scripts.omezarr.writer import convert_plate, temp_path
from workflow_scripts.qc.plate_qc import run_plate_qc

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
WELLS = ["A01", "A02", "B03"]
SITES = ["1", "2"]
SHAPE = (200, 232)  # not square, not a power of two


@pytest.fixture(scope="module")
def real(shared_fixtures):
    return real_fields(shared_fixtures / "jump-pixels", CHANNELS)[0]


@pytest.fixture(scope="module")
def fetched(real, tmp_path_factory):
    fields = sample_fields(real, WELLS, SITES, SHAPE)
    illum = np.random.default_rng(3).uniform(1.0, 2.0, size=(len(CHANNELS), *SHAPE)).astype(np.float32)
    return write_fetched_plate(tmp_path_factory.mktemp("fetched"), fields, CHANNELS, illum=illum), fields, illum


OPTIONS = {
    "ngff-0.5": conversion_options(),
    "ngff-0.4": conversion_options(ngff_version="0.4"),
    "sharded": conversion_options(shard_per_field=True, pyramid_levels=2),
    "two-workers": conversion_options(workers=2, compression_level=3),
}


@pytest.fixture(scope="module", params=list(OPTIONS))
def converted(request, fetched, tmp_path_factory):
    plate, fields, illum = fetched
    output = tmp_path_factory.mktemp(request.param) / f"{plate.plate}.ome.zarr"
    result = convert_plate(plate.load_data, plate.cache_dir, output, CHANNELS, OPTIONS[request.param])
    return OPTIONS[request.param], result, plate, fields, illum


def test_every_pixel_equals_its_tiff(converted):
    options, result, plate, fields, _ = converted
    reader = open_plate(result.output)
    assert reader.wells == WELLS
    for well in WELLS:
        infos = reader.fields(well)
        assert [info.site for info in infos] == SITES
        for info in infos:
            stored = reader.read_field(well, info.field)
            assert stored.dtype == np.uint16 and stored.shape == (len(CHANNELS), *SHAPE)
            for c, channel in enumerate(CHANNELS):
                np.testing.assert_array_equal(stored[c], tifffile.imread(plate.tiff(well, info.site, channel)))
    assert result.fields == {
        "total": len(WELLS) * len(SITES),
        "failed": 0,
        "failed_by_reason": {},
        "failed_by_channel": {},
    }
    assert not temp_path(result.output).exists()


def test_lower_levels_are_rounded_block_means(converted):
    options, result, *_ = converted
    reader = open_plate(result.output)
    assert reader.levels == options.pyramid_levels
    level = reader.read_field("A02", 1, 0).astype(np.float64)
    for index in range(1, options.pyramid_levels):
        reference = np.floor(downscale_local_mean(level, (1, 2, 2)) + 0.5)
        h, w = level.shape[1] // 2, level.shape[2] // 2
        stored = reader.read_field("A02", 1, index)
        np.testing.assert_array_equal(stored, reference[:, :h, :w])
        level = stored.astype(np.float64)


def test_plate_validates_with_ome_zarr_models(converted):
    options, result, *_ = converted
    root = zarr.open_group(result.output, mode="r")
    hcs = ome_zarr_models.open_ome_zarr(root, version=options.ngff_version)
    assert type(hcs).__name__ == "HCS"
    assert hcs.n_wells == len(WELLS) == len(list(hcs.well_groups))
    assert [w.path for w in hcs.ome_attributes.plate.wells] == ["A/1", "A/2", "B/3"]
    for well_meta in hcs.ome_attributes.plate.wells:
        well = ome_zarr_models.open_ome_zarr(root[well_meta.path], version=options.ngff_version)
        assert type(well).__name__ == "Well"
        for image_meta in well.ome_attributes.well.images:
            image = ome_zarr_models.open_ome_zarr(
                root[f"{well_meta.path}/{image_meta.path}"], version=options.ngff_version
            )
            assert type(image).__name__ == "Image"
            axes = image.ome_attributes.multiscales[0].axes
            assert [(a.name, a.type, a.unit) for a in axes] == [
                ("c", "channel", None),
                ("y", "space", "micrometer"),
                ("x", "space", "micrometer"),
            ]


def test_ome_zarr_reader_sees_plate_and_channel_labels(converted):
    _, result, *_ = converted
    nodes = list(Reader(parse_url(str(result.output)))())
    assert type(nodes[0].specs[0]).__name__ == "Plate"
    assert nodes[0].metadata["channel_names"] == CHANNELS
    assert nodes[0].data[0].dtype == np.uint16


def test_pixel_size_and_windows_from_acquisition_and_pixels(converted):
    options, result, plate, fields, _ = converted
    reader = open_plate(result.output)
    assert reader.ngff_version == options.ngff_version
    assert reader.channels == CHANNELS
    assert reader.pixel_size_um == pytest.approx(0.598)
    image = zarr.open_group(result.output / "A" / "1" / "0", mode="r")
    attrs = dict(image.attrs)
    ngff = attrs.get("ome", attrs)
    scales = [d["coordinateTransformations"][0]["scale"] for d in ngff["multiscales"][0]["datasets"]]
    assert scales == [[1.0, 0.598 * 2**k, 0.598 * 2**k] for k in range(options.pyramid_levels)]
    smallest = reader.read_field("A01", 0, options.pyramid_levels - 1)
    for channel, plane in zip(ngff["omero"]["channels"], smallest):
        assert channel["window"]["start"] == int(np.percentile(plane, 0.1))
        assert channel["window"]["end"] == int(np.percentile(plane, 99.9))


def test_level0_chunks_are_one_channel_of_one_field_blosc_zstd_bitshuffle(converted):
    options, result, *_ = converted
    array = zarr.open_array(result.output / "B" / "3" / "1" / "0", mode="r")
    if options.shard_per_field:
        assert array.shards == (len(CHANNELS), *SHAPE)
    assert array.chunks == (1, *SHAPE)
    smallest = zarr.open_array(result.output / "B" / "3" / "1" / str(options.pyramid_levels - 1), mode="r")
    assert smallest.chunks == smallest.shape, "lower levels are one chunk"
    if options.ngff_version == "0.5":
        (codec,) = array.compressors
        assert (codec.cname.value, codec.clevel, codec.shuffle.value) == (
            "zstd",
            options.compression_level,
            "bitshuffle",
        )
        assert array.metadata.dimension_names == ("c", "y", "x")
    else:
        (codec,) = array.compressors
        assert (codec.cname, codec.clevel, codec.shuffle) == ("zstd", options.compression_level, 2)  # 2: bitshuffle


def test_provenance_and_gallery_illumination_kept_raw(converted):
    options, result, plate, fields, illum = converted
    reader = open_plate(result.output)
    provenance = reader.provenance
    assert provenance["workflow"]["version"] == workflow_scripts.__version__
    assert provenance["plate"] == {
        "Metadata_Source": "source_4",
        "Metadata_Batch": "BATCH1",
        "Metadata_Plate": plate.plate,
    }
    table = pd.read_parquet(plate.load_data)
    lines = "".join(
        f"{row.Metadata_Well}\t{row.Metadata_Site}\t{ch}\t{getattr(row, f'URL_Orig{ch}')}\n"
        for row in table.itertuples()
        for ch in CHANNELS
    )
    assert provenance["source_images"]["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert provenance["source_images"]["count"] == len(table) * len(CHANNELS)
    recorded = provenance["illumination"]
    assert recorded["applied"] is False and recorded["stored"] is True
    for c, channel in enumerate(CHANNELS):
        path = plate.cache_dir / recorded["files"][channel].removeprefix("s3://")
        assert recorded["sha256"][channel] == hashlib.sha256(path.read_bytes()).hexdigest()
        np.testing.assert_array_equal(reader.illumination()[channel], illum[c])
    conversion = provenance["conversion"]
    assert conversion["ngff_version"] == options.ngff_version
    assert conversion["pyramid_levels"] == options.pyramid_levels
    assert conversion["compression"]["clevel"] == options.compression_level
    assert conversion["channels"] == CHANNELS and conversion["field_shape"] == list(SHAPE)
    json.dumps(provenance)  # plain JSON, no numpy scalars


def test_sites_ordered_numerically_and_zero_based_sites_kept(real, tmp_path):
    sites = ["10", "0", "2"]
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["C07"], sites, (64, 64)), CHANNELS, pixel_size_m=None)
    result = convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())
    reader = open_plate(result.output)
    assert [(info.field, info.site) for info in reader.fields("C07")] == [(0, "0"), (1, "2"), (2, "10")]
    np.testing.assert_array_equal(reader.read_field("C07", 2)[0], tifffile.imread(plate.tiff("C07", "10", "DNA")))
    assert reader.pixel_size_um is None
    table = reader.field_table()
    assert table[["Metadata_Well", "Metadata_Site", "Metadata_Field"]].values.tolist() == [
        ["C07", "0", 0],
        ["C07", "2", 1],
        ["C07", "10", 2],
    ]


def test_truncated_channel_loses_only_itself_and_qc_excludes_its_field(real, tmp_path):
    plate = write_fetched_plate(tmp_path, sample_fields(real, WELLS, SITES, SHAPE), CHANNELS)
    truncate(plate.tiff("A02", "2", "DNA"))
    result = convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())
    stored = open_plate(result.output).read_field("A02", 1)
    assert not stored[0].any(), "the truncated DNA channel is zeros"
    for c, channel in enumerate(CHANNELS[1:], start=1):
        np.testing.assert_array_equal(stored[c], tifffile.imread(plate.tiff("A02", "2", channel)))
    assert [failure["channel"] for failure in conversion_status(result.output, "A02", 1)["failed_channels"]] == ["DNA"]
    assert result.fields["failed_by_channel"] == {"DNA": 1}
    qc = run_plate_qc(result.output, tmp_path / "qc", qc_thresholds(), **QC_DEFAULTS)
    qc = qc.set_index(["Metadata_Well", "Metadata_Site"])
    damaged = qc.loc[("A02", "2")]
    assert damaged["qc_excluded"] and not damaged["qc_pass"]
    assert damaged["qc_reason"] == "unreadable" and damaged["qc_detail"].startswith("unreadable: DNA: ")
    assert (qc.drop(index=[("A02", "2")])["conversion_reason"] == "").all()


@pytest.mark.parametrize("ngff_version", ["0.5", "0.4"])
@pytest.mark.parametrize("chunks", [(1, 40, 56), (3, 40, 56)])
def test_direct_writes_are_the_bytes_zarr_writes(tmp_path, ngff_version, chunks):
    options = conversion_options(ngff_version=ngff_version, compression_level=2)
    data = np.random.default_rng(0).integers(0, 4000, (3, 40, 56)).astype(np.uint16)
    attributes = {"ome": {"name": "field", "levels": [1, 2]}}
    theirs = zarr.open_group(tmp_path / "theirs", mode="w", zarr_format=options.zarr_format)
    theirs.update_attributes(attributes)
    create_array(theirs, "0", data.shape, chunks, options)[...] = data
    scratch = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=options.zarr_format)
    metadata = create_array(scratch, "0", data.shape, chunks, options).metadata
    write_metadata(tmp_path / "ours", GroupMetadata(attributes=attributes, zarr_format=options.zarr_format))
    write_metadata(tmp_path / "ours" / "0", metadata)
    write_chunks(tmp_path / "ours" / "0", metadata, data, blosc(options.compression_level, "bitshuffle"))
    written = {
        p.relative_to(tmp_path / "theirs"): p.read_bytes() for p in (tmp_path / "theirs").rglob("*") if p.is_file()
    }
    assert (
        len([p for p in written if p.parts[0] == "0" and not p.name.startswith((".z", "zarr.json"))]) == 3 // chunks[0]
    )
    assert {p.relative_to(tmp_path / "ours") for p in (tmp_path / "ours").rglob("*") if p.is_file()} == set(written)
    for relative, content in written.items():
        assert (tmp_path / "ours" / relative).read_bytes() == content, relative
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "ours" / "0", mode="r")[...], data)


@pytest.mark.parametrize("ngff_version", ["0.5", "0.4"])
@pytest.mark.parametrize("pixel_size_um", [0.598, None])
def test_field_attributes_are_what_ome_zarr_writes(ngff_version, pixel_size_um):
    options = conversion_options(ngff_version=ngff_version)
    smallest = np.random.default_rng(1).integers(0, 3000, (len(CHANNELS), 30, 34)).astype(np.uint16)
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=options.zarr_format)
    field = root.require_group("B").require_group("3").create_group("1")
    write_multiscales_metadata(
        field,
        datasets=datasets(options.pyramid_levels, pixel_size_um),
        fmt=ngff_format(options),
        axes=["c", "y", "x"],
        axes_units={"y": "micrometer", "x": "micrometer"} if pixel_size_um else None,
        metadata={"omero": omero(CHANNELS, smallest)},
    )
    ours = field_attributes("/B/3/1", options, pixel_size_um, CHANNELS, smallest)
    assert json.dumps(ours) == json.dumps(field.attrs.asdict())  # same content, same key order


@pytest.mark.parametrize(
    "plane",
    [
        np.full((4, 4), 7),  # constant
        np.array([[5]]),  # one pixel
        np.array([[0, 65535]]),  # the extremes
        np.arange(1001).reshape(7, 143),  # fractions of a rank near 0 and 1
        np.random.default_rng(0).poisson(3.0, (50, 58)),  # few distinct values, many ties
        np.random.default_rng(1).exponential(900.0, (67, 81)).clip(0, 65535),  # a long bright tail
    ],
)
@pytest.mark.parametrize("percents", [(0.1, 99.9), (0.0, 50.0, 100.0), (33.3, 66.7)])
def test_histogram_percentiles_are_numpys_to_the_bit(plane, percents):
    plane = plane.astype(np.uint16)
    assert percentiles(plane, percents) == list(np.percentile(plane, percents))
