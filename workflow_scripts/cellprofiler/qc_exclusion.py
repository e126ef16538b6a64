"""The fields QC excludes, left out of CellProfiler profiles by (well, site).

QC names each excluded field by its well and its site as the plate's LoadData
spells it (``QcFields.excluded_sites``); CellProfiler took its ``Metadata_Site``
from the same LoadData, but a backend may store it as text or as a number.
Both sides are compared as text, whole numbers written as their digits, and
never renumbered: a plate whose sites count from 0 keeps its site '0'.

A source that holds single cells per site (the SQLite backend, the per-site
analysis CSVs) leaves those sites out before aggregating and counts them per
well, as ``Metadata_n_fields_excluded``: the QC-excluded fields of the well, the
column the DINO embeddings carry too. Finished well-level tables (the backend
CSV, the gallery's profiles) cannot be filtered, and their provenance says so.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence

import numpy as np

log = logging.getLogger(__name__)

Site = tuple[str, str]  # (well as 'A01', site as LoadData spells it)
SINGLE_CELL_KINDS = ("sqlite", "analysis")


def site_text(value: object) -> str | None:
    """A ``Metadata_Site`` value as text: whole numbers as their digits, text stripped."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def count_by_well(wells: Sequence[str], left_out: Collection[Site]) -> list[int]:
    """How many of each well's sites were left out, in ``wells`` order."""
    counts = Counter(well for well, _ in left_out)
    return [counts[well] for well in wells]


def exclusion_record(
    kind: str, excluded: Collection[Site], wells: Sequence[str], fields_excluded: np.ndarray | None, label: str
) -> dict[str, object]:
    """What the provenance says about QC exclusion; warns about QC sites the source lacks.

    A site QC excludes but the source does not list is most likely spelled
    differently on the two sides, so it is named in the log, not ignored.
    """
    record: dict[str, object] = {"sites_excluded_by_qc": len(excluded)}
    if fields_excluded is None:
        note = f"not applied: the {kind} source is aggregated per well already, so its fields cannot be left out"
        if excluded:
            log.warning("%s: QC excludes %d field(s), but %s", label, len(excluded), note[len("not applied: ") :])
        return {**record, "applied": False, "note": note}
    found = dict(zip(wells, fields_excluded.tolist()))
    expected = Counter(well for well, _ in excluded)
    unmatched = sorted(well for well, n in expected.items() if found.get(well, 0) < n)
    if unmatched:
        examples = sorted(site for site in excluded if site[0] in unmatched)[:3]
        log.warning(
            "%s: QC excludes sites the source does not list in well(s) %s, e.g. %s; check how both spell Metadata_Site",
            label,
            ", ".join(unmatched[:5]),
            examples,
        )
    return {
        **record,
        "applied": True,
        "fields_excluded": int(fields_excluded.sum()),
        "sites_not_in_source": sum(expected.values()) - int(fields_excluded.sum()),
    }
