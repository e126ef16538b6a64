"""What QC counts as a bad field, and the channels it looks at; one object for metrics and flags."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from workflow_scripts.errors import InputError


@dataclass(frozen=True)
class QcThresholds:
    """What counts as a bad field; the schema's defaults suit 16-bit JUMP fields at 20x."""

    focus_channel: str
    dna_channel: str
    focus_tolerance: float
    saturation_level: int
    max_saturated_fraction: float
    min_nucleus_area: int

    @classmethod
    def from_config(cls, qc: dict[str, Any]) -> QcThresholds:
        """The thresholds of the config's ``qc`` section."""
        return cls(**{f.name: qc[f.name] for f in fields(cls)})

    def __post_init__(self) -> None:
        if self.focus_tolerance <= 0:
            raise InputError(f"focus_tolerance must be > 0, got {self.focus_tolerance}")
        if not 0 < self.saturation_level <= 65535:
            raise InputError(f"saturation_level must be in 1..65535, got {self.saturation_level}")
        if not 0 <= self.max_saturated_fraction < 1:
            raise InputError(f"max_saturated_fraction must be in [0, 1), got {self.max_saturated_fraction}")
        if self.min_nucleus_area < 1:
            raise InputError(f"min_nucleus_area must be >= 1 pixel, got {self.min_nucleus_area}")
