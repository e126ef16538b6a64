"""The recipe's torch steps against numpy / scikit-image semantics, and the crop-selection rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import zarr
from skimage.filters import threshold_otsu

from tests.support.dino_synthetic import sparse_nuclei_field
from tests.support.settings import make_recipe
from workflow_scripts.dino.preprocess import (
    DEFAULT_CHANNELS,
    DEFAULT_MEAN,
    DEFAULT_STD,
    Recipe,
    clip_and_rescale,
    crop_grid,
    default_statistics,
    linear_percentile,
    otsu_thresholds,
    prepare_fields,
)

DNA = DEFAULT_CHANNELS.index("DNA")


@pytest.mark.parametrize("n", [1, 2, 1001, 1080 * 1080])
@pytest.mark.parametrize("percent", [0.0, 0.1, 37.3, 50.0, 99.9, 100.0])
def test_linear_percentile_equals_numpy(n, percent):
    values = np.random.default_rng(n).gamma(2.0, 1000.0, size=(3, n)).astype(np.float32)
    got = linear_percentile(torch.from_numpy(values), percent).numpy()
    np.testing.assert_allclose(got, np.percentile(values.astype(np.float64), percent, axis=1), rtol=1e-6)


def test_otsu_equals_skimage_on_real_and_synthetic_rows(shared_fixtures):
    images = zarr.open_group(str(shared_fixtures / "jump-pixels" / "images.zarr"), mode="r")["images"][:]
    rng = np.random.default_rng(0)
    rows = [images[site, 1, ::10, ::10].ravel().astype(np.float64) / 65535 for site in range(2)]  # channel 1 is DNA
    rows.append(rng.gamma(2.0, 1.0, 1444))
    rows.append(np.round(rng.normal(0.5, 0.1, 1444), 2))  # many ties
    rows.append(np.r_[np.zeros(1000), np.ones(444)])  # two values only
    got = otsu_thresholds(torch.from_numpy(np.stack([r[:1444] for r in rows])))
    expected = [threshold_otsu(r[:1444], nbins=256) for r in rows]
    assert got.tolist() == expected


def test_otsu_of_a_constant_row_is_its_value():
    assert (
        otsu_thresholds(torch.full((1, 100), 0.25, dtype=torch.float64)).item()
        == 0.25
        == threshold_otsu(np.full(100, 0.25))
    )


def test_clip_and_rescale_equals_numpy_and_flags_constant_channels():
    rng = np.random.default_rng(1)
    fields = rng.gamma(2.0, 1000.0, size=(2, 3, 40, 50)).astype(np.float32)
    fields[1, 2] = 7.0
    got, constant = clip_and_rescale(torch.from_numpy(fields), (0.1, 99.9))
    for b in range(2):
        for c in range(3):
            if (b, c) == (1, 2):
                continue
            low, high = np.percentile(fields[b, c].astype(np.float64), [0.1, 99.9])
            expected = (np.clip(fields[b, c], low, high) - low) / (high - low)
            np.testing.assert_allclose(got[b, c].numpy(), expected, atol=1e-6)
    assert constant.tolist() == [[False, False, False], [False, False, True]]
    assert torch.isfinite(got).all()


@pytest.mark.parametrize(("height", "width", "rows", "cols"), [(1080, 1080, 4, 4), (500, 700, 2, 3), (224, 224, 1, 1)])
def test_crop_grid_is_row_major_from_the_top_left(height, width, rows, cols):
    fields = torch.arange(2 * 2 * height * width, dtype=torch.float32).reshape(2, 2, height, width)
    crops = crop_grid(fields, 224)
    assert crops.shape == (2, rows * cols, 2, 224, 224)
    for index in range(rows * cols):
        r, c = divmod(index, cols)
        assert torch.equal(crops[1, index], fields[1, :, r * 224 : (r + 1) * 224, c * 224 : (c + 1) * 224])


def test_crop_grid_refuses_fields_smaller_than_a_crop():
    with pytest.raises(ValueError, match="smaller than one 224-pixel crop"):
        crop_grid(torch.zeros(1, 5, 200, 1080), 224)


def planted_field(seed: int, dense_crops: list[int]) -> np.ndarray:
    return sparse_nuclei_field(np.random.default_rng(seed), dense_crops, DNA)


def kept_crop_indices(raw: np.ndarray, prepared, recipe: Recipe) -> list[int]:
    """Which grid crops ``prepared`` kept, found by matching normalised crop contents."""
    fields, _ = clip_and_rescale(torch.from_numpy(raw).float()[None] / 65535, recipe.clip_percentiles)
    grid = crop_grid(fields, recipe.crop_size)[0]
    mean = torch.tensor(recipe.mean)[:, None, None]
    std = torch.tensor(recipe.std)[:, None, None]
    return [i for i in range(grid.shape[0]) for crop in prepared.crops if torch.allclose((grid[i] - mean) / std, crop)]


def test_foreground_rule_keeps_only_crops_with_enough_nuclei():
    recipe = make_recipe()
    raw = planted_field(0, dense_crops=[5, 10])
    prepared = prepare_fields(torch.from_numpy(raw)[None], recipe)
    assert prepared.n_crops == 16
    assert prepared.n_kept.tolist() == [2]
    assert kept_crop_indices(raw, prepared, recipe) == [5, 10]
    assert prepared.crop_field.tolist() == [0, 0]


def test_field_without_foreground_keeps_its_centre_crop():
    recipe = make_recipe()
    raws = np.stack([planted_field(1, dense_crops=[]), planted_field(2, dense_crops=[3])])
    prepared = prepare_fields(torch.from_numpy(raws), recipe)
    assert prepared.n_kept.tolist() == [1, 1]
    assert prepared.crop_field.tolist() == [0, 1]
    assert kept_crop_indices(raws[0], prepared, recipe) == [16 // 2]
    assert kept_crop_indices(raws[1], prepared, recipe) == [3]


def test_constant_channel_makes_a_field_unusable():
    raws = np.stack([planted_field(3, dense_crops=[1]), planted_field(4, dense_crops=[1])])
    raws[1, 0] = 0  # a zero-filled Mito channel
    prepared = prepare_fields(torch.from_numpy(raws), make_recipe())
    assert prepared.usable.tolist() == [True, False]
    assert prepared.constant_channels[1].tolist() == [True, False, False, False, False]
    assert prepared.n_kept.tolist() == [1, 0]
    assert prepared.crop_field.tolist() == [0]


def test_self_standardization_uses_each_fields_own_statistics():
    raw = planted_field(5, dense_crops=list(range(16)))
    prepared = prepare_fields(torch.from_numpy(raw)[None], make_recipe(normalization="self"))
    fields, _ = clip_and_rescale(torch.from_numpy(raw).double()[None] / 65535, (0.1, 99.9))
    mean = fields[0].mean(dim=(1, 2))
    std = fields[0].std(dim=(1, 2), correction=0)
    expected = (crop_grid(fields, 224)[0] - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(prepared.crops.double(), expected, rtol=1e-4, atol=1e-4)


def test_default_statistics_follow_the_stain_not_the_position():
    assert default_statistics(DEFAULT_CHANNELS) == (DEFAULT_MEAN, DEFAULT_STD)
    mean, std = default_statistics(("DNA", "Mito"))
    assert mean == (DEFAULT_MEAN[4], DEFAULT_MEAN[0]) and std == (DEFAULT_STD[4], DEFAULT_STD[0])
    with pytest.raises(ValueError, match="Brightfield"):
        default_statistics(("DNA", "Brightfield"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mean": (0.1,)}, "one mean and one std per channel"),
        ({"normalization": "minmax"}, "minmax"),
        ({"aggregation": "max"}, "max"),
        ({"channels": ("Mito", "AGP", "RNA", "ER", "Hoechst")}, "foreground channel 'DNA'"),
        ({"std": (0.1, 0.1, 0.0, 0.1, 0.1)}, "positive"),
    ],
)
def test_invalid_recipes_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(make_recipe(), **kwargs)
