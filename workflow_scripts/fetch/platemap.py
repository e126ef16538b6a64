"""A plate's platemap, and the annotation tables, from the gallery or local files.

The gallery keeps a batch's platemaps beside its plates:
``{dataset}/{source}/workspace/metadata/platemaps/{batch}/barcode_platemap.csv``
maps each plate (``Assay_Plate_Barcode``) to a platemap name
(``Plate_Map_Name``), and ``platemap/{Plate_Map_Name}.txt`` (tab-separated)
says what each ``well_position`` holds. ``annotation.platemaps`` names a
local folder laid out the same way from ``{batch}/`` down, for private
plates. ``fetch_platemap`` writes the plate's wells (``Metadata_Well`` as
``A01``, every other platemap column prefixed ``Metadata_``, and
``Metadata_Plate_Map_Name`` from the barcode table unless the platemap has
that column in some spelling; all text);
``fetch_tables`` reads the extra tables of ``annotation`` (local paths or
``s3://`` URIs, through the fetch engine and its cache). Every value is read
as text, since plate names and identifiers can be all digits.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from workflow_scripts.errors import InputError, StageError
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.fetch.objects import download_objects, retries_logged
from workflow_scripts.fetch.plate import FetchSettings
from workflow_scripts.fetch.s3 import parse_s3_url
from workflow_scripts.profiles.columns import find_column, merge_case_variants, metadata_name
from workflow_scripts.provenance import write_table
from workflow_scripts.wells import well_name

log = logging.getLogger("workflow_scripts.fetch")

STAGE = "fetch"
BARCODE_TABLE = "barcode_platemap.csv"
PLATE_COLUMN, NAME_COLUMN, WELL_COLUMN = "Assay_Plate_Barcode", "Plate_Map_Name", "well_position"
_SEPARATORS = {".csv": ",", ".csv.gz": ",", ".tsv": "\t", ".tsv.gz": "\t", ".txt": "\t", ".txt.gz": "\t"}


def fetch_platemap(plate: PlateRef, config: dict[str, Any], out: Path) -> pd.DataFrame:
    """Find the plate's platemap through its batch's barcode table and write its wells to ``out``.

    Reads the config sections ``annotation``, ``gallery``, ``fetch`` and ``cache_dir``.
    """
    settings = FetchSettings.from_config(config)
    with retries_logged(f"plate {plate.plate} (platemap)", settings.retry):
        barcodes_at = platemap_source(plate, config, BARCODE_TABLE)
        name = platemap_name(_plate_file(plate, barcodes_at, settings), plate, barcodes_at)
        platemap_at = platemap_source(plate, config, f"platemap/{name}.txt")
        wells = platemap_wells(_plate_file(plate, platemap_at, settings), platemap_at)
    if find_column(wells.columns, NAME_COLUMN) is None:
        wells[metadata_name(NAME_COLUMN)] = pd.array([name] * len(wells), dtype="string")
    provenance = {"plate": plate.plate, "barcode_table": barcodes_at, "platemap": platemap_at, "wells": len(wells)}
    write_table(wells, out, STAGE, provenance)
    log.info("plate %s: platemap %s, %d wells, from %s", plate.plate, name, len(wells), platemap_at)
    return wells


def _plate_file(plate: PlateRef, source: str, settings: FetchSettings) -> pd.DataFrame:
    """One platemap file as text; a failure names the plate it was wanted for."""
    try:
        [path] = local_copies([source], settings)
        return read_text_table(path, source)
    except StageError as error:
        raise type(error)(f"plate {plate.plate}: {error}") from error


def platemap_source(plate: PlateRef, config: dict[str, Any], name: str) -> str:
    """Where a file of the plate's batch platemaps lives: the local folder, else the gallery."""
    folder = config["annotation"]["platemaps"]
    if folder:
        return str(Path(folder) / plate.batch / name)
    key = f"{plate.prefix}/workspace/metadata/platemaps/{plate.batch}/{name}"
    return f"s3://{config['gallery']['bucket']}/{key}"


def platemap_name(barcodes: pd.DataFrame, plate: PlateRef, where: str) -> str:
    """The platemap name of ``plate`` in a barcode table; a missing or ambiguous plate is an error."""
    require_columns(barcodes, (PLATE_COLUMN, NAME_COLUMN), where)
    rows = barcodes[barcodes[PLATE_COLUMN].str.strip() == plate.plate]
    names = sorted(set(rows[NAME_COLUMN].dropna().str.strip()) - {""})
    if not names:
        raise InputError(f"plate {plate.plate}: not listed in {where} (column {PLATE_COLUMN})")
    if len(names) > 1:
        raise InputError(f"plate {plate.plate}: {where} lists it with several platemaps: {', '.join(names)}")
    return names[0]


def platemap_wells(platemap: pd.DataFrame, where: str) -> pd.DataFrame:
    """One row per well: ``Metadata_Well`` (``A01``) and the other columns prefixed, all text.

    A well listed twice would annotate one profile two ways, so it is an error
    naming the file and the wells.
    """
    well_column = next((c for c in platemap.columns if c.lower() == WELL_COLUMN), None)
    if well_column is None:
        raise InputError(f"{where}: no column {WELL_COLUMN!r} (columns: {', '.join(platemap.columns)})")
    wells = [
        well_name(value, f"{where}, {well_column}, row {row + 2}") for row, value in enumerate(platemap[well_column])
    ]
    repeated = sorted(well for well, count in Counter(wells).items() if count > 1)
    if repeated:
        raise InputError(f"{where}: wells listed more than once: {', '.join(repeated)}")
    rest = platemap.drop(columns=[well_column]).rename(columns=metadata_name)
    table = pd.concat(
        [pd.DataFrame({"Metadata_Well": pd.array(wells, dtype="string")}), rest.reset_index(drop=True)], axis=1
    )
    return merge_case_variants(table, where)


def fetch_tables(sources: Sequence[str], config: dict[str, Any]) -> list[pd.DataFrame]:
    """Each table named by a local path or an ``s3://`` URI, every column as text.

    S3 objects come through the fetch engine into ``cache_dir`` (verified,
    retried, downloaded once); the client follows ``gallery`` and ``fetch``.
    """
    if not sources:
        return []
    settings = FetchSettings.from_config(config)
    with retries_logged("annotation tables", settings.retry):
        paths = local_copies(sources, settings)
    return [read_text_table(path, source) for path, source in zip(paths, sources)]


def local_copies(sources: Sequence[str], settings: FetchSettings) -> list[Path]:
    """A local file for each source: the path itself, or the cached copy of the S3 object."""
    remote = [parse_s3_url(s) for s in sources if s.startswith("s3://")]
    cached = {}
    if remote:
        records = download_objects(
            settings.client(), remote, settings.cache_dir, concurrency=settings.concurrency, retry=settings.retry
        )
        cached = {str(record.location): record.path for record in records}
    paths = [cached.get(source) or Path(source) for source in sources]
    for path, source in zip(paths, sources):
        if not path.is_file():
            raise InputError(f"{source}: no such file")
    return paths


def read_text_table(path: Path, where: str) -> pd.DataFrame:
    """A csv, tsv, txt (tab-separated), optionally gzipped, or parquet table; every column as text."""
    name = path.name.lower()
    separator = next((sep for suffix, sep in _SEPARATORS.items() if name.endswith(suffix)), None)
    if separator is None and not name.endswith(".parquet"):
        raise InputError(f"{where}: not a table this stage reads (.csv, .tsv, .txt, .csv.gz, .tsv.gz, .parquet)")
    try:
        if separator is None:
            return pd.read_parquet(path).astype("string")
        return pd.read_csv(path, sep=separator, dtype="string")
    except (ValueError, OSError, pa.ArrowException) as error:
        raise InputError(f"{where}: cannot be read as a table: {error}") from error


def require_columns(table: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    """An error naming ``where`` and the columns it lacks."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)}")
