"""How a plate was made, stored in its attributes so the data carries it.

Everything here is deterministic (no timestamps, no host names): the same
inputs and parameters give byte-identical metadata, which is what lets an
interrupted conversion resume into the temporary plate it left behind and
lets a rerun be compared with the first run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import workflow_scripts
from workflow_scripts.omezarr.options import ConversionOptions
from workflow_scripts.omezarr.plate_sources import PlateSources


def plate_provenance(
    sources: PlateSources, options: ConversionOptions, field_shape: tuple[int, int], illum_stored: bool
) -> dict:
    """The plate's provenance before any field is written (JSON-normalised)."""
    record = {
        "workflow": {"package": "workflow_scripts", "version": workflow_scripts.__version__},
        "plate": {
            "Metadata_Source": sources.source,
            "Metadata_Batch": sources.batch,
            "Metadata_Plate": sources.plate,
        },
        "source_images": source_keys_record(sources),
        "illumination": illumination_record(sources, illum_stored, options.apply_illumination),
        "conversion": {
            **options.recorded(),
            "channels": list(sources.channels),
            "field_shape": list(field_shape),
            "pixel_size_um": sources.pixel_size_um,
        },
    }
    return json.loads(json.dumps(record))


def source_keys_record(sources: PlateSources) -> dict:
    """Count, common prefix and sha256 of the source URLs with their well, site and channel."""
    lines = [
        f"{field.well}\t{field.site}\t{channel}\t{url}\n"
        for field in sources.fields()
        for channel, url in zip(sources.channels, field.urls)
    ]
    urls = [url for field in sources.fields() for url in field.urls]
    return {
        "count": len(urls),
        "prefix": os.path.commonprefix(urls),
        "sha256": hashlib.sha256("".join(lines).encode()).hexdigest(),
    }


def illumination_record(sources: PlateSources, stored: bool, applied: bool) -> dict | None:
    """The gallery illumination files (URL and content sha256), whether stored and applied."""
    if sources.illum_urls is None or sources.illum_paths is None:
        return None
    return {
        "files": dict(sources.illum_urls),
        "sha256": {ch: file_sha256(path) if path.is_file() else None for ch, path in sources.illum_paths.items()},
        "stored": stored,
        "applied": applied,
    }


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def field_summary(statuses: Iterable[dict]) -> dict:
    """Fields converted and failed, for the plate attributes and the log.

    A field fails when any of its channels does; ``failed_by_reason`` counts
    fields by their (first) reason, ``failed_by_channel`` counts the fields
    each channel failed in, so a plate-wide problem with one channel shows.
    """
    statuses = list(statuses)
    by_reason = Counter(status["reason"] for status in statuses if status["reason"])
    by_channel = Counter(failure["channel"] for status in statuses for failure in status["failed_channels"])
    return {
        "total": len(statuses),
        "failed": sum(by_reason.values()),
        "failed_by_reason": dict(sorted(by_reason.items())),
        "failed_by_channel": dict(sorted(by_channel.items())),
    }
