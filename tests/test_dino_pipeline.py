"""The plate pipeline on synthetic OME-Zarr plates: crop selection, skipped fields, formats, errors.

A small real network (pooling + linear) stands in for the ViT where only
the pipeline's bookkeeping is under test; the ViT itself is covered by the
reference and CLI tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.support.dino_synthetic import sparse_nuclei_field, write_plate
from tests.support.settings import make_recipe, make_run_options
from workflow_scripts.dino.pipeline import EmbedError, embed_plate
from workflow_scripts.omezarr.reader import PlateFormatError

PLATE_CHANNELS = ("DNA", "AGP", "RNA", "ER", "Mito")
OPTIONS = make_run_options(batch_size=5, workers=2, device="cpu")


def pooled_linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.AvgPool2d(32), nn.Flatten(), nn.Linear(5 * 7 * 7, 16)).eval()


def planted(seed: int, dense_crops: list[int], size: int = 1080) -> np.ndarray:
    """A field in plate channel order with nuclei dense enough only in ``dense_crops``."""
    return sparse_nuclei_field(np.random.default_rng(seed), dense_crops, PLATE_CHANNELS.index("DNA"), size=size)


@pytest.fixture(scope="module")
def small_wells() -> dict[str, list[np.ndarray]]:
    """448-pixel fields (4 crops each): A01 two fields, B02 one with a zero-filled channel, C03 one."""
    zero_filled = planted(3, [0], size=448)
    zero_filled[PLATE_CHANNELS.index("ER")] = 0
    return {
        "A01": [planted(1, [0, 3], size=448), planted(2, [], size=448)],
        "B02": [zero_filled],
        "C03": [planted(4, [1], size=448)],
    }


@pytest.fixture(scope="module")
def small_plate(tmp_path_factory, small_wells):
    return write_plate(tmp_path_factory.mktemp("small") / "small.ome.zarr", small_wells, PLATE_CHANNELS)


def test_planted_fields_keep_their_dense_crop_or_the_centre_crop(tmp_path):
    wells = {"A01": [planted(0, [5])], "B02": [planted(1, [])], "B03": [planted(2, [2, 7]), planted(3, [])]}
    path = write_plate(tmp_path / "planted.ome.zarr", wells, PLATE_CHANNELS, levels=1)
    result = embed_plate(str(path), pooled_linear(), make_recipe(), OPTIONS)
    kept = result.fields.set_index(["Metadata_Well", "Metadata_Field"])["Metadata_n_crops_kept"]
    assert kept.to_dict() == {("A01", 0): 1, ("B02", 0): 1, ("B03", 0): 2, ("B03", 1): 1}
    wells_table = result.wells.set_index("Metadata_Well")
    assert wells_table["Metadata_n_crops"].to_dict() == {"A01": 1, "B02": 1, "B03": 3}
    assert wells_table["Metadata_n_fields"].to_dict() == {"A01": 1, "B02": 1, "B03": 2}
    assert (result.fields["Metadata_n_crops"] == 16).all()


def test_excluded_and_unusable_fields_are_counted_not_embedded(small_plate):
    exclude = frozenset({("C03", 0)})
    result = embed_plate(str(small_plate), pooled_linear(), make_recipe(), OPTIONS, exclude=exclude)
    assert result.fields[["Metadata_Well", "Metadata_Field"]].values.tolist() == [["A01", 0], ["A01", 1]]
    wells = result.wells.set_index("Metadata_Well")
    assert list(wells.index) == ["A01"]
    assert wells.loc["A01", ["Metadata_n_fields", "Metadata_n_crops"]].tolist() == [2, 3]
    assert result.wells_without_embedding == ["B02", "C03"]
    assert result.n_fields_read == 3
    assert not result.wells.filter(like="dino_").isna().any().any()


def test_field_embeddings_are_crop_means_and_wells_pool_crops(small_plate):
    result = embed_plate(str(small_plate), pooled_linear(), make_recipe(), OPTIONS)
    fields = result.fields.set_index(["Metadata_Well", "Metadata_Field"])
    a01 = fields.loc["A01"]
    weights = a01["Metadata_n_crops_kept"].to_numpy()[:, None]
    pooled = (a01.filter(like="dino_").to_numpy() * weights).sum(axis=0) / weights.sum()
    wells = result.wells.set_index("Metadata_Well")
    np.testing.assert_allclose(wells.loc["A01"].filter(like="dino_").to_numpy(float), pooled, rtol=1e-6)
    assert wells.loc["A01", "Metadata_n_fields_unusable"] == 0 and "B02" not in wells.index


def test_ngff_04_and_channel_order_do_not_change_results(tmp_path, small_plate, small_wells):
    permuted = ("Mito", "ER", "DNA", "RNA", "AGP")
    order = [PLATE_CHANNELS.index(c) for c in permuted]
    reordered = {well: [field[order] for field in fields] for well, fields in small_wells.items()}
    v04 = write_plate(tmp_path / "v04.ome.zarr", reordered, permuted, ngff_version="0.4")
    assert (v04 / ".zattrs").is_file()
    expected = embed_plate(str(small_plate), pooled_linear(), make_recipe(), OPTIONS)
    got = embed_plate(str(v04), pooled_linear(), make_recipe(), make_run_options(batch_size=64, workers=1, device="cpu"))
    np.testing.assert_allclose(got.wells.filter(like="dino_"), expected.wells.filter(like="dino_"), rtol=1e-5)
    np.testing.assert_allclose(got.fields.filter(like="dino_"), expected.fields.filter(like="dino_"), rtol=1e-5)


def test_missing_channel_is_named(tmp_path, small_wells):
    labels = ("DNA", "AGP", "RNA", "ER", "MitoTracker")
    path = write_plate(tmp_path / "renamed.ome.zarr", {"A01": small_wells["A01"]}, labels, levels=1)
    with pytest.raises(EmbedError, match=r"renamed.ome.zarr well A01 field 0: channel\(s\) \['Mito'\] not among"):
        embed_plate(str(path), pooled_linear(), make_recipe(), OPTIONS)


def test_field_smaller_than_a_crop_is_named(tmp_path):
    path = write_plate(
        tmp_path / "tiny.ome.zarr", {"D04": [planted(0, [], size=448)[:, :200]]}, PLATE_CHANNELS, levels=1
    )
    with pytest.raises(EmbedError, match=r"well D04 field 0: \(200, 448\) pixels is smaller"):
        embed_plate(str(path), pooled_linear(), make_recipe(), OPTIONS)


def test_field_with_fewer_channels_than_labels_is_named(tmp_path, small_wells):
    path = write_plate(tmp_path / "short.ome.zarr", {"A01": [small_wells["C03"][0][:4]]}, PLATE_CHANNELS, levels=1)
    with pytest.raises(EmbedError, match=r"well A01 field 0: shape \(4, 448, 448\), expected \(c, y, x\) with c = 5"):
        embed_plate(str(path), pooled_linear(), make_recipe(), OPTIONS)


def test_pixels_other_than_uint16_are_refused(tmp_path, small_wells):
    as_float = {"E05": [small_wells["C03"][0].astype(np.float32)]}
    path = write_plate(tmp_path / "float.ome.zarr", as_float, PLATE_CHANNELS, levels=1)
    with pytest.raises(EmbedError, match="well E05 field 0: pixels are float32, expected uint16"):
        embed_plate(str(path), pooled_linear(), make_recipe(), OPTIONS)


def test_damaged_chunk_is_named(tmp_path, small_wells):
    path = write_plate(tmp_path / "damaged.ome.zarr", {"A01": small_wells["A01"]}, PLATE_CHANNELS, levels=1)
    chunk = next(p for p in (path / "A" / "1" / "1" / "s0").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:50])
    with pytest.raises(PlateFormatError, match=r"damaged.ome.zarr: well A01 field 1 cannot be read"):
        embed_plate(str(path), pooled_linear(), make_recipe(), OPTIONS)


def test_a_folder_that_is_no_plate_is_refused(tmp_path):
    with pytest.raises(PlateFormatError, match=f"{tmp_path}: not a zarr group"):
        embed_plate(str(tmp_path), pooled_linear(), make_recipe(), OPTIONS)
