"""What the workflow costs: per rule on the demo, and projected to one JUMP plate.

(a) Every ``benchmark:`` file of a finished run (``<results>/benchmarks/
<rule>/.../*.tsv``, as Snakemake writes them) summed per rule: jobs, wall
seconds, CPU seconds, peak resident memory, bytes read and written.

(b) One plate of a JUMP source (cpg0016), from the JUMP statistics
(``stats/``: sites and wells per plate, TIFFs and bytes per source, cells
per source) and ``metadata/microscope_config.csv``. Each per-plate stage's
CPU time is scaled from the demo run by what it scales with (bytes fetched,
pixels converted, crops embedded, wells profiled): a job's cost is a fixed
start-up (the cheapest job of the run: interpreter and imports) plus the
demo's remaining CPU per unit times the JUMP plate's units. The CellProfiler
stage is the exception: the demo's backends are so small that start-up is
all it measures, so its per-value rate comes from ``benchmarks/cellprofiler.py``
(``--cellprofiler-values-per-s``). DINO's GPU time, instance prices and S3
request prices are assumptions, printed as such, each an argument.

    python benchmarks/costs.py [--results results/demo] [--jump-metadata ../shared/fixtures/jump-metadata]
                               [--source source_4] [--features-per-cell N]
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from workflow_scripts.cellprofiler.backend_schema import COMPARTMENTS, feature_columns, quote
from workflow_scripts.dino.preprocess import Recipe
from workflow_scripts.fetch.objects import LARGE_OBJECT_BYTES
from workflow_scripts.settings import complete

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
SQLITE_BYTES_PER_REAL = 9  # an 8-byte IEEE float plus its 1-byte serial type in the record header
MB, GB = 1e6, 1e9

# Assumptions, not measurements (each can be overridden on the command line).
PRICES = "AWS us-east-1 on-demand list prices (c6i.4xlarge $0.68/h, g5.xlarge $1.006/h as listed mid-2026)"
CPU_INSTANCE = ("c6i.4xlarge", 16, 0.68)  # name, vCPUs, $/hour
GPU_INSTANCE = ("g5.xlarge", "A10G", 4, 1.006)  # name, GPU, vCPUs, $/hour
S3_GET_PER_1000 = 0.0004  # S3 Standard GET/HEAD
S3_PUT_PER_1000 = 0.005  # S3 Standard PUT/LIST
S3_GB_MONTH = 0.023  # S3 Standard storage, first 50 TB
GPU_CROPS_PER_S = {"A10G": 2000.0, "H100": 8000.0}  # ViT-S/16 at 224 px, bf16, model step alone
GPU_UTILISATION = 0.6  # end-to-end time over model time: the stage's target (model step >= 60 % of bare forward)
# benchmarks/embed.py (RESULTS.md): 0.57 s of reader time for 8 fields of 5 x 1080^2 pixels, on this machine
READ_CPU_S_PER_MPIXEL = 0.57 / (8 * 5 * 1080**2 / 1e6)
# benchmarks/cellprofiler.py, 10^6 cells x 600 features, stage (median): 136.1 s (RESULTS.md)
CELLPROFILER_VALUES_PER_S = 1_000_000 * 600 / 136.1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "demo", help="a finished run's results")
    parser.add_argument("--jump-metadata", type=Path, default=FIXTURES / "jump-metadata")
    parser.add_argument("--source", default="source_4", help="the JUMP source whose typical plate is projected")
    parser.add_argument(
        "--features-per-cell",
        type=int,
        default=None,
        help="CellProfiler features per cell (default: counted in --reference-backend)",
    )
    parser.add_argument(
        "--reference-backend",
        type=Path,
        default=FIXTURES / "cellprofiler" / "cell-health" / "test-SQ00014613.sqlite",
        help="a real CellProfiler backend whose feature columns are counted",
    )
    parser.add_argument(
        "--load-data",
        type=Path,
        default=FIXTURES
        / "load-data"
        / "minimal_dataset"
        / "cpg0016-jump"
        / "source_4"
        / "workspace"
        / "load_data_csv"
        / "2021_04_26_Batch1"
        / "BR00117035"
        / "load_data.csv",
        help="a gallery load_data.csv of the source: its Metadata_ImageSizeX/Y give the field size "
        "(otherwise estimated from the bytes per TIFF)",
    )
    parser.add_argument("--cellprofiler-values-per-s", type=float, default=CELLPROFILER_VALUES_PER_S)
    parser.add_argument("--gpu-crops-per-s", type=float, default=GPU_CROPS_PER_S["A10G"])
    return parser.parse_args()


def require(path: Path, what: str) -> Path:
    """``path``, or a clear exit naming what is missing and the option that points elsewhere."""
    if not path.exists():
        raise SystemExit(f"{what} not found at {path}")
    return path


# --- (a) per-rule costs of a run ---


def read_benchmarks(results: Path) -> pd.DataFrame:
    """Every job's benchmark line, with its rule (first folder) and job (the rest of the path)."""
    root = require(results / "benchmarks", "benchmark files (run `make demo` first, or pass --results)")
    rows = []
    for path in sorted(root.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        parts = path.relative_to(root).with_suffix("").parts
        rows.append({"rule": parts[0], "job": "/".join(parts[1:]), **table.iloc[-1].to_dict()})
    if not rows:
        raise SystemExit(f"no benchmark files under {root}")
    return pd.DataFrame(rows)


def rule_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Per rule: jobs, mean and total wall seconds, CPU seconds, largest peak memory, I/O."""
    grouped = jobs.groupby("rule", sort=False)
    table = pd.DataFrame(
        {
            "jobs": grouped.size(),
            "mean wall s": grouped["s"].mean(),
            "total wall s": grouped["s"].sum(),
            "total CPU s": grouped["cpu_time"].sum(),
            "max RSS MB": grouped["max_rss"].max(),
            "read MB": grouped["io_in"].sum(),
            "written MB": grouped["io_out"].sum(),
        }
    )
    table.loc["all"] = table.sum(numeric_only=True)
    table.loc["all", ["mean wall s", "max RSS MB"]] = [float("nan"), jobs["max_rss"].max()]
    return table


# --- the units each stage scales with: the demo's plates and a JUMP plate ---


@dataclass(frozen=True)
class PlateUnits:
    """What one plate holds, in the units the stages scale with."""

    wells: float
    fields: float
    channels: int
    pixels_per_image: float
    fetched_bytes: float  # images and illumination files
    fetched_objects: float
    backend_bytes: float
    cells: float
    features: float
    crops: float

    @property
    def pixel_bytes(self) -> float:
        return self.fields * self.channels * self.pixels_per_image * 2

    def units(self) -> dict[str, float]:
        """Per stage, the quantity its CPU time grows with."""
        return {
            "fetch": self.fetched_bytes,
            "fetch_backend": self.backend_bytes,
            "omezarr": self.pixel_bytes,
            "qc": self.pixel_bytes,
            "dino": self.crops,
            "cellprofiler": self.cells * self.features,
            "profiles": self.wells,
        }


SCALES_WITH = {
    "fetch": "image + illumination bytes",
    "fetch_backend": "backend bytes (at fetch's CPU per byte)",
    "omezarr": "pixel bytes",
    "qc": "pixel bytes",
    "dino": "crops kept",
    "cellprofiler": "cells x features (values read, at the benchmark's rate)",
    "profiles": "wells",
}


def demo_plates(results: Path) -> pd.DataFrame:
    """The units of every plate of the run, read from its outputs."""
    rows = {}
    for load_data_path in sorted(require(results / "plates", "the run's plates").rglob("load_data.parquet")):
        plate = load_data_path.parent
        rows[plate.name] = demo_plate(plate).__dict__
    if not rows:
        raise SystemExit(f"no plate outputs (load_data.parquet) under {results / 'plates'}")
    return pd.DataFrame.from_dict(rows, orient="index")


def demo_plate(plate: Path) -> PlateUnits:
    load_data = pd.read_parquet(plate / "load_data.parquet")
    manifest = pd.read_parquet(plate / "fetch" / "manifest.parquet")
    wells = pd.read_parquet(plate / "cellprofiler" / "wells.parquet")
    crops = pd.read_parquet(plate / "dino" / "fields.parquet", columns=["Metadata_n_crops_kept"])
    backend = (
        pd.read_parquet(plate / "fetch" / "cellprofiler.parquet")
        if (plate / "fetch" / "cellprofiler.parquet").exists()
        else None
    )
    size = load_data[["Metadata_ImageSizeX", "Metadata_ImageSizeY"]].astype(float).iloc[0]
    return PlateUnits(
        wells=load_data["Metadata_Well"].nunique(),
        fields=len(load_data),
        channels=sum(c.startswith("URL_Orig") for c in load_data.columns),
        pixels_per_image=size.prod(),
        fetched_bytes=manifest["size"].sum(),
        fetched_objects=len(manifest),
        backend_bytes=backend["size"].sum() if backend is not None else 0.0,
        cells=wells["Metadata_Object_Count"].sum(),
        features=sum(not c.startswith("Metadata_") for c in wells.columns),
        crops=crops["Metadata_n_crops_kept"].sum(),
    )


def count_features(backend: Path) -> int:
    """Feature columns over the compartment tables of a real CellProfiler backend."""
    con = sqlite3.connect(
        f"{require(backend, 'reference backend (or pass --features-per-cell)').resolve().as_uri()}?mode=ro", uri=True
    )
    try:
        return sum(
            len(feature_columns(c, [row[1] for row in con.execute(f"PRAGMA table_info({quote(c)})")]))
            for c in COMPARTMENTS
        )
    finally:
        con.close()


@dataclass(frozen=True)
class JumpPlate:
    """A typical plate of one JUMP source and where each figure came from."""

    source: str
    plates: int
    wells: float
    sites_per_well: int
    fields: float
    tiffs_per_site: float
    bytes_per_tiff: float
    cells: float
    pixels_from: str
    units: PlateUnits


def image_pixels(load_data: Path, source: str) -> tuple[float, str] | None:
    """Pixels per image from a gallery ``load_data.csv`` of ``source``, and where they came from; None without one."""
    if not load_data.is_file():
        return None
    table = pd.read_csv(load_data, dtype=str)
    if "Metadata_ImageSizeX" not in table or (table["Metadata_Source"] != source).any():
        return None
    x, y = table[["Metadata_ImageSizeX", "Metadata_ImageSizeY"]].astype(float).iloc[0]
    return x * y, f"{x:.0f} x {y:.0f} in {load_data.name} of {table['Metadata_Plate'].iloc[0]}"


def jump_plate(
    metadata: Path, source: str, channels: int, features: int, kept_fraction: float, pixels: tuple[float, str] | None
) -> JumpPlate:
    """The median plate of ``source``: sites and wells from the per-plate counts, sizes from the per-source totals.

    Pixels per image come from ``pixels`` (a load_data of the source) where
    given; otherwise from the bytes per TIFF, which overestimates them by the
    TIFF's own metadata.
    """
    stats = require(metadata / "stats", "JUMP statistics (pass --jump-metadata)")
    sites = _source_rows(pd.read_csv(stats / "cpg0016_site_count.csv"), "Metadata_Source", source)
    wells = _source_rows(pd.read_csv(stats / "cpg0016_well_count.csv"), "Metadata_Source", source)
    tiffs = _source_rows(pd.read_csv(stats / "cpg0016_source_images_tiff_count.csv"), "source", source)["tiffs"].sum()
    size = _source_rows(pd.read_csv(stats / "cpg0016_source_images_size.csv"), "source", source)["bytes"].sum()
    cells = _source_rows(pd.read_csv(stats / "cpg0016_cell_count_estimate_per_source.csv"), "Metadata_Source", source)
    scope = _source_rows(pd.read_csv(metadata / "metadata" / "microscope_config.csv"), "Metadata_Source", source)
    fields = float(sites["n_sites"].median())
    bytes_per_tiff = size / tiffs
    pixels, pixels_from = pixels or (bytes_per_tiff / 2, "MB per TIFF / 2 (uint16; an upper bound)")
    crop = Recipe.crop_size
    grid = (math.isqrt(int(pixels)) // crop) ** 2  # square fields
    cells_per_plate = cells["n_cells"].sum() / len(sites)
    units = PlateUnits(
        wells=float(wells["n_wells"].median()),
        fields=fields,
        channels=channels,
        pixels_per_image=pixels,
        fetched_bytes=fields * channels * bytes_per_tiff + channels * pixels * 4,  # float32 illumination
        fetched_objects=fields * channels + channels,
        backend_bytes=cells_per_plate * features * SQLITE_BYTES_PER_REAL,
        cells=cells_per_plate,
        features=features,
        crops=fields * grid * kept_fraction,
    )
    return JumpPlate(
        source=source,
        plates=len(sites),
        wells=units.wells,
        sites_per_well=int(scope["Metadata_Sites_Per_Well"].iloc[0]),
        fields=fields,
        tiffs_per_site=tiffs / sites["n_sites"].sum(),
        bytes_per_tiff=bytes_per_tiff,
        cells=cells_per_plate,
        pixels_from=pixels_from,
        units=units,
    )


def _source_rows(table: pd.DataFrame, column: str, source: str) -> pd.DataFrame:
    rows = table[table[column] == source]
    if rows.empty:
        raise SystemExit(f"no rows for {source} in the JUMP statistics (column {column})")
    return rows


# --- (b) the projection ---


def per_plate_mean(plates: pd.DataFrame, stage: str) -> float:
    """The demo plates' mean of the quantity ``stage`` scales with."""
    return sum(PlateUnits(**row).units()[stage] for row in plates.to_dict("records")) / len(plates)


@dataclass(frozen=True)
class StageCost:
    """One per-plate rule projected to the JUMP plate."""

    rule: str
    scales_with: str
    demo_units: float  # per plate
    jump_units: float
    cpu_s_per_unit: float
    jobs_per_plate: float
    cpu_s: float


def stage_costs(jobs: pd.DataFrame, plates: pd.DataFrame, jump: PlateUnits, values_per_s: float) -> list[StageCost]:
    """Each per-plate rule's CPU seconds on the JUMP plate: start-up per job plus CPU per unit times units.

    Two rates do not come from the demo, whose single-cell backends are a
    few MB, too small to time anything but start-up: reading values is
    ``values_per_s`` (the CellProfiler benchmark) and downloading a backend
    costs what downloading images costs per byte (the same engine). Where
    the run has no ``fetch_backend`` rule, the cellprofiler job downloads
    its backend itself and carries that cost. Rules whose work does not
    grow with the plate (platemaps, plans) keep their demo cost.
    """
    startup = jobs["cpu_time"].min()
    per_plate = jobs[jobs["job"].map(lambda job: any(name in job.split("/") for name in plates.index))]
    demo_units = {stage: per_plate_mean(plates, stage) for stage in SCALES_WITH}
    jump_units = jump.units()
    variable = (per_plate["cpu_time"] - startup).clip(lower=0).groupby(per_plate["rule"]).sum() / len(plates)
    per_unit = {rule: variable[rule] / demo_units[rule] for rule in SCALES_WITH if rule in variable.index}
    per_unit["cellprofiler"] = 1 / values_per_s
    per_unit["fetch_backend"] = per_unit["fetch"]
    costs = []
    for rule, rule_jobs in per_plate.groupby("rule", sort=False):
        jobs_per_plate = len(rule_jobs) / len(plates)
        if rule not in SCALES_WITH:
            cpu = rule_jobs["cpu_time"].sum() / len(plates)
            costs.append(StageCost(rule, "plate (fixed)", 1.0, 1.0, cpu, jobs_per_plate, cpu))
            continue
        cpu = jobs_per_plate * startup + per_unit[rule] * jump_units[rule]
        scales_with = SCALES_WITH[rule]
        if rule == "cellprofiler" and "fetch_backend" not in variable.index:
            cpu += per_unit["fetch_backend"] * jump.backend_bytes
            scales_with += " + backend bytes (downloaded by this job)"
        costs.append(
            StageCost(rule, scales_with, demo_units[rule], jump_units[rule], per_unit[rule], jobs_per_plate, cpu)
        )
    return costs


def request_counts(jump: PlateUnits) -> dict[str, float]:
    """S3 requests of one plate: GETs of every image and illumination file, the backend in parts; PUTs of the plate."""
    backend_parts = math.ceil(jump.backend_bytes / LARGE_OBJECT_BYTES) + 1  # ranged GETs plus the HEAD
    return {"GET": jump.fetched_objects + backend_parts, "PUT": omezarr_objects(jump)}


def omezarr_objects(jump: PlateUnits) -> float:
    """Objects of the converted plate: per field its chunks and metadata, per well and row one, the plate one."""
    levels = complete({"convert": {}})["convert"]["pyramid_levels"]
    per_field = jump.channels + (levels - 1) + 1 + levels  # level-0 planes, whole lower levels, group and arrays
    return jump.fields * per_field + jump.wells + 16 + 1


def omezarr_bytes(jump: PlateUnits, plates: pd.DataFrame, results: Path) -> tuple[float, float]:
    """Converted-plate bytes, from the demo's compressed size over its pixel bytes; and that ratio."""
    stored = sum(f.stat().st_size for f in (results / "plates").rglob("*.ome.zarr/**/*") if f.is_file())
    raw = plates.apply(lambda row: PlateUnits(**row).pixel_bytes, axis=1).sum()
    return jump.pixel_bytes * stored / raw, stored / raw


# --- printing ---


def markdown(table: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """The table in Markdown, empty cells where there is no value."""
    return table.astype(object).where(table.notna(), None).to_markdown(floatfmt=floatfmt, missingval="")


def main() -> None:
    args = parse_args()
    jobs = read_benchmarks(args.results)
    shown = args.results.relative_to(REPO) if args.results.is_relative_to(REPO) else args.results
    print(f"## (a) Per-rule costs of the run in {shown}\n")
    print(markdown(rule_table(jobs)))

    plates = demo_plates(args.results)
    features = args.features_per_cell or count_features(args.reference_backend)
    channels = int(plates["channels"].iloc[0])
    crop_grid = (math.isqrt(int(plates["pixels_per_image"].iloc[0])) // Recipe.crop_size) ** 2
    kept = plates["crops"].sum() / (plates["fields"].sum() * crop_grid)
    pixels = image_pixels(args.load_data, args.source)
    jump = jump_plate(args.jump_metadata, args.source, channels, features, kept, pixels)
    print_plate(jump, plates, features, kept)
    costs = stage_costs(jobs, plates, jump.units, args.cellprofiler_values_per_s)
    per_plate_rules = {cost.rule for cost in costs}
    collection = jobs[~jobs["rule"].isin(per_plate_rules)].groupby("rule")["cpu_time"].sum()
    print_costs(costs, jobs["cpu_time"].min(), collection)
    print_dollars(costs, jump.units, plates, args)


def print_plate(jump: JumpPlate, plates: pd.DataFrame, features: int, kept: float) -> None:
    units = jump.units
    print(f"\n## (b) One JUMP plate of {jump.source} (median of its {jump.plates} plates in cpg0016)\n")
    demo = plates.mean(numeric_only=True)
    demo_units = PlateUnits(**demo.to_dict())
    rows = [
        ("wells", demo["wells"], units.wells, "cpg0016_well_count.csv (median)"),
        (
            "fields (sites)",
            demo["fields"],
            units.fields,
            f"cpg0016_site_count.csv (median); {jump.sites_per_well} sites/well in microscope_config.csv",
        ),
        (
            "TIFFs per site in the gallery",
            float("nan"),
            jump.tiffs_per_site,
            "source TIFFs / source sites (Cell Painting + brightfield planes)",
        ),
        (
            "channels fetched per site",
            demo["channels"],
            units.channels,
            "the config's channels (brightfield is not fetched)",
        ),
        ("MB per TIFF", demo["pixels_per_image"] * 2 / MB, jump.bytes_per_tiff / MB, "source bytes / source TIFFs"),
        (
            "pixels per image (M)",
            demo["pixels_per_image"] / 1e6,
            units.pixels_per_image / 1e6,
            jump.pixels_from,
        ),
        ("objects fetched", demo["fetched_objects"], units.fetched_objects, "fields x channels + illumination files"),
        ("GB fetched (images)", demo["fetched_bytes"] / GB, units.fetched_bytes / GB, "objects x MB per TIFF"),
        (
            "GB of pixels converted",
            demo_units.pixel_bytes / GB,
            units.pixel_bytes / GB,
            "fields x channels x pixels x 2",
        ),
        ("cells", demo["cells"], units.cells, "cpg0016_cell_count_estimate_per_source.csv / plates"),
        (
            "features per cell",
            demo["features"],
            units.features,
            "counted in a real CellProfiler backend (assumption for JUMP)",
        ),
        (
            "backend GB",
            demo["backend_bytes"] / GB,
            units.backend_bytes / GB,
            f"cells x features x {SQLITE_BYTES_PER_REAL} B",
        ),
        (
            "crops embedded",
            demo["crops"],
            units.crops,
            f"fields x {Recipe.crop_size}-px grid crops x {kept:.2f} kept (demo's fraction)",
        ),
    ]
    table = pd.DataFrame(rows, columns=["quantity", "demo plate (mean)", "JUMP plate", "from"]).set_index("quantity")
    print(markdown(table, ".2f"))


def print_costs(costs: list[StageCost], startup: float, collection: pd.DataFrame) -> None:
    print(f"\nCPU per stage: {startup:.2f} s start-up per job (the run's cheapest job) + CPU per unit x JUMP units\n")
    table = pd.DataFrame(
        [
            {
                "rule": c.rule,
                "scales with": c.scales_with,
                "demo units / plate": c.demo_units,
                "JUMP units": c.jump_units,
                "JUMP / demo": c.jump_units / c.demo_units,
                "CPU s per unit": c.cpu_s_per_unit,
                "jobs": c.jobs_per_plate,
                "CPU-hours": c.cpu_s / 3600,
            }
            for c in costs
        ]
    ).set_index("rule")
    print(markdown(table, ".3g"))
    print(
        f"\nAll per-plate rules: {table['CPU-hours'].sum():.2f} CPU-hours, "
        f"of which DINO on CPU {table.loc['dino', 'CPU-hours']:.2f}."
    )
    print(
        "Rules run once per collection, not per plate (demo CPU s, all plates together): "
        + ", ".join(f"{rule} {cpu:.0f}" for rule, cpu in collection.items())
        + ". They grow with the wells of the whole collection, not with one plate's pixels."
    )


def gpu_minutes(jump: PlateUnits, crops_per_s: float, vcpus: int) -> tuple[float, float, float]:
    """Minutes of model time, of reading on the instance's vCPUs, and on the instance.

    The instance runs for the larger of model time over utilisation and reading.
    """
    model = jump.crops / crops_per_s / 60
    reading = jump.fields * jump.channels * jump.pixels_per_image / 1e6 * READ_CPU_S_PER_MPIXEL / vcpus / 60
    return model, reading, max(model / GPU_UTILISATION, reading)


def print_dollars(costs: list[StageCost], jump: PlateUnits, plates: pd.DataFrame, args: argparse.Namespace) -> None:
    name, vcpus, hourly = CPU_INSTANCE
    gpu_name, gpu, gpu_vcpus, gpu_hourly = GPU_INSTANCE
    cpu_hours = sum(c.cpu_s for c in costs if c.rule != "dino") / 3600
    dino_cpu_hours = sum(c.cpu_s for c in costs if c.rule == "dino") / 3600
    model, reading, instance = gpu_minutes(jump, args.gpu_crops_per_s, gpu_vcpus)
    requests = request_counts(jump)
    stored, ratio = omezarr_bytes(jump, plates, args.results)
    rows = [
        (
            "CPU rules (all but DINO)",
            f"{cpu_hours:.2f} CPU-h on {name} ({vcpus} vCPU, ${hourly}/h); 1 CPU-s here = 1 vCPU-s there",
            cpu_hours * hourly / vcpus,
        ),
        (
            "DINO on CPU (not used: the floor measured here)",
            f"{dino_cpu_hours:.2f} CPU-h on {name}",
            dino_cpu_hours * hourly / vcpus,
        ),
        (
            f"DINO on a GPU ({gpu_name}, {gpu})",
            (
                f"{jump.crops:,.0f} crops / {args.gpu_crops_per_s:,.0f} crops/s (ASSUMED) = {model:.1f} GPU-min "
                f"of model time; / {GPU_UTILISATION:.0%} utilisation (ASSUMED) = {model / GPU_UTILISATION:.1f} min; "
                f"reading the plate on {gpu_vcpus} vCPUs {reading:.1f} min (reader CPU per pixel: embed.py); "
                f"{instance:.1f} instance-min at ${gpu_hourly}/h"
            ),
            instance / 60 * gpu_hourly,
        ),
        (
            "DINO on an H100 (not priced)",
            (
                f"{jump.crops / GPU_CROPS_PER_S['H100'] / 60:.1f} GPU-min of model time "
                f"at {GPU_CROPS_PER_S['H100']:,.0f} crops/s (ASSUMED)"
            ),
            float("nan"),
        ),
        (
            "S3 GET/HEAD: fetch",
            f"{requests['GET']:,.0f} x ${S3_GET_PER_1000}/1000",
            requests["GET"] * S3_GET_PER_1000 / 1000,
        ),
        (
            "S3 PUT: OME-Zarr plate (results on S3)",
            f"{requests['PUT']:,.0f} objects x ${S3_PUT_PER_1000}/1000",
            requests["PUT"] * S3_PUT_PER_1000 / 1000,
        ),
        (
            "S3 GET: OME-Zarr read by qc and dino (results on S3)",
            f"2 x {requests['PUT']:,.0f} x ${S3_GET_PER_1000}/1000",
            2 * requests["PUT"] * S3_GET_PER_1000 / 1000,
        ),
        (
            "S3 storage: OME-Zarr plate, one month",
            f"{stored / GB:.1f} GB (pixels x {ratio:.2f}, the demo's stored/raw) x ${S3_GB_MONTH}/GB-month",
            stored / GB * S3_GB_MONTH,
        ),
        ("data transfer S3 -> EC2, same region", "0 GB billed", 0.0),
    ]
    table = pd.DataFrame(rows, columns=["item", "derivation", "USD"]).set_index("item")
    total = table["USD"].drop(["DINO on CPU (not used: the floor measured here)", "DINO on an H100 (not priced)"]).sum()
    print(
        f"\nDollars per plate. Prices are ASSUMPTIONS: {PRICES}; S3 Standard list prices "
        f"(GET ${S3_GET_PER_1000}, PUT ${S3_PUT_PER_1000} per 1000, ${S3_GB_MONTH}/GB-month)\n"
    )
    print(markdown(table, ".3f"))
    print(
        f"\nOne plate, DINO on {gpu_name}, results on S3 for a month: ${total:.2f} "
        f"(${total - stored / GB * S3_GB_MONTH:.2f} without the storage)"
    )


if __name__ == "__main__":
    main()
