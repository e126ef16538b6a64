"""The stage against an independent numpy implementation of the recipe, on real JUMP pixels.

The reference follows the written recipe step by step in float64 numpy and
scikit-image; it shares only the network weights with the stage.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from skimage.filters import threshold_otsu
from torch import nn

from tests.support.dino_synthetic import write_plate
from tests.support.settings import make_recipe, make_run_options
from workflow_scripts.dino.pipeline import embed_plate
from workflow_scripts.dino.preprocess import Recipe, prepare_fields
from workflow_scripts.dino.vit import build_vit

PLATE_CHANNELS = ("DNA", "AGP", "RNA", "ER", "Mito")  # the OME-Zarr order; the model's differs
TOLERANCE = 1e-4


def reference_crops(field: np.ndarray, labels: tuple[str, ...], recipe: Recipe) -> tuple[list[np.ndarray], float]:
    """The recipe as written: returns the normalised kept crops (model order) and the Otsu threshold."""
    image = field[[labels.index(c) for c in recipe.channels]].astype(np.float64) / 65535
    for c in range(image.shape[0]):
        low, high = np.percentile(image[c], recipe.clip_percentiles)
        image[c] = (np.clip(image[c], low, high) - low) / (high - low)
    dna = image[recipe.channels.index("DNA")]
    otsu = threshold_otsu(dna[::10, ::10], nbins=256)
    size = recipe.crop_size
    crops = [
        image[:, r * size : (r + 1) * size, c * size : (c + 1) * size]
        for r in range(image.shape[1] // size)
        for c in range(image.shape[2] // size)
    ]
    dna_index = recipe.channels.index("DNA")
    keep = [np.mean(crop[dna_index] > 0.7 * otsu) >= 0.01 for crop in crops]
    if not any(keep):
        keep[len(crops) // 2] = True
    if recipe.normalization == "self":
        mean, std = image.mean(axis=(1, 2)), image.std(axis=(1, 2))
    else:
        mean, std = np.array(recipe.mean), np.array(recipe.std)
    kept = [(crop - mean[:, None, None]) / std[:, None, None] for crop, k in zip(crops, keep, strict=True) if k]
    return kept, otsu


def reference_embeddings(model: nn.Module, crops: list[np.ndarray]) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(np.stack(crops)).float()).double().numpy()


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


@pytest.fixture(scope="module")
def real_fields(shared_fixtures) -> list[np.ndarray]:
    """The two real JUMP fields in plate channel order, tiled to 1080 × 1080."""
    images = zarr.open_group(str(shared_fixtures / "jump-pixels" / "images.zarr"), mode="r")["images"][:]
    stored = pd.read_csv(shared_fixtures / "jump-pixels" / "channels.csv")["channel"].tolist()
    order = [stored.index(c) for c in PLATE_CHANNELS]
    return [np.tile(images[site][order], (1, 3, 3))[:, :1080, :1080] for site in range(2)]


@pytest.fixture(scope="module")
def real_plate(tmp_path_factory, real_fields):
    """A plate whose well A02 has two fields, so well means pool crops across fields."""
    wells = {"A01": [real_fields[0]], "A02": [real_fields[1], np.ascontiguousarray(real_fields[0][:, ::-1])]}
    path = write_plate(tmp_path_factory.mktemp("real") / "real.ome.zarr", wells, PLATE_CHANNELS)
    return path, wells


@pytest.mark.parametrize("normalization", ["dataset", "self"])
def test_prepared_crops_match_reference(real_fields, normalization):
    recipe = make_recipe(normalization=normalization)
    order = [PLATE_CHANNELS.index(c) for c in recipe.channels]
    prepared = prepare_fields(torch.from_numpy(np.stack(real_fields))[:, order], recipe)
    for index, field in enumerate(real_fields):
        crops, otsu = reference_crops(field, PLATE_CHANNELS, recipe)
        got = prepared.crops[prepared.crop_field == index].double().numpy()
        assert prepared.otsu[index].item() == pytest.approx(otsu, rel=1e-5)
        assert got.shape == np.stack(crops).shape
        np.testing.assert_allclose(got, np.stack(crops), atol=1e-4)


def test_well_embeddings_match_reference(real_plate):
    path, wells = real_plate
    model = build_vit("vit_small")
    recipe = make_recipe()
    result = embed_plate(str(path), model, recipe, make_run_options(batch_size=20, workers=2, device="cpu"))
    got = result.wells.set_index("Metadata_Well").filter(like="dino_")
    for well, fields in wells.items():
        crops = [crop for field in fields for crop in reference_crops(field, PLATE_CHANNELS, recipe)[0]]
        expected = reference_embeddings(model, crops).mean(axis=0)
        assert relative_error(got.loc[well].to_numpy(), expected) < TOLERANCE
        assert result.wells.set_index("Metadata_Well").loc[well, "Metadata_n_crops"] == len(crops)
    assert relative_error(got.loc["A01"].to_numpy(), got.loc["A02"].to_numpy()) > 100 * TOLERANCE


def pooled_linear(seed: int = 0) -> nn.Module:
    """A small real network (pooling + linear) for checks of aggregation that need no ViT."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(5 * 14 * 14, 24)).eval()


def test_median_aggregation_and_field_table_match_reference(real_plate):
    path, wells = real_plate
    model = pooled_linear()
    recipe = make_recipe(aggregation="median", normalization="self")
    result = embed_plate(str(path), model, recipe, make_run_options(batch_size=7, workers=3, device="cpu"))
    got_wells = result.wells.set_index("Metadata_Well").filter(like="dino_")
    got_fields = result.fields.set_index(["Metadata_Well", "Metadata_Field"])
    for well, fields in wells.items():
        per_field = [reference_crops(field, PLATE_CHANNELS, recipe) for field in fields]
        embeddings = [reference_embeddings(model, crops) for crops, _ in per_field]
        expected = np.median(np.concatenate(embeddings), axis=0)
        assert relative_error(got_wells.loc[well].to_numpy(), expected) < TOLERANCE
        for index, ((crops, otsu), field_embeddings) in enumerate(zip(per_field, embeddings, strict=True)):
            row = got_fields.loc[(well, index)]
            assert row["Metadata_n_crops"] == 16 and row["Metadata_n_crops_kept"] == len(crops)
            assert row["Metadata_otsu_threshold"] == pytest.approx(otsu, rel=1e-5)
            assert relative_error(row.filter(like="dino_").to_numpy(float), field_embeddings.mean(axis=0)) < TOLERANCE
