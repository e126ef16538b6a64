"""A small synthetic results tree for the report stage, laid out as the workflow writes it.

Three plates in two sources and two batches, one of them named like an HTML
tag and one perturbation named ``<script>alert(1)</script>``, so the report's
escaping is tested on the names data can carry. Each plate has QC fields with
an excluded field, QC heatmaps, illumination functions, annotated and
normalized profiles per feature set, and DINO provenance; each feature set
has corrected tables, ``kpis.parquet``, ``selected_method.json`` and
``drift.parquet`` per the evaluate contract.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from workflow_scripts.evaluate.kpi import catalogued, missing
from workflow_scripts.paths import plate_dir
from workflow_scripts.provenance import package_versions, write_table
from workflow_scripts.report.__main__ import main

HOSTILE_PERTURBATION = "<script>alert(1)</script>"
HOSTILE_PLATE = "<img src=x onerror=alert(2)>"
CHECKPOINT = "models/dino_vits8_cellpaint.pth"
CHECKPOINT_SHA256 = "0123456789abcdef" * 4
DATASET = "test-dataset"
METHODS = ("none", "harmony")
FEATURE_SETS = ("dino", "cellprofiler")
PLATES = (
    ("source_A", "batch_1", "PLATE_1"),
    ("source_A", "batch_1", HOSTILE_PLATE),
    ("source_B", "batch_2", "PLATE_3"),
)
FEATURE_NAMES = {
    "dino": [f"dino_{i:03d}" for i in range(8)],
    "cellprofiler": ["Cells_AreaShape_Area", "Nuclei_Intensity_MeanIntensity_DNA", "Cells_$odd$_name", "Cytoplasm_X"],
}
# Tiny UMAPs (a subsample of the 48 profiles), and one plate left to the table only.
REPORT_SETTINGS = {"max_plates": 1, "umap_max_profiles": 40, "seed": 0}


@dataclass(frozen=True)
class ReportRun:
    """A synthetic run: its results folder, and the report stage's command line."""

    results_dir: Path
    output: Path
    argv: list[str]


def build_run(
    root: Path,
    features: Sequence[str] = FEATURE_SETS,
    random_weights: bool = True,
    without: Sequence[str] = (),
) -> ReportRun:
    """Write the tree under ``root``; ``without`` names inputs (``kpis``, ``drift``, …) left off the command line."""
    results = root / "results"
    table = pd.DataFrame(PLATES, columns=["Metadata_Source", "Metadata_Batch", "Metadata_Plate"])
    table["Metadata_PlateType"] = "COMPOUND"
    table.to_csv(root / "plates.csv", index=False)
    rng = np.random.default_rng(0)
    normalized = {name: [] for name in features}
    for order, (source, batch, plate) in enumerate(PLATES):
        folder = plate_dir(results, _row(source, batch, plate))
        _qc(folder, source, batch, plate, rng)
        _dino_provenance(folder / "dino" / "wells.parquet", random_weights)
        for name in features:
            normalized[name].append(_profiles(folder, name, source, batch, plate, order, rng))
    inputs = []
    for name in features:
        collection = results / "collection" / name
        profiles = pd.concat(normalized[name], ignore_index=True)
        written = {
            "kpis": _kpis(collection / "kpis.parquet", name),
            "selected_method": _selection(collection / "selected_method.json", name),
            "drift": _drift(collection / "drift.parquet", name),
        }
        for method in METHODS:
            written.setdefault("corrected", []).append(_corrected(collection, name, method, profiles))
        for key, paths in written.items():
            if key not in without:
                for path in paths if isinstance(paths, list) else [paths]:
                    inputs += ["--input", f"{key}={path}"]
    settings = {
        "plates": str(root / "plates.csv"),
        "dataset": DATASET,
        "results_dir": str(results),
        "features": list(features),
        "correction": {"methods": list(METHODS)},
        "report": REPORT_SETTINGS,
    }
    output = results / "report" / "index.html"
    argv = ["--settings", json.dumps(settings), *inputs, "--output", f"report={output}"]
    return ReportRun(results, output, argv)


def _row(source: str, batch: str, plate: str) -> dict[str, str]:
    return {"Metadata_Dataset": DATASET, "Metadata_Source": source, "Metadata_Batch": batch, "Metadata_Plate": plate}


def _qc(folder: Path, source: str, batch: str, plate: str, rng: np.random.Generator) -> None:
    """``qc/fields.parquet`` with one excluded field, two heatmaps and two illumination functions."""
    qc = folder / "qc"
    (qc / "illum").mkdir(parents=True)
    (qc / "heatmaps").mkdir()
    wells = np.repeat(["A01", "A02", "B01", "B02"], 2)
    fields = pd.DataFrame(
        {
            "Metadata_Source": source,
            "Metadata_Batch": batch,
            "Metadata_Plate": plate,
            "Metadata_Well": wells,
            "Metadata_Site": np.tile(["1", "2"], 4),
            "Metadata_Field": np.tile([1, 2], 4),
            "qc_pass": [True] * 7 + [False],
            "qc_reason": [""] * 7 + ["out of focus"],
            "qc_detail": [""] * 7 + ["out of focus: DNA slope -3.10 < -2.50"],
            "qc_excluded": [False] * 7 + [True],
            "conversion_reason": "",
            "conversion_detail": "",
            "focus_plls": rng.normal(-2, 0.1, 8),
        }
    )
    fields.to_parquet(qc / "fields.parquet", index=False)
    for what in ("focus", "nuclei"):
        (qc / "heatmaps" / f"heatmap_{what}.png").write_bytes(_heatmap(rng))
    for channel in ("DNA", "AGP"):
        y, x = np.mgrid[-1:1:64j, -1:1:64j]
        np.save(qc / "illum" / f"{plate}_Illum{channel}.npy", (1.1 - 0.2 * (x**2 + y**2)).astype(np.float32))


def _heatmap(rng: np.random.Generator) -> bytes:
    figure = Figure(figsize=(2, 1.5))
    figure.subplots().imshow(rng.random((4, 6)))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _dino_provenance(path: Path, random_weights: bool) -> None:
    """The model record as ``ModelInfo.as_dict`` writes it (spelled out: importing it would import torch)."""
    if random_weights:
        model = {
            "model": "random weights",
            "arch": "vit_small",
            "checkpoint": None,
            "checkpoint_sha256": None,
            "seed": 0,
        }
    else:
        model = {
            "model": "checkpoint",
            "arch": "vit_small",
            "checkpoint": CHECKPOINT,
            "checkpoint_sha256": CHECKPOINT_SHA256,
            "seed": None,
        }
    provenance = {**model, "versions": package_versions(["numpy", "torch"])}
    write_table(pd.DataFrame({"Metadata_Well": ["A01"], "dino_000": [0.0]}), path, "dino", provenance)


def _profiles(
    folder: Path, name: str, source: str, batch: str, plate: str, order: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Annotated (raw) and normalized profiles of 16 wells: controls, two MoAs, a hostile name, a poscon."""
    perturbations = (
        ["DMSO"] * 4 + [f"pert_{i}" for i in range(4)] * 2 + [HOSTILE_PERTURBATION, "", "poscon_1", "pert_0"]
    )
    pert_type = ["negcon"] * 4 + ["trt"] * 8 + ["trt", "trt", "poscon", "trt"]
    moa = [""] * 4 + ["moa_a", "moa_a", "moa_b", "moa_b"] * 2 + ["", "", "moa_b", "moa_a"]
    metadata = pd.DataFrame(
        {
            **{key: value for key, value in _row(source, batch, plate).items() if key != "Metadata_Dataset"},
            "Metadata_Well": [f"{chr(65 + i // 4)}{i % 4 + 1:02d}" for i in range(16)],
            "Metadata_PlateType": "COMPOUND",
            "Metadata_Perturbation": perturbations,
            "Metadata_PertType": pert_type,
            "Metadata_MoA": moa,
        }
    )
    names = FEATURE_NAMES[name]
    raw = rng.normal(10 + order, 1 + order / 2, (16, len(names)))
    raw[4:, 0] += 3
    controls = raw[:4]
    spread = np.median(np.abs(controls - np.median(controls, axis=0)), axis=0) * 1.4826
    annotated = pd.concat([metadata, pd.DataFrame(raw, columns=names)], axis=1)
    normalized = annotated.copy()
    normalized[names] = (raw - np.median(controls, axis=0)) / spread
    (folder / "profiles").mkdir(parents=True, exist_ok=True)
    annotated.to_parquet(folder / "profiles" / f"{name}_annotated.parquet", index=False)
    normalized.to_parquet(folder / "profiles" / f"{name}.parquet", index=False)
    return normalized


def _corrected(collection: Path, name: str, method: str, profiles: pd.DataFrame) -> Path:
    table = profiles.copy()
    names = FEATURE_NAMES[name]
    if method != "none":
        table[names] = table[names] - table.groupby("Metadata_Batch")[names].transform("mean")
    path = collection / "corrected" / f"{method}.parquet"
    provenance = {"features": name, "method": method, "package_versions": package_versions(["numpy", "harmonypy"])}
    return write_table(table, path, "correct", provenance)


def _kpis(path: Path, name: str) -> Path:
    """Every method with batch and biology KPIs; one KPI not computable, with its reason."""
    rows = []
    for i, method in enumerate(METHODS):
        kpis = [
            catalogued("silhouette_batch", 0.3 - 0.25 * i, 48),
            catalogued("ilisi_batch", 1.2 + 0.6 * i, 48),
            catalogued("map_vs_negcon", 0.4 + 0.05 * i, 36),
            catalogued("silhouette_moa", 0.1 + 0.02 * i, 36),
            missing("silhouette_target", 48, "no Metadata_Target column"),
        ]
        rows += [kpi.row(features=name, method=method) for kpi in kpis]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def _selection(path: Path, name: str) -> Path:
    """harmony selected; none fails the batch gate."""
    selection = {
        "features": name,
        "selected": "harmony",
        "reason": "harmony has the highest combined score of the methods that pass the gate",
        "weights": {"batch": 0.4, "biology": 0.6},
        "gate": {
            "silhouette_batch": {"threshold": 0.2, "direction": "lower"},
            "map_vs_negcon": {"threshold": 0.1, "direction": "higher"},
        },
        "methods": [
            {
                "method": "none",
                "score": 0.3,
                "batch_score": 0.0,
                "biology_score": 0.5,
                "passes": False,
                "failed": [{"kpi": "silhouette_batch", "value": 0.3, "threshold": 0.2, "direction": "lower"}],
                "reason": "fails the gate: silhouette_batch 0.3 > 0.2",
            },
            {
                "method": "harmony",
                "score": 0.8,
                "batch_score": 1.0,
                "biology_score": 0.67,
                "passes": True,
                "failed": [],
                "reason": "passes the gate; best combined score",
            },
        ],
    }
    path.write_text(json.dumps(selection))
    return path


def _drift(path: Path, name: str) -> Path:
    """The hostile plate flagged; PLATE_3 without controls, so without a distance."""
    rows = [
        (source, batch, plate, order, f"2025-01-0{order + 1}", 4 if order < 2 else 0)
        for order, (source, batch, plate) in enumerate(PLATES)
    ]
    table = pd.DataFrame(
        rows, columns=["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "order", "acquired", "n_controls"]
    )
    table.insert(0, "features", name)
    table["centroid_distance"] = [1.0, 4.0, np.nan]
    table["dispersion"] = [0.5, 0.6, np.nan]
    table["robust_z"] = [0.0, 3.9, np.nan]
    table["flagged"] = [False, True, False]
    table["note"] = ["", "", "no negative controls"]
    table.to_parquet(path, index=False)
    return path


# The runs the tests read, by name: built once per test session, because the
# first UMAP of a process pays numba's compilation (about ten seconds).
VARIANTS: dict[str, dict] = {
    "full": {},
    "cellprofiler_only": {"features": ("cellprofiler",)},
    "checkpoint_without_kpis": {"features": ("dino",), "random_weights": False, "without": ("kpis", "drift")},
}
_BUILT: dict[tuple[Path, str], Path] = {}


def built_report(factory: pytest.TempPathFactory, variant: str) -> Path:
    """The report page of the synthetic run ``variant``, built through the stage's command line."""
    key = (factory.getbasetemp(), variant)
    if key not in _BUILT:
        run = build_run(factory.mktemp(variant), **VARIANTS[variant])
        status = main(run.argv)
        if status != 0:
            raise AssertionError(f"the report stage exited with {status} on the {variant!r} run")
        _BUILT[key] = run.output
    return _BUILT[key]
