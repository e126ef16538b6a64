"""Demo backends: features measured from rendered demo fields, in the
gallery's SQLite layout, readable by pycytominer and by this stage alike,
and showing the planted biology."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_cellprofiler_aggregate import (
    assert_matches_pycytominer,
    pycytominer_profiles,
)
from workflow_scripts.cellprofiler.aggregate import aggregate_single_cells
from workflow_scripts.cellprofiler.sqlite_backend import SqliteBackend
from workflow_scripts.demo.single_cells import (
    feature_names,
    measure_site,
    write_backend,
)
from workflow_scripts.demo.synth import (
    PHENOTYPES,
    BatchEffect,
    illumination_function,
    render_site,
)

SIZE = 384
WELLS = {"A01": "DMSO", "A02": "tubulin_destabilizer", "A03": "mito_uncoupler"}
BATCH = BatchEffect(gain=1.0, vignetting=0.3, offset=0.0)


def sites():
    for w, (well, phenotype) in enumerate(WELLS.items()):
        for site in (1, 2):
            metadata = {"Metadata_Plate": "DEMO1", "Metadata_Well": well, "Metadata_Site": str(site)}
            yield metadata, render_site(10 * w + site, PHENOTYPES[phenotype], BATCH, SIZE)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    illum = {ch: illumination_function(BATCH, SIZE) for ch in ("DNA", "AGP", "RNA", "ER", "Mito")}
    return write_backend(tmp_path_factory.mktemp("demo") / "DEMO1.sqlite", sites(), illum)


def test_backend_reads_the_same_in_pycytominer(backend):
    with SqliteBackend(backend, "plate DEMO1") as source:
        ours = aggregate_single_cells(source, "median")
        assert source.features["Nuclei"] == feature_names("Nuclei")
    assert ours.wells == list(WELLS)
    assert (ours.object_counts > 0).all()
    assert_matches_pycytominer(ours, pycytominer_profiles(backend, "median"))


def test_profiles_show_the_planted_biology(backend):
    with SqliteBackend(backend, "plate DEMO1") as source:
        ours = aggregate_single_cells(source, "median")
    value = dict(zip(ours.features, ours.values.T))
    nucleus_area = dict(zip(ours.wells, value["Nuclei_AreaShape_Area"]))
    mito = dict(zip(ours.wells, value["Cells_Intensity_MeanIntensity_Mito"]))
    # the demo's DMSO nuclei are 600-1400 px², tubulin destabilizers enlarge them 1.35x in radius
    assert 600 < nucleus_area["A01"] < 1400
    assert nucleus_area["A02"] > 1.4 * nucleus_area["A01"]
    # uncouplers lose MitoTracker signal (0.4x in the planted biology)
    assert mito["A03"] < 0.8 * mito["A01"]


def test_illumination_correction_divides_intensities_only():
    channels = render_site(3, PHENOTYPES["DMSO"], BatchEffect.none(), SIZE)
    flat = {ch: np.full((SIZE, SIZE), 2.0, dtype=np.float32) for ch in channels}
    raw, halved = measure_site(channels), measure_site(channels, flat)
    names = feature_names("Cells")
    integrated = names.index("Cells_Intensity_IntegratedIntensity_DNA")
    area = names.index("Cells_AreaShape_Area")
    np.testing.assert_allclose(halved["Cells"][:, integrated], raw["Cells"][:, integrated] / 2, rtol=1e-6)
    np.testing.assert_array_equal(halved["Cells"][:, area], raw["Cells"][:, area])
    assert len(raw["Nuclei"]) > 5


def test_bad_sites_are_refused_and_leave_no_file(tmp_path):
    channels = render_site(3, PHENOTYPES["DMSO"], BatchEffect.none(), SIZE)
    target = tmp_path / "P.sqlite"
    without_mito = {k: v for k, v in channels.items() if k != "Mito"}
    with pytest.raises(ValueError, match="Mito"):
        write_backend(target, [({"Metadata_Plate": "P", "Metadata_Well": "A01", "Metadata_Site": "1"}, without_mito)])
    with pytest.raises(ValueError, match="Metadata_Well"):
        write_backend(target, [({"Metadata_Plate": "P", "Metadata_Site": "1"}, channels)])
    assert list(tmp_path.iterdir()) == []
