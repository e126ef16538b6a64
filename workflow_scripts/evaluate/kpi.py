"""One KPI value, and the one way a KPI says it could not be computed.

Every KPI function returns a plain float or raises ``NotComputable`` with the
reason (no MoA column, a single source, fewer than two batches). The
evaluate stage turns either into a row of ``kpis.parquet``; a missing value
always carries its reason in ``note``, never a silent NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

Direction = Literal["lower", "higher"]


class NotComputable(Exception):
    """The KPI has no meaning on these profiles; the message says why."""


@dataclass(frozen=True)
class Kpi:
    """One row of ``kpis.parquet`` (without the feature set and method)."""

    kpi: str
    value: float
    direction: Direction
    n_profiles: int
    note: str = ""

    def __post_init__(self) -> None:
        if self.direction not in ("lower", "higher"):
            raise ValueError(f"KPI {self.kpi}: direction must be 'lower' or 'higher', not {self.direction!r}")
        if math.isnan(self.value) and not self.note.startswith("not computable"):
            raise ValueError(f"KPI {self.kpi}: a NaN value needs a 'not computable: ...' note")

    @property
    def computable(self) -> bool:
        """False where the value is missing, with its reason in ``note``."""
        return not math.isnan(self.value)

    def row(self, **keys: str) -> dict:
        """The row with ``keys`` (``features``, ``method``) in front."""
        return {**keys, **asdict(self)}


def not_computable(kpi: str, direction: Direction, n_profiles: int, why: str) -> Kpi:
    """The row of a KPI that has no value here, saying why."""
    return Kpi(kpi, math.nan, direction, n_profiles, f"not computable: {why}")


# Every KPI the evaluate stage reports: its name, whether it measures batch
# signal left or biology kept, and which way is better. The gate and the
# combined score read the group from here; the report orders its tables by it.
CATALOGUE: dict[str, tuple[Literal["batch", "biology"], Direction]] = {
    "silhouette_plate": ("batch", "lower"),
    "silhouette_batch": ("batch", "lower"),
    "ilisi_batch": ("batch", "higher"),
    "graph_connectivity": ("batch", "higher"),
    "batch_classifier_accuracy": ("batch", "lower"),
    "silhouette_moa": ("biology", "higher"),
    "silhouette_target": ("biology", "higher"),
    "map_vs_negcon": ("biology", "higher"),
    "fraction_retrieved_vs_negcon": ("biology", "higher"),
    "map_vs_nonrep": ("biology", "higher"),
    "fraction_retrieved_vs_nonrep": ("biology", "higher"),
    "map_moa_consensus": ("biology", "higher"),
    "map_target_consensus": ("biology", "higher"),
    "nsb_moa": ("biology", "higher"),
    "nsbp_moa": ("biology", "higher"),
    "nsb_target": ("biology", "higher"),
    "nsbp_target": ("biology", "higher"),
    "percent_replicating": ("biology", "higher"),
    "percent_matching_moa": ("biology", "higher"),
    "percent_matching_target": ("biology", "higher"),
    "cross_site_top1": ("biology", "higher"),
    "cross_site_top5": ("biology", "higher"),
    "replicate_rank_stability": ("biology", "higher"),
}


def catalogued(kpi: str, value: float, n_profiles: int, note: str = "") -> Kpi:
    """A KPI row with the direction the catalogue gives it."""
    return Kpi(kpi, value, CATALOGUE[kpi][1], n_profiles, note)


def missing(kpi: str, n_profiles: int, why: str) -> Kpi:
    """A catalogued KPI's row where it has no value, saying why."""
    return not_computable(kpi, CATALOGUE[kpi][1], n_profiles, why)
